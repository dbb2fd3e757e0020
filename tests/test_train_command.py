"""The main job (``rlhf-gym train``): the budget in responses, run directories, resume semantics, bad arguments."""

import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from helpers import cli_error, write_word_comparisons

from rlhf_gym.agents import train
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import create_run_directory

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-envs", "8", "--batch-size", "4", "--max-new-tokens", "10", "--n-eval-prompts", "8", "--no-progress-bar"]


def run_train(argv):
    return train.main(parse_dataclass(train.Args, "", [str(a) for a in argv]))


def curve_iterations(run_dir: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (run_dir / "curve.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run of 3 PPO iterations of 8 responses with an adaptive KL controller, a checkpoint after every iteration."""
    out = tmp_path_factory.mktemp("runs")
    run_dir = run_train(["--out-dir", out, "--total-responses", 24, "--checkpoint-every", 8, "--kl-target", 3, *TINY])
    return run_dir


@pytest.mark.slow
def test_a_run_counts_its_budget_in_responses_and_writes_its_outputs(finished_run):
    for name in ("agent.zip", "policy/config.json", "policy/tokenizer.json", "learning_curve.png", "summary.json",
                 "args.json"):
        assert (finished_run / name).exists(), name
    assert finished_run.name.startswith("RLHF-v0__train_agent__0__")
    summary = json.loads((finished_run / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"]) == (3, 24)  # ceil(24 / 8) iterations, exactly
    assert {"proxy_reward", "gold_reward", "kl", "response_length"} <= set(summary["after"])
    assert summary["machine"]["torch_threads"] == torch.get_num_threads()  # where the run was made (rlhf_gym.provenance)
    assert curve_iterations(finished_run) == [1, 2, 3]
    # checkpoints counted in responses, between an update and the next rollout: after iterations 1, 2 and 3 (the end)
    assert sorted(p.name for p in (finished_run / "checkpoints").iterdir()) == [
        "agent_00000008_responses.zip", "agent_00000016_responses.zip", "agent_00000024_responses.zip"]
    assert list(finished_run.glob("tensorboard_*/events.out.tfevents.*"))


@pytest.mark.slow
def test_resume_restores_the_run_arguments_and_stops_at_its_budget(finished_run, tmp_path):
    stored = json.loads((finished_run / "args.json").read_text())
    checkpoint = finished_run / "checkpoints" / "agent_00000008_responses.zip"
    # a plain --resume takes the run's own arguments, not the defaults
    args = train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(checkpoint)]))
    assert (args.n_envs, args.kl_target, args.max_new_tokens, args.total_responses) == (8, 3.0, 10, 24)
    # as after a kill -9 past the checkpoint: rows of iterations 2 and 3 on disk, no summary
    (finished_run / "summary.json").unlink()
    run_dir = run_train(["--resume", checkpoint, "--no-progress-bar"])
    assert run_dir == finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"]) == (3, 24)  # the original budget, not 24 more
    assert curve_iterations(run_dir) == [1, 2, 3]  # the killed run's rows after the checkpoint were dropped
    assert json.loads((run_dir / "args.json").read_text())["kl_target"] == stored["kl_target"] == 3.0


@pytest.mark.slow
def test_resuming_a_finished_run_does_not_overwrite_it_unless_asked(finished_run, capsys):
    agent = (finished_run / "agent.zip").read_bytes()
    checkpoint = finished_run / "checkpoints" / "agent_00000008_responses.zip"
    error = cli_error(capsys, "train", ["--resume", checkpoint])
    assert "has finished (summary.json)" in error and "--overwrite" in error
    assert (finished_run / "agent.zip").read_bytes() == agent


@pytest.mark.slow
def test_resume_refuses_to_change_the_run_arguments(finished_run, capsys):
    checkpoint = finished_run / "checkpoints" / "agent_00000008_responses.zip"
    with pytest.raises(ConfigError, match="--n-envs 16: a resumed run keeps its own arguments"):
        train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(checkpoint), "--n-envs", "16"]))
    extended = train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(checkpoint), "--total-responses",
                                                                    "48"]))
    assert extended.total_responses == 48  # the budget may grow


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a run directory, so that a test may resume (or break) it without touching the shared one."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def files_of(run_dir: Path) -> dict:
    return {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_a_resume_with_a_budget_below_the_checkpoint_s_is_refused_before_writing_anything(finished_run, tmp_path,
                                                                                          capsys):
    run = copy_of(finished_run, tmp_path)
    before = files_of(run)
    checkpoint = run / "checkpoints" / "agent_00000016_responses.zip"
    error = cli_error(capsys, "train", ["--resume", checkpoint, "--total-responses", 8, "--overwrite", "--no-progress-bar"])
    assert "--total-responses 8" in error and "16 responses" in error and str(checkpoint) in error
    assert files_of(run) == before  # no agent, policy, summary or args.json rewritten, no resume recorded


@pytest.mark.slow
def test_a_resume_keeps_args_json_and_appends_to_the_run_s_resume_history(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    stored = (run / "args.json").read_bytes()
    resumed = (run / "resumes.jsonl").read_text().splitlines() if (run / "resumes.jsonl").exists() else []
    # from the final agent.zip (beside args.json, not under checkpoints/), one iteration more than the run's budget
    assert run_train(["--resume", run / "agent.zip", "--total-responses", 32, "--overwrite", "--no-progress-bar"]) == run
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"]) == (4, 32)
    assert (run / "args.json").read_bytes() == stored  # the run's original record, as it was
    history = (run / "resumes.jsonl").read_text().splitlines()
    assert history[:-1] == resumed  # one line appended (earlier tests may have resumed the shared run)
    last = json.loads(history[-1])
    assert last["checkpoint"] == str(run / "agent.zip") and last["time"] and last["total_responses"] == 32
    assert last["options"] == {"total_responses": 32, "overwrite": True, "progress_bar": False}
    # a later plain resume goes on to the budget the last resume set, not to args.json's
    later = train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(run / "checkpoints" /
                                                                                "agent_00000032_responses.zip")]))
    assert later.total_responses == 32


