"""The suite's v1 tasks (issue 27): each is its v0 task's world and SFT policy with a reward model built by the v1
recipe; it loads offline, passes both env checkers, and its shipped reward model sees content (its measured agreement
with gold by pair type)."""

import json

import pytest
from helpers import check_task_env
import torch
from transformers import GPT2LMHeadModel

import rlhf_gym  # noqa: F401  (registers the ids)
from rlhf_gym.generation import generate_texts
from rlhf_gym.pair_types import content_probes
from rlhf_gym.registration import SUITES, task_of
from rlhf_gym.studies import leaderboard
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.tasks.building import BuildConfig
from rlhf_gym.tasks.describe.gold import gold_reward_v1
from rlhf_gym.tasks.world import SUITE_V1_BUILD

V1_TASKS = {"RLHF-Lists-v1": ("lists_v1", "lists"), "RLHF-Facts-v1": ("facts_v1", "facts"),
            "RLHF-Describe-v1": ("describe_v1", "describe")}
"""Each v1 env id: its task and the v0 task it is a version of."""
V1_GOLD = {"describe_v1": gold_reward_v1}
"""The v1 tasks whose gold is not their v0 task's (describe's shortest-reply gap closed)."""
AGREEMENT_FLOORS = {"lists_v1": (0.75, 0.70), "facts_v1": (0.75, 0.70), "describe_v1": (0.75, 0.70)}
"""Floors under the shipped v1 reward model's agreement with gold on the build's fresh SFT pairs, overall and on every
content family (the v0 proxies: 0.50 to 0.64 on every family). Lists' (the per-token scores averaged over the
response: 0.830, 0.791 on repeated items) and facts' (rebuilt with the same reading and garbled pairs: 0.847, 0.858 on
missing facts) are held to issue 27's targets, 0.75 and 0.70, as describe's is now (with contrast pairs: 0.765, 0.755 on
wrong properties; docs/task_suite.md)."""
MIN_PROBE_PREFERENCE = 0.6
"""Floor under the share of held-out prompts on which the reward model prefers the ceiling answer to the same answer
with one error of a family (a content-blind proxy: about 0.5)."""
PROBED_FAMILIES = {"describe_v1": ("wrong_property",)}
"""The families whose probe a v1 proxy passes (above the floor and above v0's proxy), where not all: describe's v1
proxy prefers the ceiling answer less often than v0's on the negated-property probe (0.68 of 1,000 prompts; v0's
0.98, which prefers any answer without a negation) and about as often on the unaddressed-property one (0.60 against
0.65), though far above v0 on the SFT pairs of both families (docs/task_suite.md)."""
MAX_ARTIFACTS_BYTES = 20 * 2**20
"""Twice v0's comparisons: up to 20 MiB (a v0 task's artifacts are under 10 MiB; facts' 40,000 comparisons take 14 MB)."""


@pytest.mark.parametrize("env_id", V1_TASKS)
def test_a_v1_world_is_its_v0_world_with_artifacts_and_a_build_of_its_own(env_id):
    name, v0_name = V1_TASKS[env_id]
    assert task_of(env_id) == name
    world, v0 = world_of(name), world_of(v0_name)
    assert world.name == name and world.artifacts_dir != v0.artifacts_dir and world.artifacts_dir.parent.name == name
    assert world.gold_reward is V1_GOLD.get(name, v0.gold_reward)
    for part in ("all_prompts", "sample_text", "annotator_bias", "content_profile", "vocabulary",
                 "max_new_tokens"):
        assert getattr(world, part) is getattr(v0, part), part
    assert world.prompt_split() == v0.prompt_split() and world.content_errors == v0.content_errors
    config = BuildConfig.for_world(world)
    assert {key: getattr(config, key) for key in SUITE_V1_BUILD} == SUITE_V1_BUILD
    assert config.reward_pooling == "mean"
    assert load_task(name).load_reward_model().pooling == config.reward_pooling  # the shipped model is the build's
    assert config.annotator_bias_weights and world.annotator_bias is v0.annotator_bias  # the hack stays
    assert config.sft_from == str(v0.artifacts_dir / "policy")


