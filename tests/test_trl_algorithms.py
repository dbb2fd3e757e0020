"""The TRL DPO / RLOO / GRPO baselines (benchmarks/trl_algorithms.py): settings, reward wrapper, export, evaluation."""

import json

import numpy as np
import pytest

from rlhf_gym.benchmarks.trl_algorithms import (
    Args,
    Settings,
    build_trainer,
    dpo_records,
    evaluate_trl,
    proxy_reward_function,
    train_trl,
)
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError, DataError
from rlhf_gym.tasks import load_task
from rlhf_gym.utils import load_model

pytest.importorskip("trl")  # the bench extra, not the test extra

TINY_RL = dict(prompts_per_generation=4, num_generations=2, steps_per_generation=2, responses=8)  # 8 / (8 / 2) = 2 steps
TINY_DPO = dict(comparisons=8, dpo_batch_size=4)  # 8 / 4 = 2 steps


@pytest.fixture(scope="module")
def task():
    return load_task("reviews")


def test_default_settings_are_the_matched_budget():
    settings = Settings()
    # 16 prompts x 4 responses = 64 per generation batch, in 4 optimizer steps of 16; 12,800 responses = 800 steps
    assert settings.responses_per_step == 16
    assert settings.responses // settings.responses_per_step == 800
    assert (settings.rloo_beta, settings.grpo_beta, settings.learning_rate) == (0.1, 0.04, 1e-4)
    assert (settings.dpo_beta, settings.dpo_batch_size, settings.dpo_learning_rate) == (0.5, 64, 3e-4)


@pytest.mark.parametrize("bad", [dict(responses=100), dict(num_generations=1), dict(steps_per_generation=3)])
def test_settings_refuse_a_budget_that_does_not_split(bad):
    with pytest.raises(ConfigError):
        Settings(**bad)


def test_unknown_algo_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(Args, "", ["--algo", "ppo"])
    assert exit_info.value.code == 2 and "--algo" in capsys.readouterr().err


def test_reward_function_scores_the_stripped_response_like_the_env():
    calls = []

    def reward_model(prompts, responses):
        calls.append((prompts, responses))
        return np.array([1.5, -2.0])

    reward = proxy_reward_function(reward_model)
    scores = reward(prompts=["a b c", "d e f"], completions=[" weak . ", "good"], completion_ids=[[1], [2]])
    assert scores == [1.5, -2.0]
    assert calls == [(["a b c", "d e f"], ["weak .", "good"])]
    with pytest.raises(DataError):  # a NaN score is refused, as in the env
        proxy_reward_function(lambda p, r: np.array([np.nan]))(["a b c"], ["x"])


def test_dpo_uses_the_reward_models_training_split(task):
    records = dpo_records(task)
    assert len(records["prompt"]) == 9000  # 10,000 shipped comparisons minus the 10 % held out by split_records
    # TRL tokenises prompt + completion as one string: the leading space keeps the words apart
    assert all(c.startswith(" ") and r.startswith(" ") for c, r in zip(records["chosen"], records["rejected"]))
    assert len(dpo_records(task, comparisons=8)["chosen"]) == 8


@pytest.mark.slow
def test_trl_samples_like_the_env(tmp_path, task):
    trainer = build_trainer("rloo", tmp_path, 0, Settings(**TINY_RL), task)
    tokenizer, generation = task.load_tokenizer(), trainer.generation_config
    assert (generation.eos_token_id, generation.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert generation.max_new_tokens == task.max_new_tokens == 24
    assert (generation.do_sample, generation.temperature, generation.top_k, generation.top_p) == (True, 1.0, 0, 1.0)
    assert trainer.args.per_device_train_batch_size == 4 and trainer.args.generation_batch_size == 8
    assert trainer.args.max_steps == 2 and trainer.beta == 0.1


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dpo", "rloo", "grpo"])
def test_trains_exports_and_evaluates(tmp_path, task, algo):
    settings = Settings(**(TINY_DPO if algo == "dpo" else TINY_RL))
    policy_dir = train_trl(algo, tmp_path, seed=0, settings=settings)
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["optimizer_steps"] == 2 and record["trl_config"]["learning_rate"] == (3e-4 if algo == "dpo" else 1e-4)
    assert (policy_dir / "config.json").is_file() and (policy_dir / "tokenizer.json").is_file()
    sft = task.load_policy().state_dict()
    weights = load_model(policy_dir, "policy", "the exported policy").state_dict()
    assert max((weights[k] - sft[k]).abs().max().item() for k in sft) > 0  # it trained
    metrics = evaluate_trl(policy_dir, n_eval_prompts=8)["metrics"]
    assert all(np.isfinite(metrics[k]) for k in ("gold_reward", "kl", "proxy_reward", "well_formed"))
