"""Stage 2: fit a reward model to comparisons with the Bradley–Terry loss.

``L = -E[log sigmoid(r(x, y_w) - r(x, y_l) - margin)] + c * E[(r(x, y_w) + r(x, y_l))^2]`` — the second
term (reward centering, Eisenstein et al. 2023) is off unless ``center_rewards_coef > 0``.

Training stops with :class:`~rlhf_gym.errors.TrainingDivergedError` as soon as a loss or a gradient is NaN/inf,
and a model with a non-finite parameter is never saved. A save replaces the previous model only once the new
one is complete (:func:`rlhf_gym.files.staged_directory`).
"""

from __future__ import annotations

import hashlib
import json
import random
from contextlib import closing, nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from .divergence import check_finite_loss, check_finite_parameters
from .errors import DataError
from .reward_model import RewardModel, TokenizedText, bradley_terry_loss
from .reward_settings import METADATA_FILE, REWARD_EPOCHS, RewardTrainingConfig  # noqa: F401  (REWARD_EPOCHS re-exported)
from .files import atomic_write_json, staged_directory
from .preferences import check_identical_responses

DIVERGENCE_HINT = "lower the learning rate, or look for extreme margins in the data; the model is not saved"


def data_hash(records: list[dict]) -> str:
    """SHA-256 of the comparisons (prompt, chosen, rejected), in order."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps([r["prompt"], r["chosen"], r["rejected"]]).encode("utf-8"))
    return digest.hexdigest()


def pair_key(record: dict) -> tuple[str, str, str]:
    """A comparison's pair: its prompt and its two responses, in either order."""
    first, second = sorted((record["chosen"], record["rejected"]))
    return record["prompt"], first, second


def _vote_key(record: dict) -> str:
    """What makes two records the same vote: the ordered comparison, its labeller and its pair id."""
    return json.dumps([record["prompt"], record["chosen"], record["rejected"], record.get("labeler"),
                       record.get("pair_id")], default=str)


DUPLICATES_LEFT_OUT = "duplicate comparison(s) (same prompt, chosen, rejected, labeler and pair_id as an earlier one)"
"""What ``[rlhf_gym] left out <n> ...`` reports after :func:`drop_duplicates` (train-rm and the DPO family)."""


def drop_duplicates(records: list[dict]) -> tuple[list[dict], int]:
    """``(unique, n_duplicates)``: the records without exact duplicates, in order.

    A *duplicate* repeats an earlier record's prompt, chosen, rejected, ``labeler`` and ``pair_id`` (a file
    appended to twice, or concatenated with itself); only the first is kept. Records that differ in labeller or in
    pair id are kept: several labellers judging one pair (the label server's ``--overlap``), or one annotator
    judging a pair of texts that two samples happened to share, are independent votes, and their agreement or
    disagreement is what the Bradley–Terry model (or DPO) fits.
    """
    seen: set[str] = set()
    unique = []
    for record in records:
        key = _vote_key(record)
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique, len(records) - len(unique)


def split_records(records: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict], int]:
    """``(train, held_out, n_duplicates)``: the records deduplicated (:func:`drop_duplicates`), then split by pair.

    Every record of one pair (:func:`pair_key`, so a swapped judgement counts as the same pair) lands on the same
    side, so no held-out pair is ever seen in training; ``eval_fraction`` is the share of distinct pairs held out, at
    least one pair is left for training. The sides keep the records' order.
    """
    unique, n_duplicates = drop_duplicates(records)
    pairs = list(dict.fromkeys(pair_key(r) for r in unique))  # in order of first appearance, so the seed decides
    random.Random(seed).shuffle(pairs)
    held_out_pairs = set(pairs[:min(round(len(pairs) * eval_fraction), len(pairs) - 1)])
    train = [r for r in unique if pair_key(r) not in held_out_pairs]
    held_out = [r for r in unique if pair_key(r) in held_out_pairs]
    return train, held_out, n_duplicates


