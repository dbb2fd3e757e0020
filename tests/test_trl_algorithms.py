"""The TRL DPO / RLOO / GRPO / online DPO / KTO / SimPO baselines (benchmarks/trl_algorithms.py): settings, reward wrapper,
export, evaluation."""

import json

import numpy as np
import pytest
import torch

from rlhf_gym.benchmarks.trl_algorithms import (
    Args,
    Settings,
    build_trainer,
    dpo_records,
    evaluate_trl,
    our_defaults,
    proxy_reward_function,
    train_trl,
)
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError, DataError
from rlhf_gym.agents.offline import tokenize_response
from rlhf_gym.agents.simpo import simpo_loss
from rlhf_gym.tasks import load_task
from rlhf_gym.utils import load_model

pytest.importorskip("trl")  # the bench extra, not the test extra

TINY_RL = dict(prompts_per_generation=4, num_generations=2, steps_per_generation=2, responses=8)  # 8 / (8 / 2) = 2 steps
TINY_OFFLINE = dict(comparisons=8, dpo_batch_size=4, kto_batch_size=8, simpo_batch_size=4)  # 2 steps (KTO: 16 examples)
OFFLINE = ("dpo", "kto", "simpo")


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


def test_online_dpo_settings_are_ours():
    ours, settings = our_defaults("online_dpo"), Settings()
    # 16 responses (8 pairs) per optimizer step, one pass, constant learning rate 1e-4
    assert (settings.responses_per_step, settings.learning_rate) == (ours.batch_size, ours.learning_rate)
    assert (ours.n_epochs, ours.lr_schedule, ours.judge) == (1, "constant", "reward_model")


@pytest.mark.parametrize("bad", [dict(responses=100), dict(num_generations=1), dict(steps_per_generation=3),
                                 dict(kto_batch_size=-1), dict(simpo_batch_size=-1)])
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


