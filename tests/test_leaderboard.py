"""The leaderboard: aggregation over seeds by hand, the headline's KL budget, resumable records, the quick pipeline."""

import json
import re

import numpy as np
import pytest

from rlhf_gym.studies import leaderboard
from rlhf_gym.tasks import load_task
from rlhf_gym.tasks.lists.grammar import parse_prompt
from rlhf_gym.errors import ConfigError


def record(method, seed, gold, kl, **extra):
    return {"method": method, "seed": seed, "gold_reward": gold, "kl": kl, "proxy_reward": gold + 1, "distinct_2": 0.5,
            "well_formed": 1.0, "seconds": 10.0 * (seed + 1), **extra}


def test_aggregate_gives_the_mean_and_its_95_percent_interval_and_a_headline_within_the_budget():
    records = [record("ppo", 0, 1.0, 4.0), record("ppo", 1, 2.0, 6.0), record("ppo", 2, 3.0, 12.0),
               record("grpo", 0, 0.5, 20.0)]
    rows = {row["method"]: row for row in leaderboard.aggregate(records, kl_budget=10.0)}
    ppo = rows["ppo"]
    assert ppo["seeds"] == 3
    # gold 1, 2, 3: sample std 1, t_{0.975, 2} = 4.303, half-width 4.303 / sqrt(3)
    assert ppo["gold_reward"] == pytest.approx((2.0, 4.303 / 3 ** 0.5))
    assert ppo["seconds"] == pytest.approx((20.0, 43.03 / 3 ** 0.5))
    # seeds 0 and 1 are within the budget: gold 1, 2, sample std 0.7071, t_{0.975, 1} = 12.706
    assert ppo["headline"] == pytest.approx((1.5, 12.706 * 0.5 ** 0.5 / 2 ** 0.5)) and ppo["within_budget"] == 2
    assert rows["grpo"]["headline"] is None
    assert rows["grpo"]["gold_reward"] == (0.5, None)  # one seed: no interval (null in leaderboard.json)
    table = leaderboard.markdown_table(list(rows.values()), 10.0)
    # one seed over the budget: the headline is shown with how many seeds were within, but not ranked
    assert ppo["tier"] is None and ppo["letters"] is None
    assert "**1.500 ± 6.353 (2 of 3 within)** | — | — |" in table and "| grpo | 1 | **over budget** | — | — | 0.500 |" in table


def headline_row(method, mean, half_width, seeds=5, within=None):
    return {"method": method, "headline": (mean, half_width), "seeds": seeds,
            "within_budget": seeds if within is None else within}


def test_a_method_over_the_budget_on_some_seeds_is_not_ranked_and_does_not_join_the_tiers():
    # c's interval over its 3 seeds within the budget spans a and b; ranked, it would hold all three in one tier
    rows = [headline_row("a", 1.0, 0.1), headline_row("b", 0.5, 0.1), headline_row("c", 0.7, 0.6, within=3)]
    leaderboard.significance_tiers(rows)
    assert [r["tier"] for r in rows] == [1, 2, None] and [r["letters"] for r in rows] == ["a", "b", None]
    assert leaderboard.separated_methods(rows) == ["a", "b"]
    rows[2]["within_budget"] = 5  # all seeds within: the same interval is ranked and joins the tiers
    leaderboard.significance_tiers(rows)
    assert [r["tier"] for r in rows] == [1, 1, 1] and [r["letters"] for r in rows] == ["a", "b", "ab"]


