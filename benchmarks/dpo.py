"""The DPO systems ``ours-dpo`` (:class:`rlhf_gym.agents.DPO`) and ``trl-dpo`` (``trl.DPOTrainer``, TRL 0.29.1) on the
same work.

Matched work: one iteration is ``epochs`` epochs over a fixed set of ``rollout_batch`` comparisons in minibatches of
``rollout_batch / minibatches`` comparisons (``Workload.optimizer_steps`` optimizer steps per iteration; every
iteration trains on the same comparisons again). A comparison (:func:`comparisons`) is one of the workload's prompts
(``prompt_length`` words) with a chosen and a rejected response of ``response_length - 1`` random words (seeded);
both sides append the EOS, so each response has ``response_length`` tokens and each sequence
``prompt_length + response_length``, as in the RL workloads. An optimizer step is one forward and backward over its
chosen and rejected sequences together (``2 x rollout_batch / minibatches`` sequences). The reference log-probs are
computed once before the clock starts on both sides (ours caches them at construction; TRL
``precompute_ref_log_probs=True``, at construction too). The response tokens of an iteration are
``2 x rollout_batch x response_length`` (:data:`RESPONSES_PER_COMPARISON`); the update's tokens are twice the RL
workloads'. Loss: sigmoid, ``beta`` 0.5 (our DPO's default and ``scripts/trl_baselines.py``'s), gradient norm
clipped at 1.0, the learning rate of :mod:`rlhf_gym.benchmarks.workloads`, AdamW with eps 1e-5 and weight decay 0.01 on both
sides (TRL's config is :func:`rlhf_gym.benchmarks.trl_online.trl_common`'s), dropout off on both.

Phases: everything is the update (no sampling, no scoring), from the first training step of an iteration (ours:
``train_step``, with its minibatch's padding; TRL: ``compute_loss``, after collating its first minibatch) to its last
optimizer step; "other" is the rest (TRL's collation of the first minibatch, logging, callbacks).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from rlhf_gym.agents import DPO

from .clock import PhaseClock
from .protocol import Run, Settings, trainable
from .trl_algorithms import Settings as TRLSettings
from .workloads import LEARNING_RATE, ModelFiles, Workload

BETA = TRLSettings.dpo_beta
"""DPO's beta on both sides: our DPO's default, 0.5 (``scripts/trl_baselines.py`` matches it)."""
RESPONSES_PER_COMPARISON = 2
"""A comparison trains on two responses, chosen and rejected."""


def comparisons(workload: Workload, files: ModelFiles, seed: int) -> list[dict[str, str]]:
    """``rollout_batch`` comparisons: the first prompts, chosen and rejected of ``response_length - 1`` random words
    (the EOS that both sides append makes ``response_length`` tokens)."""
    rng = random.Random(seed)

    def words() -> str:
        return " ".join(f"w{rng.randrange(3, workload.vocab_size)}" for _ in range(workload.response_length - 1))

    return [{"prompt": prompt, "chosen": words(), "rejected": words()} for prompt in files.prompts[:workload.rollout_batch]]


def update_tokens(workload: Workload) -> int:
    """Tokens through forward + backward per iteration: chosen and rejected sequences, every epoch."""
    return RESPONSES_PER_COMPARISON * workload.update_tokens


def autocast(settings: Settings, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast with ``--amp bf16`` (TRL's ``bf16=True``), else nothing: our DPO has no amp option."""
    if settings.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_ours(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock) -> Run:
    """:class:`rlhf_gym.agents.DPO`: one ``learn`` call per iteration, each ``epochs`` epochs over the comparisons."""
    records = comparisons(workload, files, settings.seed)
    dpo = DPO(files.policy, files.policy, files.policy, records, beta=BETA, learning_rate=LEARNING_RATE,
              batch_size=workload.rollout_batch // workload.minibatches, seed=settings.seed, device=device)
    train_step = dpo.train_step

    def marked_train_step(indices):
        clock.mark("update")
        return train_step(indices)

    dpo.train_step = marked_train_step
    register_optimizer_step_post_hook(lambda *_: clock.mark("update"))
    clock.lap()
    with autocast(settings, device):
        for iteration in range(1, settings.warmup + settings.iterations + 1):
            dpo.learn(iteration * workload.epochs * len(records), log_interval=workload.optimizer_steps)
            clock.lap()
    lengths = [len(ids) for pair in dpo.response_ids for ids in pair]
    return Run(clock.iterations, trainable(dpo.policy), float(np.mean(lengths)), update_tokens(workload))


def run_trl(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock) -> Run:
    """``trl.DPOTrainer`` on the same comparisons (responses with a leading space: TRL tokenises prompt + response as
    one string, see ``rlhf_gym.benchmarks.trl_algorithms.ADAPTATIONS``), lapping every ``optimizer_steps`` steps."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer
    from trl.trainer import dpo_trainer

    from .trl_online import lap_every, mark_update, trl_common

    disable_progress_bars()  # of TRL's dataset preparation, and of its reference pass:
    dpo_trainer.tqdm = functools.partial(dpo_trainer.tqdm, disable=True)
    records = comparisons(workload, files, settings.seed)
    dataset = Dataset.from_dict({"prompt": [r["prompt"] for r in records], "chosen": [" " + r["chosen"] for r in records],
                                 "rejected": [" " + r["rejected"] for r in records]})
    n_iterations = settings.warmup + settings.iterations
    config = DPOConfig(**trl_common(workload, files, settings, device), beta=BETA, loss_type=["sigmoid"],
                       label_smoothing=0.0, per_device_train_batch_size=workload.rollout_batch // workload.minibatches,
                       max_steps=n_iterations * workload.optimizer_steps, max_length=None, precompute_ref_log_probs=True)
    trainer = DPOTrainer(model=files.policy, args=config, train_dataset=dataset,
                         processing_class=AutoTokenizer.from_pretrained(files.policy),
                         callbacks=[lap_every(clock, workload.optimizer_steps)])
    trainer.remove_callback(PrinterCallback)
    mark_update(trainer, clock)
    trainer.train()
    data = trainer.train_dataset
    lengths = [len(ids) for column in ("chosen_ids", "rejected_ids") for ids in data[column]]
    return Run(clock.iterations, trainable(trainer.model), float(np.mean(lengths)), update_tokens(workload))
