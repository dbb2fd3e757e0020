"""The leaderboard: aggregation over seeds by hand, the headline's KL budget, resumable records, the quick pipeline."""

import json

import pytest

from benchmarks import leaderboard
from rlhf_gym.errors import ConfigError


def record(method, seed, gold, kl, **extra):
    return {"method": method, "seed": seed, "gold_reward": gold, "kl": kl, "proxy_reward": gold + 1, "distinct_2": 0.5,
            "well_formed": 1.0, "seconds": 10.0 * (seed + 1), **extra}


def test_aggregate_gives_mean_and_population_std_and_a_headline_within_the_budget():
    records = [record("ppo", 0, 1.0, 4.0), record("ppo", 1, 2.0, 6.0), record("ppo", 2, 3.0, 12.0),
               record("grpo", 0, 0.5, 20.0)]
    rows = {row["method"]: row for row in leaderboard.aggregate(records, kl_budget=10.0)}
    ppo = rows["ppo"]
    assert ppo["seeds"] == 3
    assert ppo["gold_reward"] == pytest.approx((2.0, (2 / 3) ** 0.5))
    assert ppo["seconds"] == pytest.approx((20.0, (200 / 3) ** 0.5))
    assert ppo["headline"] == pytest.approx((1.5, 0.5)) and ppo["within_budget"] == 2  # seed 2 is over budget
    assert rows["grpo"]["headline"] is None
    table = leaderboard.markdown_table(list(rows.values()), 10.0)
    assert "**1.500 ± 0.500 (2 of 3 within)**" in table and "| grpo | 1 | **over budget** |" in table


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
        assert stored["responses" if method != "dpo" else "seconds"] > 0 and len(stored["samples"]) == 5
