"""Commands end to end (tiny budgets), their options, and one clear ``error:`` line (exit 1) for bad input.

Each command is imported as a module (``rlhf_gym.agents.train``, ``rlhf_gym.commands.*``) and run as
``main(parse_dataclass(Args, "", argv))``, or through ``run_command`` where the error policy is under test;
the scripts in ``scripts/`` are thin entry points onto the same modules.
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from helpers import cli_error, fake_run

from rlhf_gym import tasks
from rlhf_gym.cli import parse_dataclass, run_command
from rlhf_gym.command_registry import COMMANDS
from rlhf_gym.commands import build_task, collect, summarize, train_rm
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.studies import best_of_n
from rlhf_gym.tasks.building import BuildConfig
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"prompt": "the food was", "chosen": "great .", "rejected": "bad ."}


def script_command(path: Path) -> str | None:
    """The command name a thin script passes to ``run_command`` (None if it calls no ``run_command``)."""
    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "run_command"]
    return calls[0].args[0].value if len(calls) == 1 else None


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.py")))
def test_every_script_is_a_thin_entry_point_with_help(script, capsys):
    command = script_command(ROOT / "scripts" / script)
    assert command in COMMANDS, f"{script} should be `run_command(<one of COMMANDS>)` under `if __name__ == '__main__'`"
    with pytest.raises(SystemExit) as exit_info:
        run_command(command, ["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith(f"usage: rlhf-gym {command}")
    for spelling in ("--output", "--out_dir", "--save-dir", "--output-dir"):
        assert spelling not in help_text


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# train-rm


def test_train_rm_trains_and_saves_in_hf_format(tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, {**GOOD, "chosen": "great , really great ."}] * 8)
    argv = ["--data", str(data), "--out-dir", str(tmp_path / "rm"), "--epochs", "1", "--batch-size", "8"]
    metrics = train_rm.main(parse_dataclass(train_rm.Args, "", argv))
    assert metrics["n_train"] + metrics["n_eval"] == 2 and metrics["n_duplicates"] == 14  # two distinct comparisons
    assert (tmp_path / "rm" / "config.json").is_file() and (tmp_path / "rm" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "rm" / "reward_metadata.json").read_text())["data"] == str(data)


def test_train_rm_names_the_bad_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD, {**GOOD, "chosen": 3}])
    error = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm"])
    assert error == (f"error: {data}:2: column 'chosen' must be a string or a list of messages, got int "
                     "(pass --skip-bad-lines to skip malformed lines)")
    assert not (tmp_path / "rm").exists()


@pytest.mark.parametrize("records, message", [
    ([GOOD], "need at least 2 comparisons to train a reward model, got 1"),
    (["{not json"], ":1: invalid JSON"),
])
def test_train_rm_rejects_unusable_data(tmp_path, capsys, records, message):
    data = write_jsonl(tmp_path / "prefs.jsonl", records)
    assert message in cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm"])


def test_train_rm_missing_data_and_model(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert cli_error(capsys, "train-rm", ["--data", missing]) == f"error: --data: file not found: {missing}"
    data = write_jsonl(tmp_path / "prefs.jsonl", [GOOD] * 4)
    error = cli_error(capsys, "train-rm", ["--data", data, "--model", tmp_path / "no_model", "--out-dir", tmp_path / "rm"])
    assert error.startswith(f"error: cannot load --model's tokenizer from '{tmp_path / 'no_model'}'")
    (tmp_path / "empty_dir").mkdir()
    error = cli_error(capsys, "train-rm", ["--data", data, "--model", tmp_path / "empty_dir", "--out-dir", tmp_path / "rm"])
    assert error.startswith(f"error: cannot load --model's tokenizer from '{tmp_path / 'empty_dir'}'")


def test_train_rm_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(train_rm.Args, "", ["--eval-fraction", "1.5"])
    assert exit_info.value.code == 2 and "--eval-fraction must be in (0, 1), got 1.5" in capsys.readouterr().err


# collect


def test_collect_writes_labelled_and_unlabelled_pairs(tmp_path):
    base = ["--n-pairs", "4", "--max-new-tokens", "6"]
    added = collect.main(parse_dataclass(collect.Args, "", [*base, "--out", str(tmp_path / "prefs.jsonl")]))
    records = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert added == len(records) > 0 and {"prompt", "chosen", "rejected", "labeler"} <= set(records[0])
    collect.main(parse_dataclass(collect.Args, "", [*base, "--no-labeler", "--out", str(tmp_path / "pairs.jsonl")]))
    assert {"pair_id", "response_a", "response_b"} <= set(json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0]))


@pytest.mark.parametrize("argv, message", [
    (["--task", "chess"], f"error: unknown task 'chess'; known tasks: {sorted(tasks.task_names())}"),
    (["--policy", "/nonexistent/policy"], "error: cannot load --policy from '/nonexistent/policy': no such file or directory"),
    (["--prompts", "/nonexistent/prompts.txt"], "error: prompt file not found: /nonexistent/prompts.txt"),
    (["--prompts", "prompts.csv"], "error: prompt file 'prompts.csv': expected a .jsonl, .json or .txt file"),
    (["--device", "gpu"], "error: unknown device 'gpu': expected cpu, cuda, cuda:N, mps or auto"),
])
def test_collect_user_errors(tmp_path, capsys, argv, message):
    assert cli_error(capsys, "collect", ["--out", tmp_path / "prefs.jsonl", "--n-pairs", "2", *argv]) == message
    assert not (tmp_path / "prefs.jsonl").exists()


def test_collect_refuses_an_output_it_did_not_write(tmp_path, capsys):
    out = write_jsonl(tmp_path / "prefs.jsonl", [GOOD])
    error = cli_error(capsys, "collect", ["--out", out, "--n-pairs", "2", "--max-new-tokens", "4"])
    assert error.startswith(f"error: {out}:1: not a preference file written by the collector")
    assert out.read_text() == json.dumps(GOOD) + "\n"


# best-of-n


def test_best_of_n_writes_json_and_markdown(tmp_path):
    argv = ["--out-dir", str(tmp_path), "--n-max", "2", "--n-prompts", "3", "--max-new-tokens", "6",
            "--threads", str(torch.get_num_threads())]
    curve = best_of_n.main(parse_dataclass(best_of_n.Args, "", argv))
    assert [row["n"] for row in curve] == [1, 2]
    assert json.loads((tmp_path / "best_of_n.json").read_text())["n_prompts"] == 3
    assert "| n | KL (nats) | proxy reward | gold reward | well-formed |" in (tmp_path / "best_of_n.md").read_text()


def nan_ensemble(task, directory: Path) -> Path:
    """An ensemble of one member whose scores are all NaN (its score head's weights are NaN)."""
    member = task.load_reward_model()
    torch.nn.init.constant_(member.model.score.weight, float("nan"))
    member.save_pretrained(directory / "member_1")
    (directory / "ensemble.json").write_text(json.dumps({"members": [{"path": "member_1", "shift": 0.0, "scale": 1.0}]}))
    return directory


def test_best_of_n_refuses_nan_rewards(task, tmp_path, capsys):
    ensemble = nan_ensemble(task, tmp_path / "ensemble")
    argv = ["--ensemble-objective", "mean", "--ensemble-dir", ensemble, "--out-dir", tmp_path / "out", "--n-max", "2",
            "--n-prompts", "2", "--max-new-tokens", "4", "--threads", torch.get_num_threads()]
    error = cli_error(capsys, "best-of-n", argv)
    assert error.startswith("error: reward function returned nan for response 0 (prompt ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("manifest, message", [
    (None, "no ensemble at {dir} (missing ensemble.json)"),
    ("{", "{dir}/ensemble.json: not valid JSON"),
    ('{"members": [{"path": "m"}]}', "{dir}/ensemble.json: 'members' must be a non-empty list"),
])
def test_best_of_n_names_a_missing_or_malformed_ensemble(tmp_path, capsys, manifest, message):
    directory = tmp_path / "ensemble"
    directory.mkdir()
    if manifest is not None:
        (directory / "ensemble.json").write_text(manifest)
    error = cli_error(capsys, "best-of-n", ["--ensemble-objective", "worst", "--ensemble-dir", directory,
                                            "--out-dir", tmp_path / "out", "--threads", torch.get_num_threads()])
    assert error.startswith("error: " + message.format(dir=directory))


