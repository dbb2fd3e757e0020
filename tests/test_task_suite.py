"""The task suite (RLHF-Suite-v0): every task loads offline from the shipped artifacts, passes the env checkers, has
its measured figures, and its bias probe adds the bias at fixed content; `evaluate --suite` and the normalised score."""

import random

import numpy as np
import pytest
from helpers import check_task_env

import rlhf_gym  # noqa: F401  (registers the ids)
from rlhf_gym.agents import evaluate
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.registration import SUITES, task_of
from rlhf_gym.tasks import WORLDS, load_task, world_of

SUITE = SUITES["RLHF-Suite-v0"]
NEW_IDS = [env_id for env_id in SUITE if env_id != "RLHF-v0"]
MAX_ARTIFACTS_BYTES = 10 * 2**20


def test_the_suite_keeps_the_reviews_task_and_has_three_new_ones():
    assert SUITE[0] == "RLHF-v0" and len(NEW_IDS) >= 3
    assert {task_of(env_id) for env_id in NEW_IDS} == {"lists", "facts", "describe"} <= set(WORLDS)


@pytest.mark.parametrize("env_id", NEW_IDS)
def test_a_suite_env_loads_offline_and_passes_both_env_checkers(env_id):
    check_task_env(env_id)


@pytest.mark.parametrize("env_id", NEW_IDS)
def test_shipped_artifacts_are_small_and_carry_their_measured_figures(env_id):
    task = load_task(task_of(env_id))
    size = sum(f.stat().st_size for f in task.artifacts_dir.rglob("*") if f.is_file())
    assert size < MAX_ARTIFACTS_BYTES
    metadata = task.metadata
    assert metadata["task"] == task.name and metadata["build_config"]["annotator_bias_weights"]
    assert 0.55 < metadata["reward_model"]["eval_accuracy"] <= 1 and 0.55 < metadata["reward_model"]["gold_agreement"] <= 1
    sft = metadata["sft"]
    assert sft["well_formed_share"] > 0.8 and sft["gold_reward_mean"] < sft["gold_ceiling_mean"] == 1.0


@pytest.mark.parametrize("name", ["lists", "facts", "describe"])
def test_the_bias_probe_adds_bias_at_fixed_or_lower_gold(name):
    world = world_of(name)
    for prompt in world.prompt_split()[1][:50]:
        responses = [world.bias_probe(prompt, k) for k in range(4)]
        bias = [world.annotator_bias(prompt, r) for r in responses]
        gold = [world.gold_reward(prompt, r) for r in responses]
        assert all(world.is_well_formed(prompt, r) for r in responses)
        assert gold[0] == world.gold_ceiling(prompt) and np.all(np.diff(gold) <= 0)
        assert np.all(np.diff(bias) >= 1)


@pytest.mark.parametrize("name", ["lists", "facts", "describe"])
def test_the_content_probe_keeps_shape_and_bias_and_breaks_the_content(name):
    world = world_of(name)
    for prompt in world.prompt_split()[1][:50]:
        ceiling, wrong = world.bias_probe(prompt, 0), world.content_probe(prompt)
        assert world.is_well_formed(prompt, wrong) and len(wrong.split()) >= len(ceiling.split())
        assert world.annotator_bias(prompt, wrong) == world.annotator_bias(prompt, ceiling)
        assert world.gold_reward(prompt, wrong) <= world.gold_reward(prompt, ceiling) - 1


@pytest.mark.parametrize("name", ["lists", "facts", "describe"])
def test_every_prompt_and_a_full_response_fit_the_models_context(name):
    world = world_of(name)
    tokenizer = world.tokenizer()
    longest = max(len(tokenizer(p)["input_ids"]) for p in world.all_prompts()[::7])
    assert longest + world.max_new_tokens <= 64
    rng = random.Random(0)
    for _ in range(200):
        assert tokenizer.unk_token_id not in tokenizer(" ".join(world.sample_text(rng)))["input_ids"]


def test_normalised_score_is_zero_at_the_sft_figure_and_one_at_the_ceiling():
    task = load_task("lists")
    prompts = task.eval_prompts[:20]
    sft = task.metadata["sft"]["gold_reward_mean"]
    assert task.normalised_score(prompts, sft) == pytest.approx(0.0)
    assert task.normalised_score(prompts, 1.0) == pytest.approx(1.0)
    assert task.normalised_score(prompts, (sft + 1.0) / 2) == pytest.approx(0.5)
    assert load_task("reviews").normalised_score(prompts, 0.5) is None  # no ceiling


def test_evaluate_suite_scores_sft_on_every_task(capsys):
    result = evaluate.main(evaluate.Args(agent="sft", suite="RLHF-Suite-v0", n_eval_prompts=16))
    assert [row["env_id"] for row in result["rows"]] == list(SUITE)
    by_id = {row["env_id"]: row["metrics"] for row in result["rows"]}
    assert by_id["RLHF-v0"]["normalised_score"] is None
    for env_id in NEW_IDS:
        assert -1.0 < by_id[env_id]["normalised_score"] < 1.0 and by_id[env_id]["kl"] == pytest.approx(0, abs=1e-4)
    table = capsys.readouterr().out
    assert all(f"| {env_id} |" in table for env_id in SUITE)


@pytest.mark.parametrize("argv, message", [
    (["--suite", "RLHF-Suite-v9"], "unknown suite 'RLHF-Suite-v9'"),
    (["--suite", "RLHF-Suite-v0", "--agent", "runs/x/policy"], "name each task's agent with {task} or {env_id}"),
    (["--suite", "RLHF-Suite-v0", "--agent", "runs/{task}/policy"], "no such file or directory for RLHF-v0"),
    (["--suite", "RLHF-Suite-v0", "--agent", "runs/{model}/policy"], "only {task} and {env_id} may be filled in"),
])
def test_evaluate_suite_bad_arguments_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(evaluate.Args, "", argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
