"""Build the reward-model ensemble of the reviews task, deterministically (Coste et al. 2023).

Trains k reward models on the shipped comparisons (``artifacts/preferences.jsonl``) with the shipped
architecture (``BuildConfig``'s GPT-2 style classifier, ``num_labels=1``) and recipe (``REWARD_EPOCHS`` epochs),
differing only in their seed (initialisation, data order and held-out split). Each member is standardised by
its mean and std on SFT samples (``ensemble.json``), and its agreement with the gold reward is measured on
the fresh SFT pairs the shipped reward model was measured on.

    rlhf-gym build-ensemble                        # into rlhf_gym/tasks/reviews/artifacts_ensemble/
    rlhf-gym build-ensemble --out-dir /tmp/ens     # somewhere else

The result is bit-identical for the same seeds, torch version and ``--threads``.
"""

from __future__ import annotations

import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.ensemble import DEFAULT_ENSEMBLE_DIR, RewardEnsemble
from rlhf_gym.generation import generate_texts
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.preferences import load_preferences
from rlhf_gym.reward_training import REWARD_EPOCHS, RewardTrainingConfig, data_hash, save_reward_model, train_reward_model
from rlhf_gym.tasks import load_task
from rlhf_gym.tasks.building import BuildConfig, SeedStream, gold_agreement
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS
from rlhf_gym.utils import atomic_write_json


@dataclass
class Args:
    out_dir: str = arg(str(DEFAULT_ENSEMBLE_DIR), "where member_<seed>/ and ensemble.json are written")
    seeds: str = arg("1,2,3", "comma-separated seeds, one member each")
    epochs: int = arg(REWARD_EPOCHS, f"reward-model epochs (the shipped recipe: {REWARD_EPOCHS})")
    n_norm_samples: int = arg(2000, "SFT samples (train prompts) on which each member's mean and std are measured")
    threads: int = arg(1, "torch CPU threads (the result is bit-identical for the same value)")

    def __post_init__(self) -> None:
        try:
            seeds = self.seed_list()
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {self.seeds!r}") from None
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds must list at least one seed, each once, got {self.seeds!r}")
        if self.epochs <= 0 or self.n_norm_samples <= 1 or self.threads <= 0:
            raise ConfigError("--epochs and --threads must be > 0 and --n-norm-samples > 1")

    def seed_list(self) -> list[int]:
        """The seeds of ``--seeds``, in order."""
        return [int(s) for s in self.seeds.split(",") if s.strip()]


def main(args: Args) -> dict:
    started = time.time()
    torch.set_num_threads(args.threads)
    seeds = args.seed_list()
    task = load_task("reviews")
    build = BuildConfig()
    records = load_preferences(task.artifacts_dir / "preferences.jsonl")
    policy, tokenizer = task.load_policy(), task.load_tokenizer()
    out_dir = Path(args.out_dir)
    staging = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    # the pairs and prompts on which build.py measured the shipped reward model
    agreement_prompts = random.Random(build.seed_for(SeedStream.EVAL_SAMPLE)).sample(task.eval_prompts,
                                                                                       build.n_eval_samples)
    agreement_seed = build.seed_for(SeedStream.GOLD_AGREEMENT)
    norm_seed = build.seed_for(SeedStream.ENSEMBLE_NORM)
    norm_prompts = random.Random(norm_seed).choices(task.train_prompts, k=args.n_norm_samples)
    norm_responses = generate_texts(policy, tokenizer, norm_prompts, build.max_new_tokens, seed=norm_seed)

    members, manifest = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        member = gpt2_reward_model(REVIEWS.tokenizer(), build.reward_width, build.reward_layers)
        metrics = train_reward_model(member, records, RewardTrainingConfig(epochs=args.epochs, seed=seed), progress=False)
        agreement = gold_agreement(task.gold_reward, member, policy, tokenizer, agreement_prompts, build.max_new_tokens,
                                   agreement_seed)
        metrics.update(agreement)
        save_reward_model(member, staging / f"member_{seed}", metrics)
        scores = member(norm_prompts, norm_responses).astype(np.float64)
        manifest.append({"path": f"member_{seed}", "seed": seed, "shift": float(scores.mean()), "scale": float(scores.std()),
                         "eval_accuracy": metrics["eval_accuracy"], "gold_agreement": agreement["gold_agreement"]})
        members.append(member)
        print(f"member {seed}: held-out accuracy {metrics['eval_accuracy']:.3f}, gold agreement "
              f"{agreement['gold_agreement']:.3f}, SFT mean {scores.mean():.3f} std {scores.std():.3f}")

    ensemble_agreement = {}
    for objective in ("mean", "worst", "uncertainty"):
        ensemble = RewardEnsemble(members, objective, shifts=[m["shift"] for m in manifest],
                                  scales=[m["scale"] for m in manifest])
        ensemble_agreement[objective] = gold_agreement(task.gold_reward, ensemble, policy, tokenizer, agreement_prompts,
                                                       build.max_new_tokens, agreement_seed)["gold_agreement"]
    print("ensemble agreement with gold:", ", ".join(f"{k} {v:.3f}" for k, v in ensemble_agreement.items()))
    metadata = {
        "members": manifest,
        "ensemble_gold_agreement": ensemble_agreement,
        "n_agreement_pairs": len(agreement_prompts),
        "standardisation": f"mean and std of each member on {args.n_norm_samples} SFT samples (train prompts)",
        "args": {k: v for k, v in asdict(args).items() if k != "out_dir"},
        "data_sha256": data_hash(records),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "build_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(staging / "ensemble.json", metadata)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(f"ensemble of {len(seeds)} written to {out_dir} in {metadata['build_seconds']:.0f} s")
    return metadata
