"""rlhf-gym evaluate: a saved agent zip and an exported policy directory score the same; the headline number."""

import json
import shutil
import zipfile

import pytest
from helpers import cli_error
from transformers import AutoTokenizer

from rlhf_gym.agents import TokenPPO
from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.agents import evaluate as command

METRICS = {"gold_reward", "proxy_reward", "kl", "response_length", "distinct_1", "distinct_2", "well_formed"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A TokenPPO agent after one tiny iteration, saved as agent.zip and exported as policy/."""
    out = tmp_path_factory.mktemp("agent")
    env = RLHFVecEnv(num_envs=8, max_new_tokens=12, beta=0.1)
    model = TokenPPO("TransformerPolicy", env, batch_size=4, n_epochs=1, learning_rate=1e-3, seed=0, device="cpu")
    model.learn(96)
    model.save(out / "agent.zip")
    model.export_pretrained(out / "policy")
    return out


def evaluate(tmp_path, *argv):
    script = command
    out = tmp_path / "result.json"
    result = script.main(parse_dataclass(script.Args, "", ["--n-eval-prompts", "16", "--device", "cpu", "--out", str(out),
                                                           *argv]))
    assert json.loads(out.read_text())["metrics"] == result["metrics"]
    return result


def test_zip_and_policy_directory_give_the_same_scores(trained, tmp_path):
    from_zip = evaluate(tmp_path, "--agent", str(trained / "agent.zip"))
    from_dir = evaluate(tmp_path, "--agent", str(trained / "policy"))
    assert METRICS <= set(from_zip["metrics"])
    assert from_zip["n_prompts"] == 16
    for key in METRICS:
        assert from_zip["metrics"][key] == pytest.approx(from_dir["metrics"][key], abs=1e-5), key
    assert from_zip["headline"]["value"] == from_zip["metrics"]["gold_reward"]  # a tiny update stays within 10 nats


def test_sft_reference_has_zero_kl_and_best_of_n_gap(tmp_path):
    curve = [{"n": 1, "kl": 0.0, "gold_reward": -0.1}, {"n": 2, "kl": 0.19315, "gold_reward": 0.2}]
    (tmp_path / "bon.json").write_text(json.dumps({"curve": curve}))
    result = evaluate(tmp_path, "--agent", "sft", "--best-of-n", str(tmp_path / "bon.json"))
    metrics = result["metrics"]
    assert abs(metrics["kl"]) < 1e-3
    assert result["best_of_n_matched"]["gold_reward"] == pytest.approx(-0.1, abs=0.01)
    matched = result["best_of_n_matched"]
    assert matched["gap"] == pytest.approx(metrics["gold_reward"] - matched["gold_reward"])


def test_headline_by_hand():
    headline = command.headline
    assert headline(1.22, 4.7) == 1.22          # the default PPO run: within budget
    assert headline(-0.15, 20.8) is None        # the beta=0.05 hack: over budget
    assert headline(0.5, 10.0) == 0.5           # the budget is inclusive
    assert headline(0.5, 10.5, kl_budget=12.0) == 0.5


def test_bad_arguments(capsys):
    script = command
    for argv, message in ((["--env-id", "RLHF-v9"], "--env-id: Environment version `v9` for environment `RLHF` doesn"),
                          (["--agent", "/nonexistent.zip"], "no such file")):
        with pytest.raises(SystemExit):
            parse_dataclass(script.Args, "", argv)
        assert message in capsys.readouterr().err


def test_policy_with_another_tokenizer_is_refused(trained, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained / "policy", other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["zzz"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match=r"tokenizer of --agent .* differs from the reference"):
        evaluate(tmp_path, "--agent", str(other))


def test_a_truncated_agent_zip_is_one_error_line_naming_it(trained, tmp_path, capsys):
    data = (trained / "agent.zip").read_bytes()
    with zipfile.ZipFile(trained / "agent.zip") as archive:
        member = archive.infolist()[-2]
    # cut in the middle; cut just after a stored member, whose own zip end record (a torch file's) then ends the file
    for cut in (len(data) // 2, member.header_offset + 30 + len(member.filename) + len(member.extra) + member.compress_size):
        agent = tmp_path / f"agent_{cut}.zip"
        agent.write_bytes(data[:cut])
        error = cli_error(capsys, "evaluate", ["--agent", agent, "--n-eval-prompts", 4, "--device", "cpu"])
        assert str(agent) in error and "truncated or corrupt" in error
