"""Best-of-n baseline: sample n responses from the SFT policy, keep the one the proxy reward prefers.

For n = 1, 2, 4, ..., ``--n-max`` it reports the expected proxy reward, gold reward and well-formed share of the
chosen response (the unbiased estimator over ``--n-max`` samples per prompt, Nakano et al. 2021) at the
analytic KL ``ln n - (n - 1) / n`` (Stiennon et al. 2020), so RL policies can be compared with it at equal KL.

    python scripts/best_of_n.py                                   # proxy: the task's reward model
    python scripts/best_of_n.py --ensemble-objective worst        # proxy: the ensemble

Writes ``best_of_n.json`` and ``best_of_n.md`` to ``--out-dir``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rlhf_gym.cli import arg, run
from rlhf_gym.ensemble import DEFAULT_ENSEMBLE_DIR, OBJECTIVES, RewardEnsemble
from rlhf_gym.hacking.best_of_n import sample_best_of_n
from rlhf_gym.hacking.tables import best_of_n_table
from rlhf_gym.tasks import load_task
from rlhf_gym.utils import atomic_write_json, atomic_write_text


@dataclass
class Args:
    out_dir: str = arg("runs/best_of_n", "where best_of_n.json and best_of_n.md go")
    n_max: int = arg(64, "largest n (a power of two); also the samples drawn per prompt")
    n_prompts: int = arg(1024, "held-out prompts (the reviews task has 1024)")
    max_new_tokens: int = arg(24, "response budget in tokens")
    seed: int = arg(20_000, "sampling seed")
    ensemble_objective: str | None = arg(None, "choose with the ensemble (mean, worst or uncertainty) instead of the "
                                               "task's reward model")
    uncertainty_coef: float = arg(1.0, "lambda of the uncertainty objective")
    ensemble_dir: str = arg(str(DEFAULT_ENSEMBLE_DIR), "directory of the ensemble")

    def __post_init__(self) -> None:
        if self.n_max < 1 or self.n_max & (self.n_max - 1):
            raise ValueError(f"--n-max must be a power of two, got {self.n_max}")
        if self.n_prompts <= 0 or self.max_new_tokens <= 0:
            raise ValueError("--n-prompts and --max-new-tokens must be > 0")
        if self.ensemble_objective is not None and self.ensemble_objective not in OBJECTIVES:
            raise ValueError(f"--ensemble-objective must be one of {OBJECTIVES}, got {self.ensemble_objective!r}")


def main(args: Args) -> list[dict]:
    started = time.time()
    task = load_task("reviews")
    if args.ensemble_objective is None:
        reward = task.load_reward_model()
    else:
        reward = RewardEnsemble.from_pretrained(args.ensemble_dir, args.ensemble_objective, args.uncertainty_coef)
    prompts = task.eval_prompts[: args.n_prompts]
    curve = sample_best_of_n(task.load_policy(), task.load_tokenizer(), prompts, reward, task, args.n_max,
                             args.max_new_tokens, args.seed)
    out_dir = Path(args.out_dir)
    seconds = round(time.time() - started, 1)
    atomic_write_json(out_dir / "best_of_n.json", {"curve": curve, "n_prompts": len(prompts), "args": asdict(args),
                                                   "seconds": seconds})
    proxy = f"ensemble ({args.ensemble_objective})" if args.ensemble_objective else "reward model"
    table = best_of_n_table(curve)
    atomic_write_text(out_dir / "best_of_n.md", f"# Best-of-n from the SFT policy, chosen by the {proxy}, "
                                                f"{len(prompts)} held-out prompts\n\n{table}")
    print(table)
    print(f"done in {seconds:.0f} s: best_of_n.json, best_of_n.md in {out_dir}")
    return curve


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(main, Args, __doc__)
