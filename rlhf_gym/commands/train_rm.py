"""Stage 2: train a Bradley-Terry reward model on preference JSONL (or a Hugging Face dataset on disk).

    rlhf-gym train-rm --data prefs.jsonl --out-dir rm/
    rlhf-gym train-rm --data prefs.jsonl --model distilbert-base-uncased --out-dir rm/  # any HF model

The default model is a small GPT-2-style classifier on the task's word-level tokenizer. Writes the model in
save_pretrained format plus reward_metadata.json (data hash, seed, held-out accuracy), and TensorBoard logs;
an existing --out-dir (a previous reward model) is replaced only once the new model is complete. Duplicate
records are left out and the held-out comparisons are split off by pair (rlhf_gym.reward_training.split_records);
comparisons whose chosen equals rejected are counted in a warning, and refused when all are.
A malformed line stops the run with its file and line (or is skipped with --skip-bad-lines); so does a NaN/inf
loss, and a model with NaN/inf parameters is never saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.cli import arg
from rlhf_gym.checks import check_positive_options, check_seed
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.preferences import PreferenceDataError, load_preferences
from rlhf_gym.reward_settings import RewardTrainingConfig

if TYPE_CHECKING:  # torch and transformers only once the command runs: --help stays fast
    import torch

    from rlhf_gym.reward_model import RewardModel


@dataclass
class Args:
    data: str = arg("preferences.jsonl", "preference JSONL (prompt, chosen, rejected[, margin]) or a saved datasets directory")
    out_dir: str = arg("reward_model", "output directory (save_pretrained format)")
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
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")
        check_positive_options(self, ("epochs", "batch_size", "learning_rate"))
        if not (math.isfinite(self.center_rewards_coef) and self.center_rewards_coef >= 0):
            raise ConfigError(f"--center-rewards-coef must be >= 0 and finite, got {self.center_rewards_coef}")
        check_seed(self.seed)


def load_records(args: Args) -> list[dict]:
    """The comparisons of ``--data``; errors name the file and line (and the option that skips bad lines)."""
    path = Path(args.data)
    if not path.exists():
        raise MissingFileError(f"--data: file not found: {path}")
    try:  # a JSONL file, or the directory of a saved datasets dataset
        records = load_preferences(path, skip_bad_lines=args.skip_bad_lines)
    except PreferenceDataError as error:
        raise PreferenceDataError(f"{error} (pass --skip-bad-lines to skip malformed lines)") from None
    if len(records) < 2:
        raise DataError(f"{path}: need at least 2 comparisons to train a reward model, got {len(records)}")
    return records


def build_model(args: Args, device: torch.device) -> RewardModel:
    import torch
    from transformers import AutoTokenizer

    from rlhf_gym.gpt2 import gpt2_reward_model
    from rlhf_gym.reward_model import RewardModel
    from rlhf_gym.tasks.building import BuildConfig
    from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS
    from rlhf_gym.utils import load_model, load_pretrained

    torch.manual_seed(args.seed)
    if args.model:
        model = load_model(args.model, "reward_model", "--model", from_base=True)  # a causal LM gets a new score head
        return RewardModel(model.to(device), load_pretrained(AutoTokenizer.from_pretrained, args.model, "--model's tokenizer"))
    build = BuildConfig()
    return gpt2_reward_model(REVIEWS.tokenizer(), build.reward_width, build.reward_layers, device=device)


def main(args: Args) -> dict:
    from rlhf_gym.reward_training import staged_directory, train_reward_model, write_reward_model
    from rlhf_gym.utils import resolve_device

    records = load_records(args)
    reward_model = build_model(args, resolve_device(args.device))
    config = RewardTrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                  eval_fraction=args.eval_fraction, center_rewards_coef=args.center_rewards_coef,
                                  seed=args.seed)
    with staged_directory(args.out_dir) as staging:  # the previous model stays until the new one is complete
        metrics = train_reward_model(reward_model, records, config, log_dir=staging / "tensorboard", where=str(args.data))
        write_reward_model(reward_model, staging, {**metrics, "data": str(args.data)})
    print(f"held-out accuracy {metrics['eval_accuracy']:.3f} on {metrics['n_eval']} comparisons (no pair in both "
          f"train and held-out; {metrics['n_duplicates']} duplicate(s) left out); saved to {args.out_dir}")
    return metrics
