"""Stage 2: fit a reward model to comparisons with the Bradley–Terry loss.

``L = -E[log sigmoid(r(x, y_w) - r(x, y_l) - margin)] + c * E[(r(x, y_w) + r(x, y_l))^2]`` — the second
term (reward centering, Eisenstein et al. 2023) is off unless ``center_rewards_coef > 0``.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from .errors import DataError
from .reward_model import RewardModel, bradley_terry_loss
from .utils import atomic_write_json

REWARD_EPOCHS = 4
"""Reward-model passes of the shipped recipe (the reviews task's reward model and ensemble members)."""


@dataclass
class RewardTrainingConfig:
    """Settings of :func:`train_reward_model`."""

    epochs: int = REWARD_EPOCHS
    """Passes over the training comparisons."""
    batch_size: int = 32
    """Comparisons per optimizer step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (linear decay to 0)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    eval_fraction: float = 0.1
    """Share of comparisons held out for evaluation."""
    center_rewards_coef: float = 0.0
    """Weight of the reward-centering term ``E[(r_w + r_l)^2]``; 0 turns it off."""
    use_margin: bool = True
    """Use a ``margin`` column when the data has one."""
    seed: int = 0
    """Seed of the split, the shuffling and the initialisation."""


def data_hash(records: list[dict]) -> str:
    """SHA-256 of the comparisons (prompt, chosen, rejected), in order."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps([r["prompt"], r["chosen"], r["rejected"]]).encode("utf-8"))
    return digest.hexdigest()


def split_records(records: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(records) * eval_fraction)
    return [records[i] for i in order[n_eval:]], [records[i] for i in order[:n_eval]]


def _batch_loss(reward_model: RewardModel, batch: list[dict],
                config: RewardTrainingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    prompts = [r["prompt"] for r in batch]
    scores = reward_model.forward(prompts + prompts, [r["chosen"] for r in batch] + [r["rejected"] for r in batch])
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
) -> dict:
    """Train in place on ``records``; return metrics (per-epoch history, final held-out accuracy, data hash)."""
    if len(records) < 2:
        raise DataError(f"need at least 2 comparisons to train a reward model, got {len(records)}")
    torch.manual_seed(config.seed)
    train, held_out = split_records(records, config.eval_fraction, config.seed)
    model = reward_model.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = config.epochs * ((len(train) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(steps, 1))
    writer = SummaryWriter(str(log_dir)) if log_dir else None
    rng = random.Random(config.seed)
    history = []
    step = 0
    with tqdm(total=steps, desc="reward model", disable=not progress) as bar:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = list(range(len(train)))
            rng.shuffle(order)
            losses, correct = [], []
            for start in range(0, len(order), config.batch_size):
                batch = [train[i] for i in order[start:start + config.batch_size]]
                loss, hits = _batch_loss(reward_model, batch, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
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
    if writer:
        writer.close()
    return {"config": asdict(config), "history": history, "eval_accuracy": history[-1]["eval_accuracy"],
            "n_train": len(train), "n_eval": len(held_out), "data_sha256": data_hash(records)}


def save_reward_model(reward_model: RewardModel, directory: str | Path, metrics: dict) -> None:
    """``save_pretrained`` plus ``reward_metadata.json`` (data hash, seed, accuracy, history)."""
    reward_model.save_pretrained(directory)
    atomic_write_json(Path(directory) / "reward_metadata.json", metrics)