def truncated_copies(checkpoint: Path, directory: Path) -> list[Path]:
    """``checkpoint`` cut in the middle, and cut just after a stored member (a torch zip whose own end record then
    ends the file: it still opens as a zip, of other members)."""
    data = checkpoint.read_bytes()
    with zipfile.ZipFile(checkpoint) as archive:
        member = archive.infolist()[-2]
    cuts = (len(data) // 2, member.header_offset + 30 + len(member.filename) + len(member.extra) + member.compress_size)
    copies = []
    for cut in cuts:
        copy = directory / f"agent_cut_at_{cut}.zip"
        copy.write_bytes(data[:cut])
        copies.append(copy)
    return copies


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_truncated_checkpoint_is_one_error_line_naming_it(finished_run, tmp_path, capsys, overwrite):
    run = copy_of(finished_run, tmp_path)
    before = files_of(run)
    for checkpoint in truncated_copies(run / "checkpoints" / "agent_00000008_responses.zip", tmp_path):
        target = run / "checkpoints" / checkpoint.name
        shutil.copy(checkpoint, target)
        error = cli_error(capsys, "train", ["--resume", target, *overwrite, "--no-progress-bar"])
        assert str(target) in error and "truncated or corrupt" in error
        target.unlink()
    assert files_of(run) == before


def fake_run(tmp_path: Path, **changes) -> Path:
    """A run directory with an args.json of the defaults changed by ``changes`` and a checkpoint (a valid zip that
    names its algorithm: enough to reach the arguments); returns the checkpoint."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({**asdict(train.Args()), **changes}))
    checkpoint = run / "checkpoints" / "agent_00000008_responses.zip"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("data", json.dumps({"algorithm": "ppo"}))
    return checkpoint


@pytest.mark.parametrize("changes, message", [
    ({"n_envs": "sixty"}, 'n_envs must be an integer, got "sixty"'),
    ({"seed": None}, "seed must be an integer, got null"),
    ({"kl_target": "3"}, 'kl_target must be a number or null, got "3"'),
    ({"progress_bar": "yes", "algo": 5}, "algo must be a string, got 5"),
    ({"n_envs": 0}, "--n-envs must be > 0"),  # the right type, a refused value
    ({"algo": "ddpg"}, "--algo must be one of"),
])
def test_a_resume_with_a_bad_value_in_args_json_is_one_line_naming_the_file_and_field(tmp_path, capsys, changes,
                                                                                      message):
    checkpoint = fake_run(tmp_path, **changes)
    error = cli_error(capsys, "train", ["--resume", checkpoint])
    assert error.startswith(f"error: {checkpoint.parent.parent.resolve() / 'args.json'}: ") and message in error


def test_resume_finds_the_run_of_a_checkpoint_or_of_a_final_agent_and_refuses_other_places(tmp_path, capsys):
    checkpoint = fake_run(tmp_path)
    run = checkpoint.parent.parent.resolve()
    shutil.copy(checkpoint, run / "agent.zip")
    assert train.run_of_checkpoint(checkpoint) == train.run_of_checkpoint(run / "agent.zip") == run
    elsewhere = tmp_path / "agent.zip"
    shutil.copy(checkpoint, elsewhere)
    error = cli_error(capsys, "train", ["--resume", elsewhere])
    assert str(elsewhere) in error and "<run>/checkpoints/agent_*.zip or <run>/agent.zip" in error


def test_the_before_after_table_prints_a_zero_kl_as_zero():
    import numpy as np
    from rich.console import Console

    from rlhf_gym.evaluation import Evaluation

    def evaluation(kl):  # the reference against itself: a KL of zero, or a tiny negative k1 mean
        return Evaluation(["the soup was"] * 3, ["good ."] * 3, proxy_reward=np.array([0.5, 0.5, 0.5]),
                          kl=np.array([kl] * 3), response_length=np.array([2.0, 2.0, 2.0]))

    console = Console(record=True, width=120)
    summary = train.report(evaluation(-0.0), evaluation(-1e-6), console)
    kl_row = next(line for line in console.export_text().splitlines() if line.strip("│ ").startswith("kl "))
    assert "-0.000" not in kl_row and kl_row.count("0.000") == 2
    assert summary["after"]["kl"] == -1e-6  # summary.json keeps the measured value


def test_the_log_names_only_the_settings_that_differ_from_the_defaults():
    args = parse_dataclass(train.Args, "", ["--kl-coef", "0.01", "--no-progress-bar", "--seed", "0", "--algo", "ppo"])
    assert train.changed_settings(args) == {"kl_coef": 0.01, "progress_bar": False}
    assert train.changed_settings(parse_dataclass(train.Args, "", [])) == {}


def test_two_runs_with_the_same_name_get_two_directories(tmp_path):
    first = create_run_directory(tmp_path / "runs", "RLHF-v0__x__0__123")
    second = create_run_directory(tmp_path / "runs", "RLHF-v0__x__0__123")
    assert (first.name, second.name) == ("RLHF-v0__x__0__123", "RLHF-v0__x__0__123-2")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a directory"):
        create_run_directory(tmp_path / "file", "run")


def test_bad_input_leaves_no_run_directory(tmp_path, capsys):
    error = cli_error(capsys, "train", ["--out-dir", tmp_path / "runs", "--reward-model", tmp_path / "missing", *TINY])
    assert str(tmp_path / "missing") in error
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--kl-coef", "-1"], "--kl-coef must be >= 0"),
    (["--kl-coef", "nan"], "--kl-coef must be finite"),
    (["--beta", "-1"], "--kl-coef must be >= 0"),  # the deprecated alias sets --kl-coef, checked there
    (["--beta", "0.1", "--kl-coef", "0.2"], "--beta is a deprecated alias of --kl-coef: give only one of them"),
    (["--algo", "toy"], "--algo must be one of ppo, nlpo, rloo, grpo, dpo, ipo, cdpo"),
    (["--learning-rate", "nan"], "--learning-rate must be finite"),
    (["--learning-rate", "inf"], "--learning-rate must be finite"),
    (["--total-responses", "0"], "--total-responses must be > 0"),
    (["--batch-size", "128"], "--batch-size 128 is larger than a rollout (--n-envs 64 responses)"),
    (["--resume", "/nonexistent/agent.zip"], "checkpoint not found"),
    (["--n-envs", "zero"], "invalid int value"),
    (["--kl-estimator", "k2"], "--kl-estimator must be"),
    (["--no-such-option", "1"], "unrecognized arguments"),
    (["--output-dir", "runs"], "unrecognized arguments"),  # the old spelling: outputs are --out / --out-dir everywhere
    (["--total-timesteps", "76800"], "unrecognized arguments"),  # the budget is counted in responses
    (["--algo", "rloo", "--group-size", "1"], "--group-size 1: at least 2 responses per prompt"),
    (["--group-size", "4"], "--group-size: not an option of ppo"),
    (["--algo", "dpo", "--kl-coef", "0.1"], "--kl-coef: not an option of dpo (its own: --batch-size, --dpo-beta"),
    (["--algo", "ipo", "--label-smoothing", "0.1"], "--label-smoothing applies to dpo and cdpo only"),
    (["--algo", "cdpo", "--label-smoothing", "0"], "cdpo needs --label-smoothing > 0"),
    (["--algo", "dpo", "--dpo-beta", "0"], "--dpo-beta must be > 0"),
    (["--comparisons", "prefs.jsonl"], "--comparisons: ppo samples its own responses"),
    (["--algo", "grpo", "--group-size", "5"], "--n-envs 64 must be a multiple of it"),
    (["--algo", "rloo", "--batch-size", "24"], "--batch-size 24 must divide --n-envs 64"),
    (["--algo", "grpo", "--kl-target", "3"], "grpo has no KL term there"),
    (["--algo", "grpo", "--grpo-loss", "mean"], "--grpo-loss must be one of dapo, grpo"),
    (["--algo", "dpo", "--kl-target", "3"], "dpo has no KL term there"),
    (["--algo", "dpo", "--total-comparisons", "0"], "--total-comparisons must be > 0"),
    (["--algo", "dpo", "--comparisons", "/nonexistent/prefs.jsonl"], "--comparisons: no such file or directory"),
    (["--lora-r", "0"], "--lora-r (the LoRA rank) must be a positive integer"),
    (["--lora-r", "8", "--lora-alpha", "nan"], "--lora-alpha"),
    (["--algo", "dpo", "--lora-r", "8"], "--lora-r trains adapters for the online algorithms"),
])
def test_train_agent_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(train.Args, "", argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_agent_help_documents_every_option():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_agent.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for option in ("--model", "--reward-model", "--prompts", "--kl-coef", "--dpo-beta", "--kl-target", "--total-responses",
                   "--batch-size", "--max-new-tokens", "--learning-rate", "--device", "--seed", "--out-dir", "--resume",
                   "--overwrite"):
        assert option in out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_one_clear_line(tmp_path, capsys):
    error = cli_error(capsys, "train", ["--device", "cuda", "--out-dir", tmp_path, *TINY])
    assert error.startswith("error: device 'cuda' is not available on this machine") and "use cpu or auto" in error
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_critic_free_runs_end_to_end_and_resume_with_their_own_class(algo, tmp_path):
    run_dir = run_train(["--algo", algo, "--group-size", 4, "--out-dir", tmp_path, "--total-responses", 16,
                         "--checkpoint-every", 8, "--kl-coef", 0.05, *TINY])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"]) == (2, 16)
    stored = json.loads((run_dir / "args.json").read_text())
    assert stored["env"]["group_size"] == 4
    # the env's reward carries the KL for rloo; grpo puts its coefficient in the loss and the env's beta is 0
    assert stored["env"]["beta"] == (0.05 if algo == "rloo" else 0.0)
    assert summary["kl_coef"] == 0.05  # the coefficient actually used, wherever it acts
    (run_dir / "summary.json").unlink()
    checkpoint = run_dir / "checkpoints" / "agent_00000008_responses.zip"
    _, agent = train.build_env_and_agent(train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(checkpoint)])),
                                           resume=checkpoint)
    assert type(agent).__name__ == algo.upper() and agent.n_rollouts == 1 and agent.n_epochs == 1
    if algo == "grpo":
        assert agent.kl_coef == 0.05
    assert run_train(["--resume", checkpoint, "--no-progress-bar"]) == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 2


@pytest.mark.slow
def test_dpo_runs_end_to_end_on_given_comparisons_and_resumes(tmp_path):
    data = write_word_comparisons(tmp_path / "prefs.jsonl")  # 16 distinct comparisons
    run_dir = run_train(["--algo", "dpo", "--comparisons", data, "--batch-size", 4, "--checkpoint-every", 8, "--out-dir",
                         tmp_path / "runs", "--n-eval-prompts", 8, "--no-progress-bar"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["comparisons"], summary["dpo_beta"]) == (4, 16, 0.5)  # one pass, dpo's beta
    # every 8 comparisons: after optimizer steps 2 and 4 (4 comparisons each)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["agent_00000008_comparisons.zip",
                                                                           "agent_00000016_comparisons.zip"]
    assert (run_dir / "policy" / "config.json").exists()
    (run_dir / "summary.json").unlink()
    assert run_train(["--resume", run_dir / "checkpoints" / "agent_00000008_comparisons.zip", "--no-progress-bar"]) == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4  # resumed at step 2, to the same budget



@pytest.mark.slow
def test_a_resume_refuses_inputs_changed_since_the_run_started(task, tmp_path, capsys):
    """A run records its inputs by content; a resume after the prompt file was shortened (or a model replaced) would mix
    two runs in one curve, so it is refused, naming the input, until the file is as it was."""
    prompts = tmp_path / "prompts.txt"
    original = "\n".join(task.train_prompts[:16]) + "\n"
    prompts.write_text(original)
    run_dir = run_train(["--prompts", prompts, "--out-dir", tmp_path / "runs", "--total-responses", 16,
                         "--checkpoint-every", 8, *TINY])
    assert set(json.loads((run_dir / "args.json").read_text())["inputs"]) == {"prompts", "task:reviews"}
    (run_dir / "summary.json").unlink()  # as if killed after its first checkpoint
    checkpoint = run_dir / "checkpoints" / "agent_00000008_responses.zip"
    prompts.write_text("\n".join(task.train_prompts[:8]) + "\n")
    error = cli_error(capsys, "train", ["--resume", checkpoint])
    assert "the run's inputs changed since it started (--prompts)" in error and str(run_dir / "args.json") in error
    assert not (run_dir / "summary.json").exists()
    prompts.write_text(original)
    assert run_train(["--resume", checkpoint, "--no-progress-bar"]) == run_dir