def _batch_loss(reward_model: RewardModel, batch: list[dict], chosen: list[TokenizedText], rejected: list[TokenizedText],
                config: RewardTrainingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Bradley–Terry loss of ``batch`` (its texts tokenized: ``chosen``, ``rejected``) and each pair's hit (0/1)."""
    scores = reward_model.forward_tokenized(chosen + rejected)
    r_chosen, r_rejected = scores[: len(batch)], scores[len(batch):]
    margin = None
    if config.use_margin and any("margin" in r for r in batch):
        margin = torch.tensor([float(r.get("margin", 0.0)) for r in batch], device=scores.device)
    loss = bradley_terry_loss(r_chosen, r_rejected, margin)
    if config.center_rewards_coef > 0:
        loss = loss + config.center_rewards_coef * ((r_chosen + r_rejected) ** 2).mean()
    return loss, (r_chosen > r_rejected).float()


@torch.no_grad()
def evaluate_reward_model(reward_model: RewardModel, records: list[dict], batch_size: int = 256) -> dict[str, float]:
    """Mean Bradley–Terry loss and accuracy (share of pairs with ``r(chosen) > r(rejected)``)."""
    if not records:
        return {"loss": float("nan"), "accuracy": float("nan")}
    prompts = [r["prompt"] for r in records]
    chosen = torch.from_numpy(reward_model.score(prompts, [r["chosen"] for r in records], batch_size))
    rejected = torch.from_numpy(reward_model.score(prompts, [r["rejected"] for r in records], batch_size))
    return {"loss": bradley_terry_loss(chosen, rejected).item(), "accuracy": (chosen > rejected).float().mean().item()}


def train_reward_model(
    reward_model: RewardModel,
    records: list[dict],
    config: RewardTrainingConfig,
    log_dir: str | Path | None = None,
    progress: bool = True,
    where: str = "records",
) -> dict:
    """Train in place on ``records``; return metrics (per-epoch history, final held-out accuracy, data hash).

    The records are deduplicated and split by pair (:func:`split_records`); ``n_duplicates`` counts the
    duplicates left out. Comparisons whose chosen equals rejected are counted in a warning, and refused when they are
    all there is (:func:`rlhf_gym.preferences.check_identical_responses`; ``where`` names the data in its messages).

    :raises TrainingDivergedError: when a loss or a gradient becomes NaN/inf (before the step that would spread it).
    """
    torch.manual_seed(config.seed)
    train, held_out, n_duplicates = split_records(records, config.eval_fraction, config.seed)
    if len(train) + len(held_out) < 2:
        left_out = f" once {n_duplicates} duplicate(s) are left out" if n_duplicates else ""
        raise DataError(f"need at least 2 comparisons to train a reward model, got {len(train) + len(held_out)}{left_out}")
    if n_duplicates:
        print(f"[rlhf_gym] left out {n_duplicates} {DUPLICATES_LEFT_OUT}")
    check_identical_responses(train + held_out, where)
    model = reward_model.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(train) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(steps, 1))
    writer = SummaryWriter(str(log_dir)) if log_dir else None
    prompts = [r["prompt"] for r in train]
    chosen = reward_model.tokenize(prompts, [r["chosen"] for r in train])  # once: every epoch reads the same texts
    rejected = reward_model.tokenize(prompts, [r["rejected"] for r in train])
    rng = random.Random(config.seed)
    history = []
    step = 0
    with tqdm(total=steps, desc="reward model", disable=not progress) as bar, closing(writer) if writer else nullcontext():
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = list(range(len(train)))
            rng.shuffle(order)
            losses, correct = [], []
            for start in range(0, len(order), config.batch_size):
                indices = order[start:start + config.batch_size]
                loss, hits = _batch_loss(reward_model, [train[i] for i in indices], [chosen[i] for i in indices],
                                         [rejected[i] for i in indices], config)
                check_finite_loss(loss, f"reward-model epoch {epoch}, step {step + 1}", DIVERGENCE_HINT)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                check_finite_loss(grad_norm, f"reward-model epoch {epoch}, step {step + 1}", DIVERGENCE_HINT,
                                  what="the gradient norm")
                optimizer.step()
                schedule.step()
                step += 1
                losses.append(loss.item())
                correct.append(hits.cpu())
                bar.update(1)
                if writer:
                    writer.add_scalar("train/loss", loss.item(), step)
            model.eval()
            evaluation = evaluate_reward_model(reward_model, held_out)
            row = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                   "train_accuracy": torch.cat(correct).mean().item(),
                   "eval_loss": evaluation["loss"], "eval_accuracy": evaluation["accuracy"]}
            history.append(row)
            if writer:
                for key in ("train_accuracy", "eval_loss", "eval_accuracy"):
                    writer.add_scalar(f"{key.split('_')[0]}/{key.split('_', 1)[1]}", row[key], step)
            tqdm.write(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
                       f"held-out loss {row['eval_loss']:.4f} acc {row['eval_accuracy']:.3f}")
    return {"config": asdict(config), "history": history, "eval_accuracy": history[-1]["eval_accuracy"],
            "n_train": len(train), "n_eval": len(held_out), "n_duplicates": n_duplicates,
            "data_sha256": data_hash(records)}


def write_reward_model(reward_model: RewardModel, directory: str | Path, metrics: dict) -> None:
    """``save_pretrained`` plus :data:`METADATA_FILE` (data hash, seed, accuracy, history) into ``directory``, as is.

    :raises TrainingDivergedError: naming the parameters that are NaN/inf; nothing is written.
    """
    check_finite_parameters(reward_model.model, f"the reward model to {directory}")
    reward_model.save_pretrained(directory)
    atomic_write_json(Path(directory) / METADATA_FILE, metrics)


def save_reward_model(reward_model: RewardModel, directory: str | Path, metrics: dict) -> None:
    """:func:`write_reward_model` into a :func:`staged_directory`: ``directory`` is the old model or the new one."""
    with staged_directory(directory, METADATA_FILE, "saved reward model") as staging:
        write_reward_model(reward_model, staging, metrics)
