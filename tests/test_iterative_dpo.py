"""Iterative DPO, ``rlhf-gym iterate --method dpo``: each round's comparisons come from the last round's policy and
train it with DPO (no reward model); the run store, resuming and the stored settings are iterate's."""

import json

import pytest
import torch

from rlhf_gym.agents.dpo import DPO
from rlhf_gym.agents.registry import load_policy
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.collect import collect_preferences
from rlhf_gym.errors import ConfigError
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.preferences import load_preferences
from rlhf_gym.studies import iterated as command
from rlhf_gym.studies.analysis.rounds import (AGENT_FILE, COMPARISONS_FILE, REWARD_DIR, ROUND_FILE, round_dir, round_prompts,
                                              round_seed, run_dir)

TINY = ["--seeds", "0", "--total-comparisons", "32", "--iterations", "2", "--n-envs", "8", "--batch-size", "8",
        "--max-new-tokens", "12", "--n-eval-prompts", "16", "--workers", "1", "--method", "dpo", "--rounds", "1,2"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    args = parse_dataclass(command.Args, "", [*TINY, "--out-dir", str(tmp_path_factory.mktemp("iterative_dpo"))])
    return args, command.main(args)


def test_each_round_trains_the_policy_with_dpo_on_its_own_comparisons_and_no_reward_model(study):
    args, _ = study
    two = run_dir(args.out_dir, 2, 0)
    for k in (1, 2):
        directory = round_dir(two, k)
        assert not (directory / REWARD_DIR).exists()
        record = json.loads((directory / ROUND_FILE).read_text())
        assert record["reward_model"] is None and record["first_round_proxy"] is None
        assert record["config"]["method"] == "dpo" and record["config"]["dpo_beta"] == 0.5
        # one pass over this round's 16 comparisons (ties left out): the counter of the evaluation after it
        n_preferences = len(load_preferences(directory / COMPARISONS_FILE))
        assert record["points"][-1]["comparisons"] == n_preferences
        assert DPO.load(directory / AGENT_FILE).num_comparisons == n_preferences
    saved = json.loads((run_dir(args.out_dir, 2, 0).parent / "iterated.json").read_text())
    one, two_run = saved["runs"]
    # an evaluation before round 1 and after each round, at the iterations a PPO run of the schedule would have
    assert [(p["round"], p["iteration"]) for p in one["points"]] == [(1, 0), (1, 2)]
    assert [(p["round"], p["iteration"]) for p in two_run["points"]] == [(1, 0), (1, 1), (2, 2)]
    table = (run_dir(args.out_dir, 2, 0).parent / "iterated.md").read_text()
    assert table.startswith("# Iterative DPO") and "| n/a |" in table


def test_round_2_starts_from_round_1_s_policy_and_samples_its_pairs_from_it(study, task, tokenizer, ref_model, tmp_path):
    args, _ = study
    run = run_dir(args.out_dir, 2, 0)
    round_1 = load_policy(round_dir(run, 1) / AGENT_FILE, "cpu")
    exported = type(ref_model).from_pretrained(round_dir(run, 1) / command.POLICY_DIR)
    for a, b in zip(round_1.parameters(), exported.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(round_1.parameters(), ref_model.parameters()))
    path = tmp_path / "expected.jsonl"
    collect_preferences(round_1, tokenizer, round_prompts(task.train_prompts, 0, 2), None, path, 16, args.max_new_tokens,
                        seed=round_seed(0, 2), progress=False)
    expected = {r["pair_id"]: {r["response_a"], r["response_b"]} for r in read_jsonl(path)}
    assert {r["pair_id"]: {r["chosen"], r["rejected"]} for r in read_jsonl(round_dir(run, 2) / COMPARISONS_FILE)} == expected
    # round 2's DPO reference is the SFT policy: its cached reference log-probs are the SFT policy's
    comparisons = round_dir(run, 2) / COMPARISONS_FILE
    agent = DPO.load(round_dir(run, 2) / AGENT_FILE, comparisons=comparisons)
    fresh = DPO(ref_model, None, tokenizer, comparisons, learning_rate=3e-4, batch_size=64, max_new_tokens=args.max_new_tokens)
    torch.testing.assert_close(agent.ref_logps, fresh.ref_logps)


def test_a_rerun_reuses_the_runs_and_other_settings_are_refused(study, capsys):
    args, _ = study
    before = {p: p.stat().st_mtime_ns for p in run_dir(args.out_dir, 2, 0).rglob("*")}
    command.main(parse_dataclass(command.Args, "", [*TINY, "--out-dir", args.out_dir]))
    assert "2 of 2 runs already done" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run_dir(args.out_dir, 2, 0).rglob("*")} == before
    with pytest.raises(ConfigError, match=r"other settings \(.*dpo_beta"):
        command.main(parse_dataclass(command.Args, "", [*TINY, "--dpo-beta", "0.1", "--out-dir", args.out_dir]))
    rlhf = [a for a in TINY if a not in ("--method", "dpo")]
    with pytest.raises(ConfigError, match=r"other settings \(.*method"):
        command.main(parse_dataclass(command.Args, "", [*rlhf, "--out-dir", args.out_dir]))
