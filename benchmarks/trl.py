"""TRL's system: ``trl.experimental.ppo.PPOTrainer`` (TRL 0.29) with the same models, batch shape and PPO epochs.

TRL needs a separate value model (here a copy of the reward model, as in TRL's examples). Responses always have the
full length: TRL gets ``stop_token_id=None`` (its "no stop token"). Optimizer steps: ``per_device_train_batch_size =
rollout batch``, ``gradient_accumulation_steps=1``, ``num_mini_batches = minibatches``, as many epochs as ours.

TRL is an optional extra: this module imports it only inside :func:`run`, and is itself imported only when the
``trl`` system is selected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from .clock import PhaseClock
from .protocol import Run, Settings, trainable
from .workloads import BETA, CLIP_RANGE, GAE_LAMBDA, LEARNING_RATE, VF_COEF, ModelFiles, Workload


def run(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock) -> Run:
    """TRL's PPOTrainer with the same models, batch shape and PPO epochs (and its own separate value model)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

    class LapAtStepEnd(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock.lap()

        def on_step_end(self, *_, **__):
            clock.lap()

    tokenizer = AutoTokenizer.from_pretrained(files.policy, padding_side="left")
    n_iterations = settings.warmup + settings.iterations
    config = PPOConfig(
        output_dir=str(Path(files.policy).parent / "trl_output"), seed=settings.seed, report_to="none",
        save_strategy="no", disable_tqdm=True, num_sample_generations=0, gradient_checkpointing=False,
        bf16=settings.amp == "bf16" and device.type == "cuda", use_cpu=device.type == "cpu",
        total_episodes=n_iterations * workload.rollout_batch, per_device_train_batch_size=workload.rollout_batch,
        gradient_accumulation_steps=1, num_mini_batches=workload.minibatches, num_ppo_epochs=workload.epochs,
        local_rollout_forward_batch_size=workload.rollout_batch, response_length=workload.response_length,
        stop_token=None, stop_token_id=None, temperature=1.0, learning_rate=LEARNING_RATE, kl_coef=BETA,
        kl_estimator="k1", cliprange=CLIP_RANGE, cliprange_value=CLIP_RANGE, vf_coef=VF_COEF, gamma=1.0, lam=GAE_LAMBDA,
    )
    prompts = Dataset.from_dict({"input_ids": [tokenizer(p, add_special_tokens=False)["input_ids"] for p in files.prompts]})
    trainer = PPOTrainer(
        args=config, processing_class=tokenizer, train_dataset=prompts,
        model=AutoModelForCausalLM.from_pretrained(files.policy),
        ref_model=AutoModelForCausalLM.from_pretrained(files.policy),
        reward_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        value_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        callbacks=[LapAtStepEnd()],
    )
    trainer.remove_callback(PrinterCallback)
    # TRL's train() is one function; time it through the module-level helpers it calls. The update is the span
    # from the first forward pass with gradients to the last optimizer step of the iteration.
    generated_lengths: list[int] = []
    generate = ppo_trainer.batch_generation

    def batch_generation(model, queries, *rest):
        with clock.phase("sampling"):
            query_responses, logits = generate(model, queries, *rest)
        generated_lengths.append(query_responses.shape[1] - queries.shape[1])
        return query_responses, logits

    forward = ppo_trainer.forward

    def timed_forward(model, query_responses, pad_token_id):
        if torch.is_grad_enabled():
            clock.mark("update")
            return forward(model, query_responses, pad_token_id)
        with clock.phase("scoring"):
            return forward(model, query_responses, pad_token_id)

    ppo_trainer.batch_generation, ppo_trainer.forward = batch_generation, timed_forward
    ppo_trainer.get_reward = clock.timed(ppo_trainer.get_reward, "scoring")
    register_optimizer_step_post_hook(lambda *_: clock.mark("update"))
    trainer.train()
    return Run(clock.iterations, trainable(trainer.model), float(np.mean(generated_lengths)), workload.update_tokens)