# summarize


def test_summarize_expands_patterns_and_lists(tmp_path, capsys):
    for seed, gold in enumerate([1.0, 3.0]):
        fake_run(tmp_path / f"RLHF-v0__x__{seed}__1", gold)
    table = summarize.main(summarize.Args(runs=str(tmp_path / "RLHF-v0__x__*")))
    # gold 1 and 3: mean 2, sample std sqrt(2), 95 % half-width t_{0.975,1} * sqrt(2) / sqrt(2) = 12.706
    assert "| gold_reward | 0.000 ± 0.000 | 2.000 ± 12.706 |" in table and "after (nlpo)" in table
    out = capsys.readouterr().out
    assert out.startswith("2 runs; mean ± half-width of the 95 % confidence interval")
    assert "| RLHF-v0__x__1__1 | ? | 3.000 | nan | 1.00 | ? | 10 |" in out  # each run's own row
    listed = ",".join(str(tmp_path / f"RLHF-v0__x__{seed}__1") for seed in (0, 1))
    assert summarize.main(summarize.Args(runs=listed)) == table


def test_summarize_user_errors(tmp_path, capsys):
    pattern = tmp_path / "nothing__*"
    assert cli_error(capsys, "summarize", ["--runs", pattern]) == f"error: --runs: no run directory matches '{pattern}'"
    (tmp_path / "empty").mkdir()
    assert cli_error(capsys, "summarize", ["--runs", tmp_path / "empty"]) == f"error: no summary.json in: {tmp_path / 'empty'}"
    broken = fake_run(tmp_path / "broken", 1.0)
    (broken / "summary.json").write_text("{")
    assert cli_error(capsys, "summarize", ["--runs", broken]).startswith(f"error: {broken / 'summary.json'}: not valid JSON")