def test_tiers_are_cut_only_where_every_interval_above_clears_every_interval_below():
    rows = [headline_row("a", 1.30, 0.05), headline_row("b", 1.20, 0.06), headline_row("c", 1.12, 0.03),
            headline_row("d", 0.50, 0.10), headline_row("e", 0.45, 0.01, seeds=1), headline_row("f", 0.2, 0.4)]
    leaderboard.significance_tiers(rows)
    # a [1.25, 1.35] overlaps b [1.14, 1.26], b overlaps c [1.09, 1.15]: no cut among them; all three clear d [0.4, 0.6]
    # and f [-0.2, 0.6]; d and f overlap. e has one seed within the budget: no interval, no tier
    assert [r["tier"] for r in rows] == [1, 1, 1, 2, None, 2]
    # the letters: a-b and b-c overlap, a-c are apart ([1.25, 1.35] against [1.09, 1.15]); d and f overlap
    assert [r["letters"] for r in rows] == ["a", "ab", "b", "c", None, "c"]
    assert leaderboard.separated_methods(rows) == ["a", "c", "d"]  # d and f both end at 0.6: the first in rank order
    rows = [headline_row("a", 1.0, 0.1), headline_row("b", 0.5, 0.1), headline_row("c", 0.0, 0.1)]
    leaderboard.significance_tiers(rows)
    assert [r["tier"] for r in rows] == [1, 2, 3]
    # b [8.4, 8.6] clears a [9, 11], but c's wide interval [5.4, 11.4] reaches a: no cut anywhere
    rows = [headline_row("a", 10.0, 1.0), headline_row("b", 8.5, 0.1), headline_row("c", 8.4, 3.0)]
    leaderboard.significance_tiers(rows)
    assert [r["tier"] for r in rows] == [1, 1, 1]
    # ... but the letters keep a > b: they share no letter, and c shares one with each
    assert [r["letters"] for r in rows] == ["a", "b", "ab"] and leaderboard.separated_methods(rows) == ["a", "b"]
    summary = leaderboard.significance_summary(rows, leaderboard.separated_methods(rows))
    assert "1 tier(s)" in summary and "2 level(s): a > b." in summary


def test_a_tuned_leaderboard_trains_each_method_with_its_chosen_setting(tmp_path, monkeypatch):
    tuned = tmp_path / "tuning.json"
    tuned.write_text(json.dumps({"methods": [{"method": "dpo", "chosen": {"dpo_beta": 0.25, "passes": 3}},
                                             {"method": "ppo", "chosen": {"kl_coef": 0.05, "learning_rate": 3e-4}}]}))
    args = leaderboard.Args(methods="dpo,ppo,rloo,ppo_small_beta", seeds="0", out_dir=str(tmp_path / "board"),
                            tuned=str(tuned))
    assert args.setting_of("dpo") == {"dpo_beta": 0.25, "passes": 3} and args.setting_of("rloo") == {}
    seen = {}

    def fake_train(run_args):
        seen[run_args.algo if run_args.kl_coef != 0.01 else "ppo_small_beta"] = (
            run_args.dpo_beta, run_args.passes, run_args.kl_coef, run_args.learning_rate)
        raise SystemExit  # far enough: the run's arguments are what the test checks

    monkeypatch.setattr(leaderboard.train, "main", fake_train)
    for method in ("dpo", "ppo", "rloo", "ppo_small_beta"):
        with pytest.raises(SystemExit):
            leaderboard.train_and_score(method, 0, args)
    # the tuned kl_coef replaces PPO's default; PPO at the small beta keeps its own (it was not tuned)
    assert seen == {"dpo": (0.25, 3, None, None), "ppo": (None, None, 0.05, 3e-4), "rloo": (None, None, None, None),
                    "ppo_small_beta": (None, None, 0.01, None)}
    # a record trained with another setting is refused, not mixed into the table
    leaderboard.record_path(args.out_dir, "dpo", 0).parent.mkdir(parents=True)
    leaderboard.record_path(args.out_dir, "dpo", 0).write_text(json.dumps(record("dpo", 0, 0.3, 1.0, setting={})))
    with pytest.raises(ConfigError, match=re.escape("was trained with setting {}, not {'dpo_beta': 0.25, 'passes': 3}")):
        leaderboard.jobs(args)


