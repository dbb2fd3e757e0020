"""The newer preference-optimisation trainers learn the task, end to end through ``rlhf-gym train`` at their defaults:
with a fixed seed, the gold reward on held-out prompts ends above the SFT policy's."""

import json

import pytest

from rlhf_gym.agents import train

# (algorithm, budget): a short run each; KTO on the first 4,000 of the task's comparisons (8,000 examples), twice. The
# gains with these budgets (seed 0, one thread) are far above the noise of 64 prompts' mean gold (about 0.11)
BUDGETS = [("online_dpo", ["--total-responses", "3200"]), ("kto", ["--passes", "2"]),
           ("simpo", ["--total-comparisons", "4800"])]


@pytest.mark.slow
@pytest.mark.parametrize("algo, budget", BUDGETS, ids=[algo for algo, _ in BUDGETS])
def test_gold_ends_above_the_sft_policy_with_a_fixed_seed(algo, budget, tmp_path, task):
    from rlhf_gym.cli import parse_dataclass
    from rlhf_gym.jsonl import write_jsonl

    data = []
    if algo == "kto":
        write_jsonl(tmp_path / "comparisons.jsonl", task.reward_model_comparisons()[:4000])
        data = ["--comparisons", str(tmp_path / "comparisons.jsonl")]
    run_dir = train.main(parse_dataclass(train.Args, "", ["--algo", algo, "--seed", "0", "--n-eval-prompts", "64",
                                                          "--out-dir", str(tmp_path), "--no-progress-bar", *budget,
                                                          *data]))
    summary = json.loads((run_dir / "summary.json").read_text())
    before, after = summary["before"], summary["after"]
    assert after["gold_reward"] > before["gold_reward"] + 0.2, (before, after)
    assert after["well_formed"] > 0.8 and after["kl"] < 10
