"""TRL's system: ``trl.experimental.ppo.PPOTrainer`` (TRL 0.29) with the same models, batch shape and PPO epochs.

TRL needs a separate value model (here a copy of the reward model, as in TRL's examples). Optimizer steps:
``per_device_train_batch_size = rollout batch``, ``gradient_accumulation_steps=1``, ``num_mini_batches = minibatches``,
as many epochs as ours.

Response length: on the synthetic workloads responses have the full length: TRL gets ``stop_token_id=None`` (its "no
stop token"), and the reported length is the generated columns. On a task workload (``reviews``) TRL gets its stop
token, ``stop_token="eos"``: ``generate`` stops once every row has sampled EOS, the responses are cut after their first
EOS, and the reported length is TRL's own ``sequence_lengths + 1`` (the live tokens, EOS included, as ours counts);
the update forwards every sequence with all the generated columns (TRL does not trim minibatches), and those tokens
are counted (:mod:`rlhf_gym.benchmarks.tally`). One adaptation there: TRL's ``get_reward`` reads the reward model's
score at the
EOS token, whereas our env scores the decoded prompt and response text, which drops EOS; so the reward model gets the
response with its EOS turned into padding (:func:`without_stop_token`), which gives our ``RewardModel``'s scores on
the task's word-level tokenizer (the text re-tokenises to the same ids), at the same cost.

Mixed precision: TRL's PPOTrainer builds its ``Accelerator`` without a ``mixed_precision`` argument, so it ignores
``bf16=True`` and takes the precision from Accelerate's environment (``accelerate launch --mixed_precision bf16`` or
``ACCELERATE_MIXED_PRECISION``): with ``--amp bf16`` this process sets ``ACCELERATE_MIXED_PRECISION=bf16``, and
Accelerate then runs the wrapped policy and value model under bf16 autocast, on CUDA and on the CPU.

TRL is an optional extra: this module imports it only inside :func:`run`, and is itself imported only when the
``trl`` system is selected.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rlhf_gym.agents.lora import lora_config
from rlhf_gym.agents.lora_settings import LoraSettings

from .clock import PhaseClock
from .protocol import Run, Settings, trainable, training_state_mb, weights_mb
from .tally import TokenTally
from .workloads import BETA, CLIP_RANGE, GAE_LAMBDA, LEARNING_RATE, VF_COEF, ModelFiles, Workload


def run(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock,
        lora: dict[str, Any] | None = None) -> Run:
    """TRL's PPOTrainer with the same models, batch shape and PPO epochs (and its own separate value model); with
    ``lora`` settings (``trl-lora``) its policy trains PEFT adapters on the same layers as ``ours-lora``, and TRL then
    takes the reference from the policy with its adapters off (``ref_model=None``), as ours does."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if settings.amp == "bf16":  # this system's own process: the setting goes with it
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    tally = TokenTally()
    # TRL's Trainer creates its output directory even when it saves nothing: a temporary one, not the model's parent
    # (for a task workload, that is the package's own artifacts directory)
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-trl-") as output_dir:
        trainer = make_trainer(workload, files, settings, device, output_dir, clock, lora)
        time_and_count(trainer, clock, tally)
        trainer.train()
    return tally.run(clock.iterations, trainable(trainer.model), settings.warmup,
                     weights_mb=weights_mb(trainer.model, trainer.ref_model, trainer.reward_model),
                     training_state_mb=training_state_mb(trainer.optimizer))


