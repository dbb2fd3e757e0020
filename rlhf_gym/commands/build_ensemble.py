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

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.ensemble import DEFAULT_ENSEMBLE_DIR, RewardEnsemble
from rlhf_gym.proxy_spec import ProxySpec
from rlhf_gym.reward_settings import REWARD_EPOCHS
from rlhf_gym.tasks import load_task
from rlhf_gym.files import atomic_write_json


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
    # torch only once the command runs: --help stays fast
    import torch

    from rlhf_gym.provenance import machine, versions
    from rlhf_gym.proxies import (measure_gold_agreement, shipped_comparisons, standardisation, standardisation_samples,
                                  train_proxy)
    from rlhf_gym.reward_model import RewardModel
    from rlhf_gym.reward_training import data_hash
    from rlhf_gym.tasks.building import BuildConfig

    started = time.time()
    torch.set_num_threads(args.threads)
    seeds = args.seed_list()
    task = load_task("reviews")
    build = BuildConfig()
    records = shipped_comparisons(task)
    out_dir = Path(args.out_dir)
    staging = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    norm_prompts, norm_responses = standardisation_samples(args.n_norm_samples)

    members, manifest = [], []
    for seed in seeds:
        member_dir = staging / f"member_{seed}"
        metrics = train_proxy(ProxySpec(build.reward_width, build.reward_layers, len(records), seed), member_dir, records,
                              epochs=args.epochs)
        member = RewardModel.from_pretrained(member_dir)
        shift, scale = standardisation(member, norm_prompts, norm_responses)
        manifest.append({"path": f"member_{seed}", "seed": seed, "shift": shift, "scale": scale,
                         "eval_accuracy": metrics["eval_accuracy"], "gold_agreement": metrics["gold_agreement"]})
        members.append(member)
        print(f"member {seed}: held-out accuracy {metrics['eval_accuracy']:.3f}, gold agreement "
              f"{metrics['gold_agreement']:.3f}, SFT mean {shift:.3f} std {scale:.3f}")

    ensemble_agreement = {}
    for objective in ("mean", "worst", "uncertainty"):
        ensemble = RewardEnsemble(members, objective, shifts=[m["shift"] for m in manifest],
                                  scales=[m["scale"] for m in manifest])
        ensemble_agreement[objective] = measure_gold_agreement(ensemble, task)["gold_agreement"]
    print("ensemble agreement with gold:", ", ".join(f"{k} {v:.3f}" for k, v in ensemble_agreement.items()))
    metadata = {
        "members": manifest,
        "ensemble_gold_agreement": ensemble_agreement,
        "n_agreement_pairs": build.n_eval_samples,
        "standardisation": f"mean and std of each member on {args.n_norm_samples} SFT samples (train prompts)",
        "args": {k: v for k, v in asdict(args).items() if k != "out_dir"},
        "data_sha256": data_hash(records),
        "versions": versions(),
        "machine": machine(),
        "build_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(staging / "ensemble.json", metadata)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    print(f"ensemble of {len(seeds)} written to {out_dir} in {metadata['build_seconds']:.0f} s")
    return metadata
