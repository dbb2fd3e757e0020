"""Supervised fine-tuning (next-token cross-entropy) of a causal LM on ``prompt response <eos>`` texts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass
class SFTConfig:
    """Settings of :func:`train_sft`."""

    epochs: int = 2
    """Passes over the texts."""
    batch_size: int = 64
    """Texts per optimizer step."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate (linear decay to 0)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the shuffling."""


def train_sft(model, tokenizer, texts: list[str], config: SFTConfig, progress: bool = True) -> list[float]:
    """Train ``model`` on ``texts`` (each followed by EOS); return the loss of each step."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts]
    generator = torch.Generator().manual_seed(config.seed)
    steps = config.epochs * ((len(encoded) + config.batch_size - 1) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    losses: list[float] = []
    model.train()
    with tqdm(total=steps, desc="SFT", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(encoded), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                batch = [encoded[i] for i in order[start:start + config.batch_size]]
                width = max(len(s) for s in batch)
                ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                for row, seq in enumerate(batch):
                    ids[row, :len(seq)] = torch.tensor(seq)
                    labels[row, :len(seq)] = torch.tensor(seq)
                loss = model(input_ids=ids.to(device), attention_mask=(labels != -100).long().to(device),
                             labels=labels.to(device)).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses
