"""Supervised fine-tuning of a causal LM on token examples (:mod:`rlhf_gym.sft_data`): next-token cross-entropy.

One loop serves ``rlhf-gym sft`` and the task build (which learns every token of its generator's texts). A step's
loss is the mean negative log-likelihood of its target tokens,

    L = -(1 / |T|) sum_{(i, t) in T} log p_theta(x_{i,t} | x_{i,<t}),

``T`` the completion tokens (``completion_only_loss``, TRL's default for prompt-completion data) or every token;
AdamW (Loshchilov & Hutter 2019) with the learning rate warmed up linearly over ``ceil(warmup_ratio * steps)`` steps,
then decayed linearly to 0 (or constant), and the gradient norm clipped.

Without packing a row is one example, right-padded, with an attention mask. With ``packing`` a row is a block of whole
examples (:func:`rlhf_gym.sft_data.pack`, at most ``max_length`` tokens) in which each example keeps its own positions
(0, 1, ...) and attends to itself only: the rows carry ``position_ids`` and no attention mask, from which transformers
(5.x, every model built on ``masking_utils.create_causal_mask``) makes a block-diagonal causal mask
(``find_packed_sequence_indices``; only without a KV cache, so the forward passes ``use_cache=False``), as TRL's
``bfd`` packing does. The first token of each example is no target (nothing of its own predicts it), so a packed
example is learnt exactly as an unpacked one, and as the env shows it at RL time; the completion mask applies as
without packing. A model whose attention ignores ``position_ids`` (not built on ``create_causal_mask``) would let a
block's examples see the ones before them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .divergence import check_finite_loss
from .sft_data import Example, SFTConfig, pack

FINAL_LOSS_STEPS = 50
"""The final training loss is the mean of the last this many steps' losses (:func:`final_loss`)."""
IGNORED = -100
"""The label of a token that is no target (transformers' ``ignore_index``)."""


@dataclass
class SFTResult:
    """What :func:`train_sft` measured: the loss, learning rate and gradient norm (before clipping) of each step, and
    the held-out loss after each epoch (empty without held-out examples)."""

    losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)


def final_loss(losses: Sequence[float]) -> float:
    """The mean of the last :data:`FINAL_LOSS_STEPS` losses."""
    return float(np.mean(losses[-FINAL_LOSS_STEPS:]))


def lr_factor(step: int, steps: int, warmup: int, schedule: str) -> float:
    """The learning rate of ``step`` (0-based) as a share of the peak: ``step / warmup`` during the warm-up, then
    ``1 - (step - warmup) / (steps - warmup)`` (linear) or 1 (constant)."""
    if step < warmup:
        return step / warmup
    return 1.0 if schedule == "constant" else 1.0 - (step - warmup) / (steps - warmup)


def collate(rows: Sequence[Sequence[Example]], pad_token_id: int, completion_only_loss: bool,
            packed: bool) -> dict[str, torch.Tensor]:
    """The model inputs of ``rows`` (each: the examples of one row), right-padded to the longest row: ``input_ids``,
    ``labels`` (-100 on padding, on the prompt with ``completion_only_loss``, and packed, on each example's first
    token), and ``attention_mask`` (unpacked) or ``position_ids`` restarting at 0 with each example and with the
    padding (packed: see the module docstring)."""
    ids = [[t for example in row for t in example.input_ids] for row in rows]
    labels = [[IGNORED if packed and t == 0 else label
               for example in row for t, label in enumerate(example.labels(completion_only_loss))] for row in rows]
    width = max(len(row) for row in ids)
    batch = {"input_ids": torch.tensor([row + [pad_token_id] * (width - len(row)) for row in ids]),
             "labels": torch.tensor([row + [IGNORED] * (width - len(row)) for row in labels])}
    if packed:
        positions = [[t for example in row for t in range(len(example))] for row in rows]
        batch["position_ids"] = torch.tensor([row + list(range(width - len(row))) for row in positions])
    else:
        batch["attention_mask"] = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    return batch