# build-task


def test_build_task_options_mirror_the_build_config():
    options = {f.name for f in dataclasses.fields(build_task.Args)} - {"task", "out_dir"}
    assert options == set(dataclasses.asdict(BuildConfig()))
    assert dataclasses.asdict(build_task.Args(seed=3).build_config()) == {**dataclasses.asdict(BuildConfig()), "seed": 3}
    weights = build_task.Args(annotator_bias_weights="none").build_config().annotator_bias_weights
    assert weights == () == BuildConfig().annotator_bias_weights


def test_build_task_takes_a_world_s_defaults_then_the_options():
    world = dataclasses.replace(REVIEWS, name="biased", annotator_bias=lambda p, r: len(r.split()),
                                build_defaults={"annotator_bias_weights": (0.0, 0.5), "n_comparisons": 7})
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(tasks.WORLDS, "biased", world)  # the worlds that world_of() knows
        assert build_task.Args(task="biased").build_config() == BuildConfig(annotator_bias_weights=(0.0, 0.5),
                                                                             n_comparisons=7)
        config = build_task.Args(task="biased", annotator_bias_weights="1,2", n_comparisons=9).build_config()
        assert (config.annotator_bias_weights, config.n_comparisons) == ((1.0, 2.0), 9)


@pytest.mark.parametrize("argv, message", [
    (["--n-comparisons", "0"], "--n-comparisons must be > 0, got 0"),
    (["--annotator-flip-rate", "2"], "--annotator-flip-rate must be in [0, 1], got 2.0"),
    (["--n-eval-samples", "5000"], "--n-eval-samples must be <= 1024"),
    (["--task", "chess"], "unknown task 'chess'"),
    (["--annotator-bias-weights", "0.1,x"], "--annotator-bias-weights must be comma-separated numbers or 'none'"),
    (["--annotator-bias-weights", "0.5"], "--annotator-bias-weights: task 'reviews' has no annotator bias feature"),
    (["--annotator-bias-weights", "0.1,nan"], "--annotator-bias-weights must be finite"),
    (["--task", "lists", "--pairs", "mixed", "--reward-content-epochs", "-1"], "--reward-content-epochs must be >= 0, got -1"),
    (["--task", "lists", "--pairs", "sft", "--reward-content-epochs", "2"],
     "--reward-content-epochs needs counterfactual comparisons: --pairs counterfactual or mixed"),
    (["--task", "lists", "--cut-share", "1.5"], "--cut-share must be in [0, 1), got 1.5"),
    (["--task", "lists", "--garble-share", "1"], "--garble-share must be in [0, 1), got 1.0"),
    (["--reward-pooling", "max"], "--reward-pooling must be one of last, sum, mean, got 'max'"),
    (["--task", "lists", "--cut-empty"], "--cut-empty shapes cut pairs: it needs --cut-share > 0"),
    (["--task", "lists", "--cut-ends"], "--cut-ends shapes cut pairs: it needs --cut-share > 0"),
    (["--task", "describe", "--pairs", "mixed", "--contrast-share", "0.3", "--reward-contrast-epochs", "-1"],
     "--reward-contrast-epochs must be >= 0, got -1"),
    (["--task", "describe", "--pairs", "mixed", "--reward-contrast-epochs", "2"],
     "--reward-contrast-epochs needs contrast comparisons: --contrast-share > 0"),
    (["--task", "lists", "--pairs", "mixed", "--contrast-share", "0.3"], "--contrast-share needs a task with contrasts"),
    (["--task", "describe", "--pairs", "mixed", "--contrast-share", "1"], "--contrast-share must be in [0, 1), got 1.0"),
])
def test_build_task_bad_options_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(build_task.Args, "", argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_build_task_builds_a_tiny_task(tmp_path):
    argv = ["--out-dir", str(tmp_path / "task"), "--n-sft-texts", "64", "--sft-epochs", "1", "--policy-width", "16",
            "--policy-layers", "1", "--reward-width", "16", "--reward-layers", "1", "--n-comparisons", "32",
            "--reward-epochs", "1", "--n-eval-samples", "16", "--max-new-tokens", "6", "--reward-pooling", "sum"]
    metadata = build_task.main(parse_dataclass(build_task.Args, "", argv))
    for name in ("policy/config.json", "reward_model/config.json", "preferences.jsonl", "metadata.json"):
        assert (tmp_path / "task" / name).is_file(), name
    assert metadata["build_config"]["n_comparisons"] == 32 and not (tmp_path / "task.building").exists()
    assert metadata["build_config"]["reward_pooling"] == "sum"
    assert RewardModel.from_pretrained(tmp_path / "task" / "reward_model").pooling == "sum"
    assert metadata["machine"]["torch_threads"] == torch.get_num_threads() and metadata["machine"]["cpu"]
    assert metadata["versions"]["torch"] == torch.__version__


def test_build_task_on_a_shipped_sft_policy_with_counterfactual_pairs(tmp_path, capsys, monkeypatch):
    """--sft-from: new comparisons (here mixed, ties labelled) and a new reward model on the task's own SFT policy;
    --reward-content-epochs: a first training on the counterfactual comparisons alone, then one on all of them;
    --cut-share: cut pairs among the ordinary ones, --cut-empty: some cut to nothing (the records load, empty);
    --garble-share: garbled pairs among the ordinary ones left, and a form probe in the metadata."""
    import torch

    from rlhf_gym.preferences import load_preferences
    from rlhf_gym.reward_training import train_reward_model
    from rlhf_gym.tasks import building, load_task, world_of

    trainings = []

    def recording_training(model, records, config, progress=True):
        trainings.append(([r.get("pair_type", "sft").split(":")[0] for r in records], config.epochs))
        return train_reward_model(model, records, config, progress=progress)

    monkeypatch.setattr(building, "train_reward_model", recording_training)
    shipped = load_task("lists").policy_dir
    argv = ["--task", "lists", "--out-dir", str(tmp_path / "task"), "--sft-from", str(shipped), "--pairs", "mixed",
            "--annotator-ties", "label", "--n-comparisons", "48", "--reward-init", "scratch", "--reward-width", "16",
            "--reward-layers", "1", "--reward-epochs", "1", "--reward-content-epochs", "2", "--reward-standardise",
            "--cut-share", "0.5", "--cut-empty", "--garble-share", "0.5", "--n-eval-samples", "24"]
    metadata = build_task.main(parse_dataclass(build_task.Args, "", argv))
    from transformers import GPT2LMHeadModel

    built, original = (GPT2LMHeadModel.from_pretrained(d) for d in (tmp_path / "task" / "policy", shipped))
    assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), original.state_dict().values()))
    # the shipped policy is recorded relative to the package's parent: no local path in a task's metadata
    assert metadata["sft"]["final_loss"] is None
    assert metadata["build_config"]["sft_from"] == "rlhf_gym/tasks/lists/artifacts/policy"
    (content_kinds, content_epochs), (all_kinds, all_epochs) = trainings
    assert set(content_kinds) == {"counterfactual"} and content_epochs == 2
    assert all_epochs == 1 and set(all_kinds) == {"sft", "counterfactual", "cut", "garbled"}
    assert len(content_kinds) == all_kinds.count("counterfactual")
    assert metadata["reward_model"]["standardised_from_std"] > 0
    records = load_preferences(tmp_path / "task" / "preferences.jsonl", include_non_preferences=True,
                               allow_empty_responses=True)
    kinds = {r["pair_type"].split(":")[0] for r in records}
    assert kinds == {"sft", "counterfactual", "cut", "garbled"} and metadata["build_config"]["cut_share"] == 0.5
    assert metadata["build_config"]["garble_share"] == 0.5
    assert any(r["pair_type"] == "cut" and "" in (r["chosen"], r["rejected"]) for r in records)
    train, held_out = world_of("lists").task(tmp_path / "task").reward_model_split()  # empty responses and all
    assert any("" in (r["chosen"], r["rejected"]) for r in train + held_out)
    by_type = metadata["reward_model"]["by_type"]
    assert set(by_type) == {"overall", "length_form", "other_category", "excluded_member", "repeated_item", "gold_ties"}
    assert set(metadata["reward_model"]["content_probes"]) == {"other_category", "excluded_member", "repeated_item"}
    form = metadata["reward_model"]["form_probe"]
    assert form["prompts"] == 24 and form["gold_margin"] > 0  # every ceiling list garbles; ill-formed loses gold
    assert "agreement with gold by pair type" in capsys.readouterr().out


