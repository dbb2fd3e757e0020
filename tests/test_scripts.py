"""Command-line entry points: the main job end to end (tiny budget), resume, and clear errors on bad input."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_gym.cli import parse_dataclass

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"scripts_{name}"] = module
    spec.loader.exec_module(module)
    return module


def test_train_agent_runs_end_to_end_and_resumes(tmp_path):
    script = load_script("train_agent")
    argv = ["--output-dir", str(tmp_path), "--total-timesteps", "192", "--n-envs", "8", "--batch-size", "4",
            "--max-new-tokens", "12", "--n-eval-prompts", "8", "--checkpoint-freq", "6", "--progress-bar", "false"]
    run_dir = script.main(parse_dataclass(script.Args, "", argv))
    for name in ("agent.zip", "policy/config.json", "policy/tokenizer.json", "learning_curve.png", "summary.json", "args.json"):
        assert (run_dir / name).exists(), name
    assert run_dir.name.startswith("RLHF-v0__train_agent__0__")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"proxy_reward", "gold_reward", "kl", "response_length"} <= set(summary["after"])
    assert list((run_dir).glob("tensorboard_*/events.out.tfevents.*"))
    checkpoint = sorted((run_dir / "checkpoints").glob("agent_*_steps.zip"))[-1]
    done = summary["timesteps"]
    resumed = script.main(parse_dataclass(script.Args, "", argv[:2] + ["--total-timesteps", str(done + 96)] + argv[4:] +
                                          ["--resume", str(checkpoint)]))
    assert resumed == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["timesteps"] > done


@pytest.mark.parametrize("argv, message", [
    (["--beta", "-1"], "--beta must be >= 0"),
    (["--n-envs", "zero"], "invalid int value"),
    (["--kl-estimator", "k2"], "--kl-estimator must be k1 or k3"),
    (["--resume", "/nonexistent/agent.zip"], "checkpoint not found"),
    (["--no-such-option", "1"], "unrecognized arguments"),
])
def test_train_agent_bad_arguments(argv, message, capsys):
    script = load_script("train_agent")
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(script.Args, "", argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_agent_help_documents_every_option():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_agent.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--model", "--reward-model", "--prompts", "--beta", "--target-kl", "--total-timesteps", "--batch-size",
                   "--max-new-tokens", "--learning-rate", "--device", "--seed", "--output-dir", "--resume"):
        assert option in out.stdout


def test_reward_model_script_reports_the_bad_line(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": 3, "rejected": "b"}\n')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_reward_model.py"), "--data", str(data),
                          "--out", str(tmp_path / "rm")], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"{data}:2: column 'chosen' must be a string" in out.stderr
    assert "Traceback" not in out.stderr
