"""Reward-model scaling of over-optimisation on the reviews task (Gao, Schulman & Hilton 2022).

Trains a grid of proxy reward models — ``--sizes`` (GPT-2 classifiers, width x layers) x ``--n-comparisons`` (the
first n of the shipped comparisons) — then optimises against each one in two ways: best-of-n from the SFT policy
(the same ``--best-of-n-prompts`` x ``--best-of-n-max`` samples, ranked by every proxy) and PPO at beta 0 (the beta
sweep's runs, ``--seeds``), and fits Gao's forms per proxy (:mod:`rlhf_gym.studies.analysis.scaling`).

The run store under ``--out-dir`` (every piece written atomically; a rerun skips what exists and refuses what was made
with other settings):

* ``proxies/<name>/``: each proxy (HF format, with its metrics in ``reward_metadata.json``) and ``best_of_n.json``;
* ``best_of_n_samples.json``: the SFT samples with their gold reward, shared by all proxies;
* ``ppo/<name>/runs/beta0_seed<s>.json``: the PPO runs (a beta sweep's store per proxy);
* ``scaling.json``, ``scaling.md`` (the table), ``scaling.png`` (Gao's Figure 1), ``coefficients.png``.

    rlhf-gym rm-scaling                                  # 3 sizes x 3 data sizes, 3 seeds, 2 workers
    rlhf-gym rm-scaling --quick --out-dir /tmp/rms       # smoke test
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path


from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.best_of_n import draw_samples, power_of_two_ns, rank_samples
from rlhf_gym.studies.analysis.figures import plot_coefficients, plot_scaling
from rlhf_gym.proxy_spec import ProxySpec, parse_ints, parse_sizes
from rlhf_gym.studies.analysis.run_store import load_runs
from rlhf_gym.studies.analysis.scaling import scaling_table, summarize_cell
from rlhf_gym.reward_settings import METADATA_FILE
from rlhf_gym.tasks import load_task
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json

from . import sweep
from .sweep import check_stored, start_study

BEST_OF_N_SETTINGS = ("best_of_n_max", "best_of_n_prompts", "max_new_tokens")


@dataclass
class Args(RayOptions, sweep.PPORunOptions):
    out_dir: str = arg("runs/rm_scaling", "the run store: proxies/, ppo/, the table and the figures")
    sizes: str = arg("32x1,64x2,128x3", "proxy sizes, WIDTHxLAYERS (the shipped reward model is 64x2)")
    n_comparisons: str = arg("1000,3000,10000", "numbers of comparisons (the first n of the shipped 10,000)")
    proxy_seed: int = arg(0, "seed of every proxy's initialisation, data order and held-out split")
    iterations: int = arg(48, "PPO iterations per run (beta 0)")
    eval_every: int = arg(4, "held-out evaluation every this many PPO iterations")
    best_of_n_max: int = arg(256, "best-of-n for n = 1, 2, 4, ... up to this power of two")
    best_of_n_prompts: int = arg(128, "held-out prompts of best-of-n")
    quick: bool = arg(False, "smoke test: two tiny proxies x two data sizes, one seed, two PPO iterations")

    ray_gpus_used = False

    def __post_init__(self) -> None:
        self.ray_settings()
        if self.quick:
            self.sizes, self.n_comparisons, self.seeds, self.iterations, self.eval_every = "8x1,16x1", "64,128", "0", 2, 1
            self.n_envs, self.batch_size, self.n_epochs, self.max_new_tokens = 8, 4, 2, 12
            self.n_eval_prompts, self.best_of_n_max, self.best_of_n_prompts, self.workers = 16, 4, 8, 1
        check_positive_options(self, ("iterations", "eval_every", "n_eval_prompts", "n_envs", "batch_size", "n_epochs",
                                      "learning_rate", "max_new_tokens", "best_of_n_prompts", "workers"))
        power_of_two_ns(self.best_of_n_max)
        parse_ints(self.seeds, "--seeds")
        self.specs()  # bad sizes or numbers of comparisons fail here

    def specs(self) -> list[ProxySpec]:
        """The grid, by size then data."""
        return [ProxySpec(width, layers, n, self.proxy_seed) for width, layers in parse_sizes(self.sizes)
                for n in parse_ints(self.n_comparisons, "--n-comparisons", minimum=2)]

    def proxy_dir(self, spec: ProxySpec) -> Path:
        return Path(self.out_dir) / "proxies" / spec.name

    def ppo_dir(self, spec: ProxySpec) -> Path:
        """The beta sweep's store of the PPO runs (beta 0, ``--seeds``) against one proxy."""
        return Path(self.out_dir) / "ppo" / spec.name