def test_build_task_with_contrast_pairs_trains_on_them_first(tmp_path, monkeypatch):
    """--contrast-share: contrast pairs among the counterfactual ones; --reward-contrast-epochs: a first training on
    them alone, then the content passes (counterfactual and contrast pairs), then all."""
    from rlhf_gym.preferences import load_preferences
    from rlhf_gym.reward_training import train_reward_model
    from rlhf_gym.tasks import building, load_task, world_of

    trainings = []

    def recording_training(model, records, config, progress=True):
        trainings.append((sorted({r["pair_type"].split(":")[0] for r in records}), len(records), config.epochs))
        return train_reward_model(model, records, config, progress=progress)

    monkeypatch.setattr(building, "train_reward_model", recording_training)
    argv = ["--task", "describe", "--out-dir", str(tmp_path / "task"), "--sft-from", str(load_task("describe").policy_dir),
            "--pairs", "counterfactual", "--contrast-share", "0.5", "--n-comparisons", "48", "--reward-init", "scratch",
            "--reward-width", "16", "--reward-layers", "1", "--reward-epochs", "1", "--reward-content-epochs", "1",
            "--reward-contrast-epochs", "2", "--n-eval-samples", "16"]
    metadata = build_task.main(parse_dataclass(build_task.Args, "", argv))
    records = load_preferences(tmp_path / "task" / "preferences.jsonl")
    contrasts = [r for r in records if r["pair_type"] == "contrast:negation_move"]
    assert contrasts and metadata["build_config"]["contrast_share"] == 0.5
    gold = world_of("describe").gold_reward
    for r in contrasts:  # the same words, another gold
        assert sorted(r["chosen"].split()) == sorted(r["rejected"].split())
        assert gold(r["prompt"], r["chosen"]) != gold(r["prompt"], r["rejected"])
    n_content = sum(r["pair_type"].startswith(("counterfactual", "contrast")) for r in records)
    assert trainings == [(["contrast"], len(contrasts), 2), (["contrast", "counterfactual"], n_content, 1),
                         (sorted({r["pair_type"].split(":")[0] for r in records}), len(records), 1)]


def test_build_task_refuses_an_sft_policy_that_is_not_there_or_not_the_task_s(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(build_task.Args, "", ["--task", "lists", "--sft-from", str(tmp_path)], prog="rlhf-gym build-task")
    assert f"--sft-from: no saved policy (config.json) in {tmp_path}" in capsys.readouterr().err
    from rlhf_gym.errors import ConfigError
    from rlhf_gym.tasks import load_task, world_of
    from rlhf_gym.tasks.building import saved_task_policy

    with pytest.raises(ConfigError, match="not of the lists task's"):
        saved_task_policy(world_of("lists"), str(load_task("reviews").policy_dir))