def assert_samples_like_the_env(generation, task) -> None:
    """TRL's generation config samples as the env does: the task's EOS and pad, its budget, plain temperature 1."""
    tokenizer = task.load_tokenizer()
    assert (generation.eos_token_id, generation.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert generation.max_new_tokens == task.max_new_tokens == 24
    assert (generation.do_sample, generation.temperature, generation.top_k, generation.top_p) == (True, 1.0, 0, 1.0)


@pytest.mark.slow
def test_trl_samples_like_the_env(tmp_path, task):
    trainer = build_trainer("rloo", tmp_path, 0, Settings(**TINY_RL), task)
    assert_samples_like_the_env(trainer.generation_config, task)
    assert trainer.args.per_device_train_batch_size == 4 and trainer.args.generation_batch_size == 8
    assert trainer.args.max_steps == 2 and trainer.beta == 0.1


def response_tokens(labels) -> list[list[int]]:
    """The trained-on tokens of each row of TRL's ``*_labels`` (-100 elsewhere; a tensor or lists)."""
    return [[int(t) for t in row if t != -100] for row in labels]


@pytest.mark.slow
def test_trl_online_dpo_samples_pairs_and_judges_with_our_reward_model(tmp_path, task):
    trainer = build_trainer("online_dpo", tmp_path, 0, Settings(**TINY_RL), task)
    assert_samples_like_the_env(trainer.generation_config, task)
    assert trainer.num_generations == 2 and trainer.args.per_device_train_batch_size == 2  # prompts: 4 responses a step
    assert trainer.args.max_steps == 2 and trainer.beta == our_defaults("online_dpo").dpo_beta == 0.5
    assert (trainer.args.loss_type, trainer.args.missing_eos_penalty) == ("sigmoid", None)
    assert trainer.judge is None and trainer.reward_func_names == ["proxy_reward"]
    with pytest.raises(ConfigError):  # 3 responses a step: not whole pairs
        build_trainer("online_dpo", tmp_path, 0, Settings(prompts_per_generation=3, num_generations=2,
                                                          steps_per_generation=2, responses=6), task)


@pytest.mark.slow
def test_trl_kto_trains_on_our_examples_with_our_defaults(tmp_path, task):
    ours = our_defaults("kto")
    trainer = build_trainer("kto", tmp_path, 0, Settings(comparisons=64), task)  # 128 examples, our batch of 64
    args = trainer.args
    assert (args.beta, args.desirable_weight, args.undesirable_weight, args.learning_rate, args.loss_type) == (
        ours.dpo_beta, ours.desirable_weight, ours.undesirable_weight, ours.learning_rate, "kto")
    assert args.per_device_train_batch_size == ours.batch_size and args.num_train_epochs == 1
    examples = trainer.train_dataset
    assert len(examples) == 128 and 0 < sum(examples["label"][:ours.batch_size]) < ours.batch_size  # shuffled labels
    assert "reference_logps" in examples.column_names  # computed before train()
    tokenizer = task.load_tokenizer()
    expected = [tokenize_response(tokenizer, c.strip()) for c in examples["completion"][:8]]  # the response + EOS, as ours
    assert response_tokens(examples["completion_labels"][:8]) == expected


@pytest.mark.slow
def test_trl_simpo_loss_is_ours(tmp_path, task):
    ours = our_defaults("simpo")
    trainer = build_trainer("simpo", tmp_path, 0, Settings(comparisons=8), task)  # one batch: ours holds 64
    args = trainer.args
    assert (args.loss_type, args.cpo_alpha, args.alpha, args.label_smoothing) == ("simpo", 0.0, 0.0, 0.0)
    assert (args.beta, args.simpo_gamma, args.learning_rate) == (ours.dpo_beta, ours.simpo_gamma, ours.learning_rate)
    assert args.per_device_train_batch_size == ours.batch_size and not hasattr(trainer, "ref_model")
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = task.load_tokenizer()
    chosen, rejected = (response_tokens(batch[f"{side}_labels"]) for side in ("chosen", "rejected"))
    assert chosen == [tokenize_response(tokenizer, c.strip()) for c in batch["chosen"]]  # the response + EOS, as ours
    assert rejected == [tokenize_response(tokenizer, r.strip()) for r in batch["rejected"]]
    with torch.no_grad():
        loss, _ = trainer.get_batch_loss_metrics(trainer.model, batch)
        chosen_avg, rejected_avg = trainer.concatenated_forward(trainer.model, batch)[:2]
    lengths = [torch.tensor([len(t) for t in tokens], dtype=torch.float32) for tokens in (chosen, rejected)]
    expected = simpo_loss(chosen_avg * lengths[0], rejected_avg * lengths[1], *lengths, ours.dpo_beta, ours.simpo_gamma)[0]
    torch.testing.assert_close(loss, expected.mean())


def trained_learning_rate(algo: str) -> float:
    """The learning rate a run of ``algo`` trains with: KTO's and SimPO's are our trainers' defaults."""
    if algo in ("kto", "simpo"):
        return our_defaults(algo).learning_rate
    return Settings.dpo_learning_rate if algo == "dpo" else Settings.learning_rate


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dpo", "rloo", "grpo", "online_dpo", "kto", "simpo"])
def test_trains_exports_and_evaluates(tmp_path, task, algo):
    settings = Settings(**(TINY_OFFLINE if algo in OFFLINE else TINY_RL))
    policy_dir = train_trl(algo, tmp_path, seed=0, settings=settings)
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["optimizer_steps"] == 2 and record["trl_config"]["learning_rate"] == trained_learning_rate(algo)
    assert (policy_dir / "config.json").is_file() and (policy_dir / "tokenizer.json").is_file()
    sft = task.load_policy().state_dict()
    weights = load_model(policy_dir, "policy", "the exported policy").state_dict()
    assert max((weights[k] - sft[k]).abs().max().item() for k in sft) > 0  # it trained
    metrics = evaluate_trl(policy_dir, n_eval_prompts=8)["metrics"]
    assert all(np.isfinite(metrics[k]) for k in ("gold_reward", "kl", "proxy_reward", "well_formed"))
