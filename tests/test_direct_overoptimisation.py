"""``rlhf-gym direct-overopt``: the quick study end to end, its stages' budgets, the over-optimisation test of a run,
the fit, reruns and bad options."""

import json

import pytest

from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError
from rlhf_gym.studies import direct_overoptimisation as command


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    args = parse_dataclass(command.Args, "", ["--quick", "--out-dir", str(tmp_path_factory.mktemp("overopt"))])
    return args, command.main(args)


@pytest.mark.slow
def test_quick_study_trains_each_method_in_stages_and_fits_each(study):
    args, result = study
    assert [r["method"] for r in result["rows"]] == ["dpo", "online_dpo"]
    assert len(result["runs"]) == 4
    for run in result["runs"]:
        # before training, then one evaluation per stage, each budget counted from the run's start
        assert [p["length"] for p in run["points"]] == [0.0, 0.005, 0.01]
        assert run["points"][0]["kl"] == pytest.approx(0.0, abs=1e-3)
        assert run["beta"] == pytest.approx(run["beta_scale"] * 0.5)  # both methods' default beta is 0.5
    online = next(r for r in result["runs"] if r["method"] == "online_dpo")
    assert [p["budget"] for p in online["points"]] == [0, 64, 128] and online["unit"] == "responses"
    offline = next(r for r in result["runs"] if r["method"] == "dpo")
    assert [p["budget"] for p in offline["points"]] == [0, 45, 90] and offline["unit"] == "comparisons"
    for row in result["rows"]:
        assert row["fit"]["n_points"] == 6 and row["n_runs"] == 2
    saved = json.loads((command.Path(args.out_dir) / "overoptimisation.json").read_text())
    assert saved["rows"] == result["rows"]
    table = (command.Path(args.out_dir) / "overoptimisation.md").read_text()
    assert "| dpo | 2 |" in table and "| online_dpo | 2 |" in table
    assert (command.Path(args.out_dir) / "overoptimisation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_rerun_reuses_the_stored_runs_and_refuses_other_settings(study):
    args, _ = study
    before = {p: p.stat().st_mtime_ns for p in (command.Path(args.out_dir) / "runs").iterdir()}
    assert command.jobs(args) == []
    changed = parse_dataclass(command.Args, "", ["--quick", "--out-dir", args.out_dir])
    changed.n_eval_prompts = 16
    with pytest.raises(ConfigError, match="other settings"):
        command.jobs(changed)
    assert {p: p.stat().st_mtime_ns for p in (command.Path(args.out_dir) / "runs").iterdir()} == before


def test_stage_budgets_round_up_to_whole_rollouts():
    assert command.stage_budget(0.25, 12_800, 64) == 3200
    assert command.stage_budget(0.01, 12_800, 48) == 144  # 128 -> the next multiple of 48
    assert command.stage_budget(0.5, 9000, 1) == 4500
    assert command.stage_budget(1e-6, 9000, 1) == 1


def points(*gold, std=0.8, n=256):
    return {"config": {"n_eval_prompts": n}, "points": [{"gold_reward": g, "kl": k, "gold_reward_std": std}
                                                        for k, g in enumerate(gold)]}


def test_a_run_over_optimised_when_its_gold_fell_from_a_risen_peak_beyond_the_noise():
    # noise: 2 * sqrt(2 * 0.8^2 / 256) = 0.1414
    assert command.overoptimised(points(0.0, 0.5, 0.3))
    assert not command.overoptimised(points(0.0, 0.5, 0.37))  # a fall of 0.13: within the noise
    assert command.overoptimised(points(0.0, 0.5, 0.37, std=0.5))  # the same fall, a quieter evaluation (noise 0.088)
    assert not command.overoptimised(points(0.0, 0.3, 0.5))  # still rising
    assert not command.overoptimised(points(0.5, 0.2, 0.1))  # never rose above its start


def test_the_method_row_fits_gao_on_the_gain_over_the_start():
    # gain = d (1 - 0.5 ln d) exactly at d = 1, 2, 3 (KL = d^2), from a start of -0.2
    import math

    gains = {d: d * (1 - 0.5 * math.log(d)) for d in (1, 2, 3)}
    start = {"kl": 0.0, "gold_reward": -0.2, "length": 0.0, "well_formed": 1.0, "gold_reward_std": 0.8}
    run = {"beta": 0.5, "config": {"n_eval_prompts": 256}, "points": [start] + [
        {**start, "kl": float(d * d), "gold_reward": -0.2 + g, "length": float(d)} for d, g in gains.items()]}
    row = command.summarize_method("dpo", [run])
    assert row["fit"]["alpha"] == pytest.approx(1.0) and row["fit"]["b"] == pytest.approx(0.5)
    assert row["fit"]["peak_kl"] == pytest.approx(math.exp(2 * (1 / 0.5 - 1)))  # d* = exp(alpha / b - 1)
    assert row["best"]["length"] == 3.0  # gains 1, 1.31, 1.35: the fitted peak d* = e is near d = 3
    assert row["max_kl"] == 9.0 and "| 7.4 |" in command.markdown_table([row])  # the peak KL e^2 lies within the points
    rising = command.summarize_method("dpo", [{**run, "points": run["points"][:3]}])  # d = 1, 2 only: KL <= 4
    assert "beyond the points (KL > 4.0)" in command.markdown_table([rising])


@pytest.mark.parametrize("argv, message", [
    (["--methods", "ppo"], "ppo has no --dpo-beta"),
    (["--methods", "nope"], "--algo must be one of"),
    (["--beta-scales", "1,0.5"], "--beta-scales must be positive numbers in increasing order"),
    (["--lengths", "0,1"], "--lengths must be positive numbers in increasing order"),
    (["--lengths", "a"], "--lengths must be comma-separated numbers"),
])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(command.Args, "", argv, prog="rlhf-gym direct-overopt")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