def forward_loss(model, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The model's mean loss on a :func:`collate` batch, with no KV cache: transformers finds packed sequences in the
    position ids only when there is neither an attention mask nor a cache (otherwise a block's examples would attend
    to each other)."""
    return model(**{key: value.to(device) for key, value in batch.items()}, use_cache=False).loss


def batch_plan(examples: Sequence[Example], config: SFTConfig) -> list[list[list[list[int]]]]:
    """For each epoch, the example indices of each step's rows: the examples shuffled (``torch.randperm`` with
    ``config.seed``, anew each epoch), packed into blocks with ``config.packing`` (one example a row otherwise), and cut
    into batches of ``config.batch_size`` rows."""
    generator = torch.Generator().manual_seed(config.seed)
    lengths = [len(e) for e in examples]
    epochs = []
    for _ in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        rows = pack(order, lengths, config.max_length) if config.packing else [[i] for i in order]
        epochs.append([rows[start:start + config.batch_size] for start in range(0, len(rows), config.batch_size)])
    return epochs


def train_sft(model, examples: Sequence[Example], config: SFTConfig, pad_token_id: int, progress: bool = True,
              eval_examples: Sequence[Example] = (), log_dir: str | Path | None = None) -> SFTResult:
    """Train ``model`` in place on ``examples`` (module docstring); with ``eval_examples``, measure their loss after each
    epoch (:func:`evaluation_loss`); with ``log_dir``, write TensorBoard scalars (``train/loss``,
    ``train/learning_rate``, ``train/grad_norm``, ``eval/loss``).

    :raises TrainingDivergedError: when a loss or a gradient norm becomes NaN/inf (before the step that would spread it).
    """
    device = next(model.parameters()).device
    plan = batch_plan(examples, config)
    steps = sum(len(epoch) for epoch in plan)
    warmup = math.ceil(config.warmup_ratio * steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps, warmup, config.lr_schedule))
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    result = SFTResult()
    model.train()
    with tqdm(total=steps, desc="SFT", disable=not progress) as bar, closing(writer) if writer else nullcontext():
        for epoch in plan:
            for batch_rows in epoch:
                step = len(result.losses) + 1
                batch = collate([[examples[i] for i in row] for row in batch_rows], pad_token_id,
                                config.completion_only_loss, config.packing)
                result.learning_rates.append(schedule.get_last_lr()[0])
                loss = forward_loss(model, batch, device)
                check_finite_loss(loss, f"SFT step {step}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                check_finite_loss(grad_norm, f"SFT step {step}", what="the gradient norm")
                optimizer.step()
                schedule.step()
                result.losses.append(loss.item())
                result.grad_norms.append(grad_norm.item())
                if writer is not None:
                    for name, values in (("loss", result.losses), ("learning_rate", result.learning_rates),
                                         ("grad_norm", result.grad_norms)):
                        writer.add_scalar(f"train/{name}", values[-1], step)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
            if eval_examples:
                result.eval_losses.append(evaluation_loss(model, eval_examples, pad_token_id, config.completion_only_loss,
                                                          config.batch_size))
                model.train()
                if writer is not None:
                    writer.add_scalar("eval/loss", result.eval_losses[-1], len(result.losses))
    model.eval()
    return result


@torch.no_grad()
def evaluation_loss(model, examples: Sequence[Example], pad_token_id: int, completion_only_loss: bool,
                    batch_size: int = 64) -> float:
    """The mean negative log-likelihood per target token of ``examples`` (one a row, unpacked), in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = collate([[e] for e in examples[start:start + batch_size]], pad_token_id, completion_only_loss, False)
        targets = int((batch["labels"][:, 1:] != IGNORED).sum())
        total += forward_loss(model, batch, device).item() * targets
        count += targets
    return total / count