def test_the_written_leaderboard_counts_its_seeds(tmp_path):
    for seeds, phrase in (("0", "(1 seed: 0;"), ("0,1,2", "(3 seeds: 0, 1, 2;")):
        args = leaderboard.Args(methods="ppo", seeds=seeds, out_dir=str(tmp_path / seeds))
        records = [record("ppo", seed, 1.0 + seed, 4.0) for seed in args.seed_list]
        rows = leaderboard.env_leaderboard(args, records)
        assert rows[0]["seeds"] == len(args.seed_list)
        header = (tmp_path / seeds / "leaderboard.md").read_text().splitlines()[0]
        assert header.startswith(f"Leaderboard on RLHF-v0 {phrase}"), header
        plural = "s" if len(records) > 1 else ""
        assert header.endswith(f"records made on a machine not recorded ({len(records)} record{plural}))"), header


def test_a_record_names_the_machine_and_the_leaderboard_says_it(tmp_path, monkeypatch):
    args = leaderboard.Args(methods="sft", seeds="0,1", out_dir=str(tmp_path))
    monkeypatch.setattr(leaderboard, "method_records", lambda method, seed, a: {method: record(method, seed, 0.1, 0.0)})
    records = [leaderboard.run_method("sft", seed, args)["sft"] for seed in args.seed_list]
    assert records[0]["machine"] == leaderboard.machine()
    leaderboard.env_leaderboard(args, [{**r, "method": "sft", "seed": s} for s, r in enumerate(records)])
    header = (tmp_path / "leaderboard.md").read_text().splitlines()[0]
    assert f"records made on {leaderboard.machines_summary(records).removeprefix('made on ')})" in header
    assert "(2 records)" in header and "several machines" not in header


def test_bad_arguments():
    with pytest.raises(ConfigError, match="--methods: unknown ddpg"):
        leaderboard.Args(methods="ppo,ddpg")
    with pytest.raises(ConfigError, match="--seeds must be comma-separated integers"):
        leaderboard.Args(seeds="0,one")
    with pytest.raises(ConfigError, match="--total-responses must be > 0"):
        leaderboard.Args(total_responses=0)


def test_finished_records_are_not_run_again(tmp_path, monkeypatch):
    args = leaderboard.Args(methods="sft,ppo", seeds="0", out_dir=str(tmp_path))
    stored = record("ppo", 0, 1.25, 4.0)
    leaderboard.record_path(tmp_path, "ppo", 0).parent.mkdir(parents=True)
    leaderboard.record_path(tmp_path, "ppo", 0).write_text(json.dumps(stored))
    ran = []
    monkeypatch.setattr(leaderboard, "run_method", lambda method, seed, a: ran.append(method) or {method: record(method, seed,
                                                                                                              0.0, 0.0)})
    records = leaderboard.collect(args)
    assert ran == ["sft"] and [r["method"] for r in records] == ["sft", "ppo"] and records[1]["gold_reward"] == 1.25


@pytest.mark.slow
def test_quick_leaderboard_runs_every_method_end_to_end(tmp_path):
    rows = leaderboard.main(leaderboard.Args(quick=True, seeds="0", out_dir=str(tmp_path)))
    assert [row["method"] for row in rows] == ["sft", "best_of_4", "ppo", "nlpo", "rloo", "grpo", "dpo"]
    for name in ("leaderboard.md", "leaderboard.json", "leaderboard.png"):
        assert (tmp_path / name).stat().st_size > 0
    # every trained method exported a policy that the protocol scored
    for method in ("ppo", "nlpo", "rloo", "grpo", "dpo"):
        stored = json.loads(leaderboard.record_path(tmp_path, method, 0).read_text())
        # the work it did (not its seconds: a quick DPO run now trains in under 0.05 s, which rounds to 0.0)
        assert stored["responses" if method != "dpo" else "comparisons"] > 0 and len(stored["samples"]) == 5


