"""Best-of-n baseline: sample n responses from the SFT policy, keep the one the proxy reward prefers.

For n = 1, 2, 4, ..., ``--n-max`` it reports the expected proxy reward, gold reward and well-formed share of the
chosen response (the unbiased estimator over ``--n-max`` samples per prompt, Nakano et al. 2021) at the
analytic KL ``ln n - (n - 1) / n`` (Stiennon et al. 2020), so RL policies can be compared with it at equal KL.

    rlhf-gym best-of-n                                  # proxy: the task's reward model
    rlhf-gym best-of-n --ensemble-objective worst       # proxy: the ensemble
    rlhf-gym best-of-n --task lists                     # a suite task (its policy, reward model, held-out prompts)
    rlhf-gym best-of-n --ray-address auto --ray-num-cpus 8   # sampled in a Ray task on a cluster node

Writes ``best_of_n.json`` and ``best_of_n.md`` to ``--out-dir``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.errors import ConfigError
from rlhf_gym.ensemble import ProxyRewardArgs
from rlhf_gym.best_of_n import sample_best_of_n
from rlhf_gym.studies.analysis.tables import best_of_n_table
from rlhf_gym.tasks import TASKS, load_task, world_of
from rlhf_gym.files import atomic_write_json, atomic_write_text


@dataclass
class Args(ProxyRewardArgs, RayOptions):
    task: str = arg("reviews", "task whose SFT policy, reward model and held-out prompts are used", choices=TASKS)
    out_dir: str = arg("runs/best_of_n", "where best_of_n.json and best_of_n.md go")
    n_max: int = arg(64, "largest n (a power of two); also the samples drawn per prompt")
    n_prompts: int = arg(1024, "held-out prompts (the reviews task has 1024)")
    max_new_tokens: int | None = arg(None, "response budget in tokens (default: the task's)")
    seed: int = arg(20_000, "sampling seed")
    threads: int = arg(1, "torch CPU threads (the published table used 1); a Ray task uses its --ray-num-cpus")

    ray_gpus_used = False  # sampled on the CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ray_settings()  # checks the Ray options
        if self.n_max < 1 or self.n_max & (self.n_max - 1):
            raise ConfigError(f"--n-max must be a power of two, got {self.n_max}")
        check_positive_options(self, ("n_prompts", "max_new_tokens", "threads"))
        world_of(self.task)


def sample(args: Args) -> dict:
    """``{"curve", "n_prompts"}``: the best-of-n curve of ``args`` and the prompts it used (a job: in this process, or
    a Ray task with ``--ray``)."""
    task = load_task(args.task)
    reward = args.load_proxy() or task.load_reward_model()
    prompts = task.eval_prompts[: args.n_prompts]
    curve = sample_best_of_n(task.load_policy(), task.load_tokenizer(), prompts, reward, task, args.n_max,
                             args.max_new_tokens or task.max_new_tokens, args.seed)
    return {"curve": curve, "n_prompts": len(prompts)}


def main(args: Args) -> list[dict]:
    import torch  # only once the command runs: --help stays fast

    started = time.time()
    torch.set_num_threads(args.threads)
    [result] = run_all([Job(f"best-of-n on {args.task}", sample, (args,))], ray=args.ray_settings())
    curve, n_prompts = result["curve"], result["n_prompts"]
    out_dir = Path(args.out_dir)
    seconds = round(time.time() - started, 1)
    atomic_write_json(out_dir / "best_of_n.json", {"curve": curve, "n_prompts": n_prompts, "args": asdict(args),
                                                   "seconds": seconds})
    proxy = args.proxy_name
    table = best_of_n_table(curve)
    atomic_write_text(out_dir / "best_of_n.md", f"# Best-of-n from the SFT policy, chosen by the {proxy}, "
                                                f"{n_prompts} held-out prompts\n\n{table}")
    print(table)
    print(f"done in {seconds:.0f} s: best_of_n.json, best_of_n.md in {out_dir}")
    return curve
