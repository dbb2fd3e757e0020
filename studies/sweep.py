"""Beta sweep: reward against KL over a range of KL coefficients, where reward hacking becomes visible.

For every (beta, seed) it trains TokenPPO on the batched env exactly as ``rlhf-gym train`` does (the same
:func:`rlhf_gym.agents.experiment.build_env_and_agent`), and every
``--eval-every`` PPO iterations scores the policy on held-out prompts (``rlhf_gym.evaluation``): proxy reward,
gold reward, KL to the reference, well-formed share, with sample texts. It also measures best-of-n from the
SFT policy (n = 1, 2, 4, ... chosen by the same proxy) at its analytic KL ``ln n - (n - 1)/n``, and fits the
gold curve to Gao et al. (2022), ``R(d) = d (alpha - b ln d)`` with ``d = sqrt(KL)``.

The runs (and best-of-n) are independent jobs of :func:`rlhf_gym.dispatch.run_all`: ``--workers`` local processes,
or with ``--ray``/``--ray-address`` one Ray task each; this process stores each record as it finishes.

Writes to ``--out-dir``: ``runs/beta<b>_seed<s>.json`` (one per finished run, written atomically: a rerun
skips them), ``best_of_n.json``, ``sweep.json`` (every point), ``sweep.md`` (the table), ``sweep.png``
(proxy and gold reward against sqrt(KL), one curve per beta, with best-of-n; gold reward against beta),
``sweep_training.png`` (the same over PPO iterations, one line per seed) and, with ``--compare``,
``compare.png`` (this sweep's gold curves beside other sweeps', beta by beta).

    rlhf-gym sweep                                     # default grid, 3 seeds, 2 workers
    rlhf-gym sweep --ensemble-objective worst --out-dir runs/sweep_worst --betas 0,0.01,0.03 \
        --compare runs/sweep_beta
    rlhf-gym sweep --quick --out-dir /tmp/sweep        # smoke test, under a minute
    rlhf-gym sweep --ray                               # each run a Ray task on a local Ray instance
    rlhf-gym sweep --ray-address auto --out-dir /shared/sweep_beta   # on a running Ray cluster
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.ensemble import ProxyRewardArgs
from rlhf_gym.errors import ConfigError
from rlhf_gym.best_of_n import sample_best_of_n
from rlhf_gym.studies.analysis.figures import plot_comparison, plot_sweep, plot_training
from rlhf_gym.studies.analysis.gao import fit_gao, gold_gain_points
from rlhf_gym.studies.analysis.run_store import load_runs, run_path, save_run
from rlhf_gym.studies.analysis.tables import best_of_n_table, markdown_table, summarize
from rlhf_gym.tasks import DEFAULT_MAX_NEW_TOKENS, load_task
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json

from rlhf_gym.agents.experiment import TrainConfig, build_env_and_agent, held_out_evaluator

# the settings a stored run must share with the sweep to be reused (else: an error naming the file)
RUN_SETTINGS = ("iterations", "eval_every", "n_eval_prompts", "n_envs", "batch_size", "n_epochs", "learning_rate",
                "max_new_tokens", "ensemble_objective", "uncertainty_coef", "ensemble_dir", "reward_model")
BEST_OF_N_SETTINGS = ("best_of_n_max", "best_of_n_prompts", "max_new_tokens", "ensemble_objective", "uncertainty_coef",
                      "ensemble_dir", "reward_model")


@dataclass
class PPORunOptions:
    """The PPO runs of a study — seeds, budget, evaluation, optimisation, workers: the beta sweep's, shared by the
    studies that run its runs against other proxies (``rlhf-gym rm-scaling``, ``rlhf-gym diverse-ensembles``) and by
    ``rlhf-gym iterate``."""

    seeds: str = arg("0,1,2", "comma-separated seeds")
    iterations: int = arg(60, "PPO iterations per run (one iteration: --n-envs responses, then --n-epochs epochs)")
    eval_every: int = arg(5, "evaluate on held-out prompts every this many PPO iterations (and before the first)")
    n_eval_prompts: int = arg(256, "held-out prompts per evaluation (the same prompts and sampling seed at every point)")
    n_samples_kept: int = arg(8, "sample texts stored per evaluation point")
    n_envs: int = arg(64, "responses per rollout")
    batch_size: int = arg(16, "minibatch size in responses")
    n_epochs: int = arg(4, "PPO epochs per rollout")
    learning_rate: float = arg(3e-4, "AdamW learning rate (over-optimises at small beta in 60 iterations)")
    max_new_tokens: int = arg(DEFAULT_MAX_NEW_TOKENS, "response budget in tokens")
    workers: int = arg(2, "runs trained in parallel (separate processes, one torch thread each); with Ray the "
                          "cluster's free CPUs decide instead")

    def seed_list(self) -> list[int]:
        """The seeds of ``--seeds``, in order."""
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    def sweep_args(self, out_dir: str | Path, betas: str = "0", **proxy) -> Args:
        """A beta sweep (no best-of-n) with these runs' options and Ray options, storing its runs under ``out_dir``;
        ``proxy``: :class:`ProxyRewardArgs` fields (``reward_model=...``, or the ensemble's)."""
        options = {f.name: getattr(self, f.name) for f in fields(PPORunOptions)}
        ray = {k: getattr(self, k) for k in ("ray", "ray_address", "ray_num_cpus") if hasattr(self, k)}
        return Args(out_dir=str(out_dir), betas=betas, best_of_n_max=0, **options, **ray, **proxy)


@dataclass
class Args(ProxyRewardArgs, RayOptions, PPORunOptions):
    out_dir: str = arg("runs/sweep_beta", "where runs/, best_of_n.json, sweep.json, sweep.md and the figures go")
    betas: str = arg("0,0.01,0.03,0.1,0.3", "comma-separated KL coefficients")
    best_of_n_max: int = arg(64, "best-of-n baseline for n = 1, 2, 4, ... up to this power of two (0: skip)")
    best_of_n_prompts: int = arg(256, "held-out prompts of the best-of-n baseline")
    compare: str | None = arg(None, "comma-separated directories of finished sweeps whose gold curves compare.png "
                                    "draws beside this one's, beta by beta")
    quick: bool = arg(False, "smoke test: betas 0 and 0.1, seed 0, two tiny iterations, small evaluations (< 1 minute)")

    ray_gpus_used = False  # the runs train on the CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ray_settings()  # checks the Ray options
        if self.quick:
            self.betas, self.seeds, self.iterations, self.eval_every = "0,0.1", "0", 2, 1
            self.n_envs, self.batch_size, self.n_epochs, self.max_new_tokens = 8, 4, 2, 12
            self.n_eval_prompts, self.best_of_n_max, self.best_of_n_prompts, self.workers = 16, 4, 8, 1
        check_positive_options(self, ("iterations", "eval_every", "n_eval_prompts", "n_envs", "batch_size", "n_epochs",
                                      "max_new_tokens", "learning_rate", "best_of_n_prompts", "workers"))
        try:
            betas, seeds = self.beta_list(), self.seed_list()
        except ValueError:
            raise ConfigError(f"--betas and --seeds must be comma-separated numbers, got {self.betas!r} and {self.seeds!r}") \
                from None
        if not betas or not seeds or min(betas) < 0:
            raise ConfigError(f"need at least one beta >= 0 and one seed, got --betas {self.betas!r} --seeds {self.seeds!r}")
        if self.best_of_n_max < 0 or self.best_of_n_max & (self.best_of_n_max - 1):
            raise ConfigError(f"--best-of-n-max must be 0 or a power of two, got {self.best_of_n_max}")

    def run_config(self) -> dict:
        """The settings a stored run must share with this sweep to be reused."""
        return self.settings(RUN_SETTINGS)

    def best_of_n_config(self) -> dict:
        """The settings a stored best-of-n result must share with this sweep to be reused."""
        return self.settings(BEST_OF_N_SETTINGS)

    def settings(self, names: tuple[str, ...]) -> dict:
        """These options' values; the ensemble's own are None without an ensemble (they do not apply, and the default
        directory is inside the installed package: a reinstall elsewhere must not make stored runs look different)."""
        values = {k: getattr(self, k) for k in names}
        if self.ensemble_objective is None:
            values.update(ensemble_dir=None, uncertainty_coef=None)
        return values

    def beta_list(self) -> list[float]:
        return [float(b) for b in self.betas.split(",") if b.strip()]


def train_config(args: Args, beta: float, seed: int) -> TrainConfig:
    """One run of the grid: ``train_agent``'s configuration with this sweep's budget, beta, seed and proxy."""
    return TrainConfig(seed=seed, kl_coef=beta, reward_model=args.load_proxy(), max_new_tokens=args.max_new_tokens,
                       n_envs=args.n_envs, batch_size=args.batch_size, n_epochs=args.n_epochs,
                       learning_rate=args.learning_rate, device="cpu",
                       lr_schedule="constant")  # the curves of gold vs KL over training are of an unannealed optimiser


def train_one(args: Args, beta: float, seed: int) -> dict:
    """Train one (beta, seed) run exactly as ``train_agent`` does (one builder), evaluating along the way; return its
    record (a job: the driver stores it)."""
    # SB3 (and torch) only in a run: the options and --help need neither
    from stable_baselines3.common.callbacks import CallbackList

    from rlhf_gym.agents.callbacks import HeldOutEvaluation, LearningCurveCallback, read_curve

    started = time.time()
    env, model = build_env_and_agent(train_config(args, beta, seed))
    evaluate = held_out_evaluator(env, args.n_eval_prompts, seed)
    work_dir = Path(args.out_dir) / "work" / run_path(args.out_dir, beta, seed).stem
    (work_dir / "curve.jsonl").unlink(missing_ok=True)
    held_out = HeldOutEvaluation(evaluate, args.eval_every, args.n_samples_kept)
    model.learn(total_responses=args.iterations * args.n_envs,  # exactly args.iterations PPO iterations
                callback=CallbackList([held_out, LearningCurveCallback(work_dir / "curve.jsonl")]))
    return {"beta": beta, "seed": seed, "config": args.run_config(), "points": held_out.points,
            "train_curve": read_curve(work_dir / "curve.jsonl"), "timesteps": int(model.num_timesteps),
            "seconds": round(time.time() - started, 1)}


def store_run(out_dir: str | Path, record: dict) -> None:
    """Save a finished run's record (in the driver) and print its final point."""
    save_run(out_dir, record)
    final = record["points"][-1]
    print(f"beta={record['beta']:g} seed={record['seed']}: gold {final['gold_reward']:.3f}, proxy "
          f"{final['proxy_reward']:.3f}, KL {final['kl']:.2f} after {final['iteration']} iterations "
          f"({record['seconds']:.0f} s)", flush=True)


def check_stored(path: Path, stored: dict, config: dict) -> dict:
    """A stored result, or a :class:`ConfigError` naming the file if it was made with other settings."""
    stored_config = stored.get("config") or {}
    # a setting added after the file was written reads as its default, None
    different = sorted(k for k in config if stored_config.get(k) != config[k])
    if different:
        raise ConfigError(f"{path} was made with other settings ({', '.join(different)}); use another --out-dir or delete it")
    return stored


def best_of_n(args: Args) -> dict:
    """Best-of-n from the SFT policy for n = 1, 2, 4, ..., chosen by the proxy reward: the record of best_of_n.json
    (a job: the driver stores it)."""
    started = time.time()
    task = load_task("reviews")
    curve = sample_best_of_n(task.load_policy(), task.load_tokenizer(), task.eval_prompts[: args.best_of_n_prompts],
                             args.load_proxy() or task.load_reward_model(), task, args.best_of_n_max, args.max_new_tokens)
    return {"curve": curve, "config": args.best_of_n_config(),
            "seconds": round(time.time() - started, 1)}


def jobs(args: Args) -> list[Job]:
    """The work not stored yet: best-of-n (unless ``--best-of-n-max 0``) and the (beta, seed) runs; a stored result
    made with other settings is a :class:`ConfigError` naming its file."""
    out_dir = Path(args.out_dir)
    todo = []
    best_of_n_path = out_dir / "best_of_n.json"
    if args.best_of_n_max > 0 and best_of_n_path.exists():
        check_stored(best_of_n_path, read_json(best_of_n_path, ("curve", "config"), "a best-of-n result"),
                     args.best_of_n_config())
    elif args.best_of_n_max > 0:
        todo.append(Job("best-of-n", best_of_n, (args,), partial(atomic_write_json, best_of_n_path)))
    grid = [(b, s) for b in args.beta_list() for s in args.seed_list()]
    done = [run_path(out_dir, b, s) for b, s in grid if run_path(out_dir, b, s).exists()]
    for path in done:
        check_stored(path, read_json(path, ("config",), "a sweep run"), args.run_config())
    pending = [(b, s) for b, s in grid if not run_path(out_dir, b, s).exists()]
    print(f"{len(done)} of {len(grid)} runs already done; training {len(pending)}", flush=True)
    return todo + [Job(f"beta={b:g} seed={s}", train_one, (args, b, s), partial(store_run, out_dir)) for b, s in pending]


def start_study(args) -> float:
    """What every study command does first: one torch thread per run (``OMP_NUM_THREADS``, inherited by the worker
    processes), print its options; returns the start time."""
    import torch  # only once a study runs: --help stays fast

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    print("\n".join(f"  {k} = {v}" for k, v in asdict(args).items()))
    return time.time()


def main(args: Args) -> dict:
    started = start_study(args)
    out_dir = Path(args.out_dir)
    run_all(jobs(args), args.workers, args.ray_settings())

    curve = None
    if args.best_of_n_max > 0:
        curve = read_json(out_dir / "best_of_n.json", ("curve",), "a best-of-n result")["curve"]
    grid = [(b, s) for b in args.beta_list() for s in args.seed_list()]
    runs = [r for r in load_runs(out_dir) if (r["beta"], r["seed"]) in grid]
    rows = summarize(runs)
    smallest = [r for r in runs if r["beta"] == min(args.beta_list())]
    result = {"args": asdict(args), "summary": rows, "best_of_n": curve,
              "gao_fit_smallest_beta": fit_gao(*gold_gain_points(smallest)).as_dict(),
              "gao_fit_all_betas": fit_gao(*gold_gain_points(runs)).as_dict(), "runs": runs}
    atomic_write_json(out_dir / "sweep.json", result)
    reward = args.proxy_name
    table = markdown_table(rows)
    if curve:
        table += "\nBest-of-n from the SFT policy (chosen by the proxy):\n\n" + best_of_n_table(curve)
    atomic_write_text(out_dir / "sweep.md", f"# Beta sweep, proxy: {reward}\n\n{table}")
    title = f"reviews task, proxy = {reward}, held-out prompts, {len(args.seed_list())} seeds"
    plot_sweep(runs, out_dir / "sweep.png", curve, title=title)
    plot_training(runs, out_dir / "sweep_training.png", title=title)
    if args.compare:
        sweeps = {reward: runs}
        for other in args.compare.split(","):
            saved = read_json(Path(other) / "sweep.json", ("args", "runs"), "a finished sweep")
            objective = saved["args"]["ensemble_objective"]
            sweeps[f"ensemble ({objective})" if objective else "reward model"] = saved["runs"]
        plot_comparison(sweeps, out_dir / "compare.png", title="gold reward against sqrt(KL), held-out prompts")
    print(table)
    print(f"done in {time.time() - started:.0f} s: sweep.json, sweep.md, sweep.png, sweep_training.png in {out_dir}")
    return result
