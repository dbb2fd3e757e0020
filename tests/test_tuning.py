"""``rlhf-gym tune``: grids within the budget, the validation split kept out of training, the choice rule, the quick
study end to end and what the leaderboard reads from it; ``train --passes`` and ``evaluate --split validation``."""

import json

import pytest

from rlhf_gym import provenance
from rlhf_gym.agents import evaluate, train
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.studies import tuning
from rlhf_gym.tasks.base import VALIDATION_PROMPTS


def test_grids_parse_and_expand_in_order():
    grid = tuning.parse_grid("kl_coef=0.05,0.1; learning_rate=1e-4,3e-4;passes=1,3")
    assert grid == {"kl_coef": (0.05, 0.1), "learning_rate": (1e-4, 3e-4), "passes": (1, 3)}
    assert isinstance(grid["passes"][0], int)
    assert tuning.settings_of({"a": (1, 2), "b": (3,)}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(ConfigError, match="not name=value"):
        tuning.parse_grid("kl_coef=low")


def test_grids_vary_the_kl_placement_and_estimator_of_online_methods_by_name():
    grid = tuning.parse_grid("kl_coef=0.1; kl_placement=terminal, per_token; kl_estimator=k3")
    assert grid == {"kl_coef": (0.1,), "kl_placement": ("terminal", "per_token"), "kl_estimator": ("k3",)}
    settings = tuning.Args(methods="ppo,rloo", grid="kl_placement=terminal,per_token").settings("ppo")
    assert settings == [{"kl_placement": "terminal"}, {"kl_placement": "per_token"}]
    assert tuning.setting_text({"kl_coef": 0.1, "kl_placement": "per_token"}) == "kl_coef 0.1, kl_placement per_token"
    with pytest.raises(ConfigError, match="kl_placement must be one of terminal, per_token, got 'per-token'"):
        tuning.parse_grid("kl_placement=terminal,per-token")


def test_grids_vary_the_critic_of_ppo_and_nlpo_by_name():
    settings = tuning.Args(methods="ppo,nlpo", grid="critic=shared,reward_model").settings("nlpo")
    assert settings == [{"critic": "shared"}, {"critic": "reward_model"}]
    with pytest.raises(ConfigError, match="critic must be one of shared, separate, reward_model, got 'rm'"):
        tuning.parse_grid("critic=rm")
    with pytest.raises(ConfigError, match="critic is not one of its settings"):
        tuning.Args(methods="rloo", grid="critic=separate")


@pytest.mark.parametrize("method", sorted(tuning.GRIDS))
def test_every_built_in_grid_is_within_the_budget_and_the_methods_own_options(method):
    settings = tuning.Args(methods=method).settings(method)
    assert 2 <= len(settings) <= tuning.MAX_SETTINGS


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ppo", "--grid", "kl_coef=0.01,0.02,0.05,0.1;learning_rate=1e-4,3e-4"], "8 settings; the tuning budget"),
    (["--methods", "ppo", "--grid", "passes=1,3"], "passes is not one of its settings"),
    (["--methods", "dpo", "--grid", "kl_coef=0.1"], "kl_coef is not one of its settings"),
    (["--methods", "dpo", "--grid", "kl_placement=per_token"], "kl_placement is not one of its settings"),
    (["--methods", "nope"], "--algo must be one of"),
])
def test_bad_grids_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(tuning.Args, "", argv, prog="rlhf-gym tune")
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def row(gold, kl):
    return {"setting": {"x": gold}, "gold_reward": gold, "kl": kl}


def test_the_choice_is_the_best_gold_within_the_kl_budget_else_the_smallest_kl():
    assert tuning.choose([row(0.5, 3.0), row(1.2, 12.0), row(0.8, 9.9)], 10.0)["gold_reward"] == 0.8
    assert tuning.choose([row(0.5, 13.0), row(1.2, 12.0)], 10.0)["gold_reward"] == 1.2  # none within: smallest KL


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    args = parse_dataclass(tuning.Args, "", ["--quick", "--out-dir", str(tmp_path_factory.mktemp("tune"))])
    return args, tuning.main(args)