def make_trainer(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, output_dir: str,
                 clock: PhaseClock, lora: dict[str, Any] | None = None):
    """The ``PPOTrainer`` of the workload; one iteration of ``clock`` per PPO iteration (TRL's step)."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    class LapAtStepEnd(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock.lap()

        def on_step_end(self, *_, **__):
            clock.lap()

    tokenizer = AutoTokenizer.from_pretrained(files.policy, padding_side="left")
    n_iterations = settings.warmup + settings.iterations
    config = PPOConfig(
        output_dir=output_dir, seed=settings.seed, report_to="none",
        save_strategy="no", disable_tqdm=True, num_sample_generations=0, gradient_checkpointing=False,
        bf16=settings.amp == "bf16", use_cpu=device.type == "cpu",
        total_episodes=n_iterations * workload.rollout_batch, per_device_train_batch_size=workload.rollout_batch,
        gradient_accumulation_steps=1, num_mini_batches=workload.minibatches, num_ppo_epochs=workload.epochs,
        local_rollout_forward_batch_size=workload.rollout_batch, response_length=workload.response_length,
        stop_token="eos" if workload.ends_at_eos else None, stop_token_id=None, temperature=1.0,
        learning_rate=LEARNING_RATE, kl_coef=BETA, kl_estimator="k1", cliprange=CLIP_RANGE, cliprange_value=CLIP_RANGE,
        vf_coef=VF_COEF, gamma=1.0, lam=GAE_LAMBDA,
    )
    prompts = Dataset.from_dict({"input_ids": [tokenizer(p, add_special_tokens=False)["input_ids"] for p in files.prompts]})
    policy = AutoModelForCausalLM.from_pretrained(files.policy)
    trainer = PPOTrainer(
        args=config, processing_class=tokenizer, train_dataset=prompts, model=policy,
        ref_model=None if lora else AutoModelForCausalLM.from_pretrained(files.policy),
        peft_config=None if lora is None else lora_config(policy, LoraSettings.parse(lora)),
        reward_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        value_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        callbacks=[LapAtStepEnd()],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def time_and_count(trainer, clock: PhaseClock, tally: TokenTally) -> None:
    """Time TRL's phases and count its live response tokens and update tokens. TRL's ``train()`` is one function:
    this wraps the module-level helpers it calls. The update is the span from the first forward pass with gradients to
    the last optimizer step of the iteration."""
    from trl.experimental.ppo import ppo_trainer
    from trl.experimental.utils import first_true_indices

    stop_id, pad_id = trainer.stop_token_id, trainer.processing_class.pad_token_id  # stop_id: None if synthetic
    generate = ppo_trainer.batch_generation

    def batch_generation(model, queries, *rest):
        with clock.phase("sampling"):
            query_responses, logits = generate(model, queries, *rest)
        responses = query_responses[:, queries.shape[1]:]
        if stop_id is None:
            tally.rollout([responses.shape[1]] * responses.shape[0])
        else:  # TRL's sequence_lengths + 1: the tokens before the first pad once cut after the first EOS
            tally.rollout(first_true_indices(ppo_trainer.truncate_response(stop_id, pad_id, responses) == pad_id).tolist())
        return query_responses, logits

    forward = ppo_trainer.forward

    def timed_forward(model, query_responses, pad_token_id):
        if torch.is_grad_enabled():
            clock.mark("update")
            tally.update(*query_responses.shape)
            return forward(model, query_responses, pad_token_id)
        with clock.phase("scoring"):
            return forward(model, query_responses, pad_token_id)

    get_reward = ppo_trainer.get_reward

    def scored(model, query_responses, pad_token_id, context_length):
        with clock.phase("scoring"):
            if stop_id is not None and model is trainer.reward_model:
                query_responses = without_stop_token(query_responses, context_length, stop_id, pad_token_id)
            return get_reward(model, query_responses, pad_token_id, context_length)

    ppo_trainer.batch_generation, ppo_trainer.forward, ppo_trainer.get_reward = batch_generation, timed_forward, scored
    register_optimizer_step_post_hook(lambda *_: clock.mark("update"))


def without_stop_token(query_responses: torch.Tensor, context_length: int, stop_token_id: int,
                       pad_token_id: int) -> torch.Tensor:
    """``[query; response]`` with the stop token of each (already cut) response turned into padding: TRL's
    ``get_reward`` then reads the score at the last response token, where our env's reward model reads it (it scores
    the decoded text, which drops EOS)."""
    responses = query_responses[:, context_length:]
    responses = responses.masked_fill(responses == stop_token_id, pad_token_id)
    return torch.cat([query_responses[:, :context_length], responses], dim=1)
