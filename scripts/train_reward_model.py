"""Stage 2: train a Bradley-Terry reward model on preference JSONL (or a Hugging Face dataset on disk).

    python scripts/train_reward_model.py --data prefs.jsonl --out rm/
    python scripts/train_reward_model.py --data prefs.jsonl --model distilbert-base-uncased --out rm/  # any HF model

The default model is a small GPT-2-style classifier on the task's word-level tokenizer. Writes the model in
save_pretrained format plus reward_metadata.json (data hash, seed, held-out accuracy), and TensorBoard logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhf_gym.cli import arg, run
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.preferences import PreferenceDataError, load_preferences
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.reward_training import RewardTrainingConfig, save_reward_model, train_reward_model
from rlhf_gym.tasks.reviews.build import BuildConfig
from rlhf_gym.tasks.reviews.tokenizer import build_tokenizer
from rlhf_gym.utils import resolve_device


@dataclass
class Args:
    data: str = arg("preferences.jsonl", "preference JSONL (prompt, chosen, rejected[, margin]) or a saved datasets directory")
    out: str = arg("reward_model", "output directory")
    model: str | None = arg(None, "HF model id or directory (default: a small GPT-2 on the reviews tokenizer)")
    epochs: int = arg(RewardTrainingConfig.epochs, "passes over the data")
    batch_size: int = arg(RewardTrainingConfig.batch_size, "comparisons per step")
    learning_rate: float = arg(RewardTrainingConfig.learning_rate, "AdamW learning rate")
    eval_fraction: float = arg(RewardTrainingConfig.eval_fraction, "held-out share")
    center_rewards_coef: float = arg(RewardTrainingConfig.center_rewards_coef, "reward-centering weight (0: off)")
    skip_bad_lines: bool = arg(False, "skip malformed JSONL lines (and report how many) instead of stopping")
    seed: int = arg(RewardTrainingConfig.seed, "seed of split, shuffling and initialisation")
    device: str = arg("cpu", "cpu, cuda or auto")

    def __post_init__(self) -> None:
        if not Path(self.data).exists():
            raise ValueError(f"--data: file not found: {self.data}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")
        if self.epochs <= 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError("--epochs, --batch-size and --learning-rate must be > 0")


def load_records(args: Args) -> list[dict]:
    if Path(args.data).is_dir():
        import datasets

        return load_preferences(datasets.load_from_disk(args.data))
    return load_preferences(args.data, skip_bad_lines=args.skip_bad_lines)


def build_model(args: Args, device: torch.device) -> RewardModel:
    torch.manual_seed(args.seed)
    if args.model:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)
        return RewardModel(model.to(device), AutoTokenizer.from_pretrained(args.model))
    build = BuildConfig()
    return gpt2_reward_model(build_tokenizer(), build.reward_width, build.reward_layers, device=device)


def main(args: Args) -> None:
    try:
        records = load_records(args)
    except PreferenceDataError as error:
        raise PreferenceDataError(f"{error} (pass --skip-bad-lines to skip malformed lines)") from None
    reward_model = build_model(args, resolve_device(args.device))
    config = RewardTrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                  eval_fraction=args.eval_fraction, center_rewards_coef=args.center_rewards_coef,
                                  seed=args.seed)
    metrics = train_reward_model(reward_model, records, config, log_dir=Path(args.out) / "tensorboard")
    save_reward_model(reward_model, args.out, {**metrics, "data": str(args.data)})
    print(f"held-out accuracy {metrics['eval_accuracy']:.3f} on {metrics['n_eval']} comparisons; saved to {args.out}")


if __name__ == "__main__":
    run(main, Args, __doc__)