def test_quick_tuning_scores_every_setting_on_the_validation_split_and_chooses_one(quick, task):
    args, result = quick
    assert [m["method"] for m in result["methods"]] == ["dpo", "online_dpo"]
    for method in result["methods"]:
        assert [r["setting"] for r in method["rows"]] == [{"dpo_beta": 0.25}, {"dpo_beta": 0.5}]
        assert method["chosen"] == tuning.choose(method["rows"], args.kl_budget)["setting"]
    record = json.loads(args.record_path("online_dpo", 1, 100).read_text())
    run_args = json.loads((tuning.Path(record["run_dir"]) / "args.json").read_text())
    assert (run_args["dpo_beta"], run_args["seed"], run_args["prompts"]) == (0.5, 100, record_prompts(args))
    assert tuning.chosen_settings(tuning.Path(args.out_dir) / "tuning.json") == {m["method"]: m["chosen"]
                                                                                for m in result["methods"]}
    written = (tuning.Path(args.out_dir) / "tuning.md").read_text()
    assert "| online_dpo | dpo_beta 0.5 |" in written
    assert f"records made on {provenance.machine_text(record['machine'])}" in written


def test_a_named_setting_reaches_the_run_and_the_table(quick):
    args, _ = quick
    record = tuning.train_setting(args, "ppo", {"kl_placement": "per_token"}, 100)
    run_args = json.loads((tuning.Path(record["run_dir"]) / "args.json").read_text())
    assert (run_args["algo"], run_args["kl_placement"]) == ("ppo", "per_token")
    assert record["machine"]["torch_threads"] == provenance.machine()["torch_threads"]  # the run's own process: this one
    rows = [{"setting": {"kl_placement": placement}, "gold_reward": 0.1, "kl": 1.0, "well_formed": 1.0}
            for placement in ("terminal", "per_token")]
    table = tuning.markdown_table([{"method": "ppo", "rows": rows, "chosen": rows[1]["setting"]}], 10.0)
    assert "| ppo | kl_placement per_token | 0.100 | 1.00 | 1.00 | **chosen** |" in table


def record_prompts(args):
    return str(tuning.Path(args.out_dir) / "data" / "tuning_prompts.jsonl")


def test_the_validation_split_is_kept_out_of_the_training_data(quick, task):
    args, _ = quick
    validation = set(task.validation_prompts)
    assert len(task.validation_prompts) == VALIDATION_PROMPTS and task.validation_prompts == task.train_prompts[-256:]
    prompts = [r["prompt"] for r in read_jsonl(record_prompts(args))]
    assert prompts == task.train_prompts[:-VALIDATION_PROMPTS] and not validation & set(prompts)
    comparisons = list(read_jsonl(tuning.Path(args.out_dir) / "data" / "tuning_comparisons.jsonl"))
    assert comparisons and not validation & {r["prompt"] for r in comparisons}
    assert not validation & set(task.eval_prompts)  # and the held-out prompts are neither


def test_data_written_for_another_run_is_refused(quick):
    args, _ = quick
    other = parse_dataclass(tuning.Args, "", ["--methods", "dpo", "--out-dir", args.out_dir])
    with pytest.raises(ConfigError, match=r"manifest.json was made with other settings \(quick\)"):
        tuning.training_data(other)


def test_evaluate_scores_the_validation_split_when_asked():
    result = evaluate.main(evaluate.Args(agent="sft", split="validation", n_eval_prompts=4))
    from rlhf_gym.tasks import load_task

    assert result["n_prompts"] == 4 and result["args"]["split"] == "validation"
    assert result["samples"][0][0] == load_task("reviews").validation_prompts[0]
    with pytest.raises(ConfigError, match="--split must be one of held_out, validation"):
        evaluate.Args(split="test")


def test_passes_set_an_offline_budget_and_are_refused_elsewhere(tmp_path):
    records = [{"prompt": "the food", "chosen": "was great .", "rejected": "was"}] * 1 + [
        {"prompt": "the room", "chosen": "felt calm .", "rejected": "felt"}]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    run_dir = train.main(train.Args(algo="dpo", comparisons=str(data), passes=3, batch_size=2, n_eval_prompts=4,
                                    out_dir=str(tmp_path), progress_bar=False))
    assert json.loads((run_dir / "summary.json").read_text())["comparisons"] == 6  # 3 passes over 2 comparisons
    with pytest.raises(ConfigError, match="--passes is the budget of the offline algorithms"):
        train.Args(algo="ppo", passes=2)
    with pytest.raises(ConfigError, match="without --total-comparisons"):
        train.Args(algo="dpo", passes=2, total_comparisons=10)
