"""TRL's critic-free systems ``trl-rloo`` and ``trl-grpo``: ``trl.RLOOTrainer`` / ``trl.GRPOTrainer`` (TRL 0.29.1)
doing the work of ``ours-rloo`` / ``ours-grpo`` (:mod:`rlhf_gym.benchmarks.critic_free`, whose module docstring defines it).

The configuration is that of ``scripts/trl_baselines.py`` (:func:`rlhf_gym.benchmarks.trl_algorithms.common_config`: fp32,
no gradient checkpointing, constant learning rate, AdamW eps 1e-5 and weight decay 0.01, dropout off; the reward
function is our :class:`rlhf_gym.reward_model.RewardModel` on the prompt and response text, as the env scores) with the
benchmark's shapes and TRL's own default optimizer (fused AdamW, as ours):

* ``per_device_train_batch_size = rollout_batch / minibatches`` responses per optimizer step,
  ``steps_per_generation = minibatches`` and ``num_generations = k``, so one generation batch holds ``rollout_batch``
  responses to ``rollout_batch / k`` prompts; ``num_iterations = epochs`` passes over it, so TRL generates again
  every ``minibatches x epochs`` optimizer steps (one iteration); ``max_steps`` = iterations x that.
* Full-length responses: ``generation_kwargs={"min_new_tokens": response_length}`` (the EOS is never sampled
  before the budget; TRL would otherwise stop a row at its EOS, which a random policy samples now and then).
* Beside generation, TRL computes the old log-probs with one more forward over the generation batch (ours takes them
  from sampling) and the reference's; both are part of its scoring phase.

Phases: sampling = ``_generate`` (prompt tokenisation, ``generate``, decoding); scoring = the rest of
``_generate_and_score_completions`` (old and reference log-probs, the reward function, advantages); update = from
the first forward with gradients after it (``compute_loss``) to the iteration's last optimizer step.

TRL is an optional extra: this module imports it only inside :func:`run`, and is itself imported only when a TRL
system is selected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from rlhf_gym.reward_model import RewardModel

from .clock import PhaseClock
from .critic_free import GROUP_SIZE, KL_COEF
from .protocol import Run, Settings, trainable
from .trl_algorithms import Settings as TRLSettings
from .trl_algorithms import check_equal_prompt_lengths, common_config, proxy_reward_function
from .workloads import CLIP_RANGE, LEARNING_RATE, ModelFiles, Workload


def trl_common(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device) -> dict:
    """The TrainingArguments of ``scripts/trl_baselines.py`` with the benchmark's learning rate, seed and precision
    (bf16 with ``--amp bf16``) and TRL's default optimizer (fused AdamW, as ours)."""
    common = common_config(Path(files.policy).parent / "trl_output", settings.seed,
                           TRLSettings(learning_rate=LEARNING_RATE, device=device.type))
    del common["optim"]
    common.update(bf16=settings.amp == "bf16", logging_steps=workload.optimizer_steps)
    return common


def lap_every(clock: PhaseClock, steps: int):
    """A TrainerCallback that laps the clock when training begins and after every ``steps`` optimizer steps."""
    from transformers import TrainerCallback

    class LapEvery(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock.lap()

        def on_step_end(self, args, state, control, **__):
            if state.global_step % steps == 0:
                clock.lap()

    return LapEvery()


def mark_update(trainer, clock: PhaseClock) -> None:
    """The update phase lasts from the iteration's first ``compute_loss`` (its first forward with gradients; any
    generation and scoring come before it) to its last optimizer step."""
    compute_loss = trainer.compute_loss

    def marked_compute_loss(*args, **kwargs):
        clock.mark("update")
        return compute_loss(*args, **kwargs)

    trainer.compute_loss = marked_compute_loss
    register_optimizer_step_post_hook(lambda *_: clock.mark("update"))


def run(algo: str, workload: Workload, files: ModelFiles, settings: Settings, device: torch.device,
        clock: PhaseClock) -> Run:
    """TRL's ``algo`` ("rloo" or "grpo") trainer on the work of :mod:`rlhf_gym.benchmarks.critic_free`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    tokenizer = AutoTokenizer.from_pretrained(files.policy, padding_side="left")
    check_equal_prompt_lengths(tokenizer, files.prompts)
    n_iterations = settings.warmup + settings.iterations
    rl = dict(**trl_common(workload, files, settings, device),
              per_device_train_batch_size=workload.rollout_batch // workload.minibatches,
              steps_per_generation=workload.minibatches, num_generations=GROUP_SIZE, num_iterations=workload.epochs,
              epsilon=CLIP_RANGE, max_completion_length=workload.response_length, temperature=1.0, top_k=0, top_p=1.0,
              generation_kwargs={"min_new_tokens": workload.response_length},
              max_steps=n_iterations * workload.optimizer_steps, beta=KL_COEF[algo])
    config = (RLOOConfig(**rl, normalize_advantages=False) if algo == "rloo"
              else GRPOConfig(**rl, scale_rewards="group", loss_type="dapo"))
    trainer_class = RLOOTrainer if algo == "rloo" else GRPOTrainer
    reward = proxy_reward_function(RewardModel.from_pretrained(files.reward, device=device))
    trainer = trainer_class(model=files.policy, reward_funcs=reward, args=config, processing_class=tokenizer,
                            train_dataset=Dataset.from_dict({"prompt": files.prompts}),
                            callbacks=[lap_every(clock, workload.optimizer_steps)])
    trainer.remove_callback(PrinterCallback)
    # The scoring phase is generate-and-score less the generation nested in it.
    lengths: list[float] = []
    generate_and_score = clock.timed(trainer._generate_and_score_completions, "scoring")

    def scored(inputs):
        clock.count("generation_batches")  # one per iteration (every minibatches x epochs optimizer steps)
        batch = generate_and_score(inputs)
        lengths.extend(batch["completion_mask"].sum(1).tolist())  # the tokens of each response, up to its EOS
        return batch

    trainer._generate_and_score_completions = scored
    trainer._generate = clock.timed(trainer._generate, "sampling")
    mark_update(trainer, clock)
    trainer.train()
    return Run(clock.iterations, trainable(trainer.model), float(np.mean(lengths)), workload.update_tokens)