def sample_sft(args: Args) -> dict:
    """The shared best-of-n samples: ``--best-of-n-max`` SFT responses for each of ``--best-of-n-prompts`` held-out
    prompts, with their gold reward (a job)."""
    task = load_task("reviews")
    samples = draw_samples(task.load_policy(), task.load_tokenizer(), task.eval_prompts[: args.best_of_n_prompts], task,
                           args.best_of_n_max, args.max_new_tokens)
    return {**samples, "config": {k: getattr(args, k) for k in BEST_OF_N_SETTINGS}}


def rank_by_proxy(samples_path: str, proxy_dir: str) -> dict:
    """Best-of-n chosen by one proxy over the shared samples (a job)."""
    from rlhf_gym.reward_model import RewardModel  # torch only in a job: the options and --help need none

    samples = read_json(samples_path, ("prompts", "responses", "values", "n_max"), "best-of-n samples")
    return {"curve": rank_samples(samples, RewardModel.from_pretrained(proxy_dir)), "config": samples["config"]}


def first_jobs(args: Args) -> list[Job]:
    """The proxies not trained yet and the shared samples, if not drawn yet (a stored file with other settings is a
    :class:`ConfigError` naming it)."""
    from rlhf_gym.proxies import train_proxy

    todo = []
    for spec in args.specs():
        if not (args.proxy_dir(spec) / METADATA_FILE).exists():
            todo.append(Job(f"proxy {spec.name}", train_proxy, (spec, str(args.proxy_dir(spec)))))
    samples_path = Path(args.out_dir) / "best_of_n_samples.json"
    if samples_path.exists():
        check_stored(samples_path, read_json(samples_path, ("config",), "best-of-n samples"),
                     {k: getattr(args, k) for k in BEST_OF_N_SETTINGS})
    else:
        todo.append(Job("best-of-n samples", sample_sft, (args,), partial(atomic_write_json, samples_path)))
    return todo


def second_jobs(args: Args) -> list[Job]:
    """Best-of-n and the PPO runs of every proxy, those not stored yet."""
    samples_path = Path(args.out_dir) / "best_of_n_samples.json"
    todo = []
    for spec in args.specs():
        curve_path = args.proxy_dir(spec) / "best_of_n.json"
        if not curve_path.exists():
            todo.append(Job(f"best-of-n {spec.name}", rank_by_proxy, (str(samples_path), str(args.proxy_dir(spec))),
                            partial(atomic_write_json, curve_path)))
        todo += sweep.jobs(args.sweep_args(args.ppo_dir(spec), reward_model=str(args.proxy_dir(spec))))
    return todo


def main(args: Args) -> dict:
    started = start_study(args)
    out_dir = Path(args.out_dir)
    run_all(first_jobs(args), args.workers, args.ray_settings())
    run_all(second_jobs(args), args.workers, args.ray_settings())

    rows, runs = [], {}
    for spec in args.specs():
        proxy_dir = args.proxy_dir(spec)
        metrics = read_json(proxy_dir / METADATA_FILE, ("spec", "parameters", "gold_agreement"), "a proxy's metadata")
        curve = read_json(proxy_dir / "best_of_n.json", ("curve",), "a best-of-n curve")["curve"]
        runs[spec.name] = load_runs(args.ppo_dir(spec))
        rows.append(summarize_cell(spec.name, metrics, curve, runs[spec.name]))
    result = {"args": asdict(args), "rows": rows, "seconds": round(time.time() - started, 1)}
    atomic_write_json(out_dir / "scaling.json", result)
    table = scaling_table(rows)
    atomic_write_text(out_dir / "scaling.md", f"# Reward-model scaling of over-optimisation (reviews task)\n\n{table}")
    title = (f"reviews task: {len(rows)} proxies ({args.sizes} x {args.n_comparisons} comparisons), PPO at beta 0 over "
             f"{len(args.seed_list())} seed(s), best-of-n up to {args.best_of_n_max}")
    plot_scaling(rows, runs, out_dir / "scaling.png", title=title)
    plot_coefficients(rows, out_dir / "coefficients.png", title=title)
    print(table)
    print(f"done in {time.time() - started:.0f} s: scaling.json, scaling.md, scaling.png, coefficients.png in {out_dir}")
    return result