@pytest.mark.parametrize("env_id", V1_TASKS)
def test_a_v1_env_loads_offline_and_passes_both_env_checkers(env_id):
    assert check_task_env(env_id).unwrapped.task.name == task_of(env_id)


@pytest.mark.parametrize("env_id", V1_TASKS)
def test_a_v1_task_ships_v0_s_sft_policy_and_a_reward_model_that_sees_content(env_id):
    name, v0_name = V1_TASKS[env_id]
    task, v0 = load_task(name), load_task(v0_name)
    size = sum(f.stat().st_size for f in task.artifacts_dir.rglob("*") if f.is_file())
    assert size < MAX_ARTIFACTS_BYTES
    policy, v0_policy = (GPT2LMHeadModel.from_pretrained(t.policy_dir) for t in (task, v0))
    assert all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), v0_policy.state_dict().values()))
    metadata = task.metadata
    assert metadata["task"] == name and metadata["build_config"]["sft_from"] == f"rlhf_gym/tasks/{v0_name}/artifacts/policy"
    by_type = metadata["reward_model"]["by_type"]
    min_overall, min_family = AGREEMENT_FLOORS[name]
    assert by_type["overall"]["agreement"] >= min_overall
    families = set(world_of(name).content_errors)
    assert families <= set(by_type)
    assert all(by_type[family]["agreement"] >= min_family for family in families), by_type


@pytest.mark.parametrize("name", ["lists_v1", "describe_v1"])
def test_a_mean_pooled_v1_proxy_scores_saying_nothing_and_a_lone_period_below_the_sft_policy_s_answers(name):
    """A mean over the response scores the empty answer 0 whatever it learnt, and reads a one-token answer where a
    clause ends: without cuts to nothing and to a suffix, describe's proxy scored both above its SFT answers and PPO
    learnt them (docs/task_suite.md)."""
    task = load_task(name)
    reward_model, prompts = task.load_reward_model(), task.eval_prompts[:64]
    sft_scores = reward_model.score(prompts, generate_texts(task.load_policy(), task.load_tokenizer(), prompts,
                                                            task.max_new_tokens, seed=0))
    for degenerate in ("", "."):
        scores = reward_model.score(prompts, [degenerate] * len(prompts))
        assert (sft_scores > scores).mean() >= 0.8, (degenerate, scores.mean(), sft_scores.mean())


@pytest.mark.parametrize("env_id", V1_TASKS)
def test_a_v1_reward_model_prefers_the_ceiling_answer_to_one_content_error_of_each_family(env_id):
    name, v0_name = V1_TASKS[env_id]
    world, prompts = world_of(name), world_of(name).prompt_split()[1][:200]
    v1 = content_probes(world, load_task(name).load_reward_model().score, prompts)
    v0 = content_probes(world, load_task(v0_name).load_reward_model().score, prompts)
    for family in PROBED_FAMILIES.get(name, world.content_errors):
        assert v1[family]["prefers_ceiling"] >= MIN_PROBE_PREFERENCE, (family, v1[family])
        assert v1[family]["prefers_ceiling"] > v0[family]["prefers_ceiling"], family


def test_the_v1_suite_is_the_reviews_task_and_the_three_v1_tasks():
    assert SUITES["RLHF-Suite-v1"] == ("RLHF-v0", *V1_TASKS)


@pytest.mark.slow
def test_a_quick_v1_suite_leaderboard_runs_end_to_end(tmp_path):
    """Every task of RLHF-Suite-v1 through the leaderboard (quick budgets): SFT and PPO on each, and suite.md."""
    rows = leaderboard.main(leaderboard.Args(quick=True, seeds="0", suite="RLHF-Suite-v1", out_dir=str(tmp_path),
                                             methods="sft,ppo"))
    assert [row["method"] for row in rows] == ["sft", "ppo"] * len(SUITES["RLHF-Suite-v1"])  # one pair per task
    suite_table = (tmp_path / "suite.md").read_text()
    for env_id in SUITES["RLHF-Suite-v1"]:
        assert env_id in suite_table
        sft = json.loads(leaderboard.record_path(tmp_path / env_id, "sft", 0).read_text())
        assert sft["kl"] == pytest.approx(0, abs=1e-4)
        assert (sft["normalised_score"] is None) == (env_id == "RLHF-v0")  # the v1 tasks have a gold ceiling