def test_suite_table_shows_the_normalised_score_or_else_the_gold_reward():
    rows = {"RLHF-v0": [{"method": "ppo", "normalised_score": None, "gold_reward": (1.25, 0.02)}],
            "RLHF-Lists-v0": [{"method": "ppo", "normalised_score": (0.5, 0.125), "gold_reward": (0.3, 0.1)},
                              {"method": "sft", "normalised_score": (0.0, 0.0), "gold_reward": (0.0, 0.0)}]}
    table = leaderboard.suite_table(rows).splitlines()
    assert table[0] == "| method | RLHF-v0 | RLHF-Lists-v0 |"
    assert table[2] == "| ppo | G 1.250 ± 0.020 | 0.50 ± 0.12 |" and table[3] == "| sft | — | 0.00 ± 0.00 |"
    assert table[4:] == ["| tiers | 0 | 0 |", "| levels apart | 0 | 0 |"]  # no headline intervals in these rows
    for rows_of_env, (mean, half_width) in zip(rows.values(), [(1.0, 0.1), (0.5, 0.1)]):
        rows_of_env[0].update(headline=(mean, half_width), seeds=5, within_budget=5)
    rows["RLHF-Lists-v0"][1].update(headline=(0.0, 0.1), seeds=5, within_budget=5)
    for rows_of_env in rows.values():
        leaderboard.significance_tiers(rows_of_env)
    assert leaderboard.suite_table(rows).splitlines()[4:] == ["| tiers | 1 | 2 |", "| levels apart | 1 | 2 |"]
    one_seed = {"RLHF-v0": [{"method": "ppo", "normalised_score": None, "gold_reward": (1.25, None)}]}
    assert leaderboard.suite_table(one_seed).splitlines()[2] == "| ppo | G 1.250 |"


@pytest.mark.slow
def test_quick_suite_leaderboard_and_its_hack_report(tmp_path, monkeypatch):
    """A one-task suite end to end: the leaderboard's suite.md with the normalised score, then suite-hacks on it."""
    from rlhf_gym.studies import suite_hacks
    from rlhf_gym import registration

    monkeypatch.setitem(registration.SUITES, "Tiny", ("RLHF-Lists-v0",))
    rows = leaderboard.main(leaderboard.Args(quick=True, seeds="0", suite="Tiny", out_dir=str(tmp_path),
                                             methods="sft,ppo,ppo_small_beta"))
    assert [row["method"] for row in rows] == ["sft", "ppo", "ppo_small_beta"]
    assert rows[0]["normalised_score"][0] == pytest.approx(0.0, abs=0.6)  # 8 prompts: near SFT's own figure
    small = json.loads(leaderboard.record_path(tmp_path / "RLHF-Lists-v0", "ppo_small_beta", 0).read_text())
    assert json.loads((tmp_path.joinpath(small["run_dir"]) / "args.json").read_text())["kl_coef"] == 0.01
    suite_md = (tmp_path / "suite.md").read_text()
    # one seed gives no interval, so no tier and no level apart (tests/test_statistics.py has the counting)
    assert "| ppo_small_beta |" in suite_md and "| tiers | 0 |" in suite_md and "| levels apart | 0 |" in suite_md

    reports = suite_hacks.main(suite_hacks.Args(leaderboard_dir=str(tmp_path), suite="Tiny", seeds="0", n_prompts=8,
                                                n_samples=2, out_dir=str(tmp_path / "hacks")))
    probe = reports[0]["probe"]
    # lists: each padded item costs 0.5 / k of gold (k = the items asked for) and adds one item of bias
    asked = [parse_prompt(p).k for p in load_task("lists").eval_prompts[:8]]
    assert [row["k"] for row in probe] == [0, 1, 2, 3]
    assert [row["gold_reward"] for row in probe] == pytest.approx([np.mean([1 - 0.5 * n / k for k in asked])
                                                                   for n in range(4)])
    assert np.diff([row["bias"] for row in probe]) == pytest.approx([1, 1, 1])
    # k members of another category: nothing valid, k invalid, k missing: (0 - k - 0.5 k) / k
    assert reports[0]["content"]["content wrong"]["gold_reward"] == pytest.approx(-1.5)
    assert reports[0]["content"]["ceiling"]["gold_reward"] == 1.0
    assert len(reports[0]["samples"]) == 2 and (tmp_path / "hacks" / "RLHF-Lists-v0_hack.png").stat().st_size > 0
    assert "## RLHF-Lists-v0: list length in items" in (tmp_path / "hacks" / "suite_hacks.md").read_text()
