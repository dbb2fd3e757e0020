"""Over-optimisation of direct alignment algorithms: gold and proxy against KL over a grid of beta and training length.

Rafailov et al. (2024), "Scaling laws for reward model overoptimization in direct alignment algorithms"
(https://arxiv.org/abs/2406.02900), found that DPO, IPO and SLiC over-optimise like RLHF does: as the KL budget grows
(a smaller beta, more epochs), the gold score first rises and then falls, and the gold-vs-KL points of each method
follow Gao et al.'s RL form ``R(d) = d (alpha - b ln d)`` with ``d = sqrt(KL)``. This study measures that here, where the
gold reward is exact.

A run is a method (any registered algorithm with a ``dpo_beta``: ``dpo``, ``ipo``, ``simpo``, ``kto``, ``online_dpo``...),
a beta and a seed. Beta is ``--beta-scales`` times the method's own default, so every method is swept around the point
it was tuned at. Each run trains in stages up to the longest of ``--lengths`` (in units of the method's default budget:
one pass over the comparisons for an offline method, 12,800 responses for an online one) and is evaluated on held-out
prompts before training and at the end of every stage (gold, the task's reward model as proxy, KL to the reference,
well-formed share). Runs are independent jobs (``--workers``, or Ray); each record goes to
``<out-dir>/runs/<method>_x<scale>_seed<seed>.json`` when its run ends, and a rerun skips the stored ones (one made
with other settings is refused). ``overoptimisation.json`` (every run and, per method, the fit of Gao's form to the
gold gain over the SFT policy, with the runs whose gold peaked before their last stage), ``overoptimisation.md`` (the
table, also printed) and ``overoptimisation.png`` (gold and proxy against sqrt(KL), one panel per method) go to
``--out-dir``.

    rlhf-gym direct-overopt                                                     # RLHF-v0: DPO, IPO, SimPO, online DPO
    rlhf-gym direct-overopt --env-id RLHF-Lists-v0 --lengths 0.5,1,2 --out-dir runs/direct_overopt_lists
    rlhf-gym direct-overopt --quick --out-dir /tmp/overopt                      # smoke test
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json
from rlhf_gym.plots import pyplot, save_figure
from rlhf_gym.proxy_spec import parse_ints
from rlhf_gym.studies.analysis.gao import fit_gao, gold_gain_points

from rlhf_gym.agents.experiment import DEFAULT_TOTAL_RESPONSES, TrainConfig, build_env_and_agent, held_out_evaluator
from rlhf_gym.agents.registry import get_algorithm
from .sweep import check_stored, start_study

RUN_SETTINGS = ("env_id", "lengths", "n_eval_prompts", "n_envs", "quick")
"""The settings a stored run must share with the study to be reused (beside its method, beta and seed)."""
NOISE_Z = 2.0
"""A run over-optimised when its gold rose above the start to a peak before its last stage and then fell from it by more
than ``NOISE_Z * sqrt(2)`` standard errors of one evaluation's mean gold (the noise of a difference of two such means:
about 0.16 on RLHF-v0 with 256 prompts), so that one evaluation's sampling noise does not count as a fall."""
QUICK = {"methods": "dpo,online_dpo", "beta_scales": "0.5,1", "lengths": "0.005,0.01", "seeds": "0", "n_eval_prompts": 8,
         "n_envs": 8, "workers": 1}
"""What ``--quick`` sets: a smoke test of the whole study (seconds)."""


@dataclass
class Args(RayOptions):
    out_dir: str = arg("runs/direct_overoptimisation", "the run store (runs/), overoptimisation.json, .md and .png")
    env_id: str = arg("RLHF-v0", "registered env id: its task, comparisons, reward model (the proxy) and gold reward")
    methods: str = arg("dpo,ipo,simpo,online_dpo", "comma-separated algorithms with a --dpo-beta")
    beta_scales: str = arg("0.1,0.25,0.5,1,2", "betas, as multiples of each method's default beta")
    lengths: str = arg("0.25,0.5,1,2,4", "evaluation points, in units of the method's default budget (one pass over the "
                                         "comparisons offline; 12,800 responses online)")
    seeds: str = arg("0", "comma-separated seeds")
    n_eval_prompts: int = arg(256, "held-out prompts per evaluation (the same prompts and sampling seed at every point)")
    n_envs: int = arg(64, "online methods: responses per rollout")
    workers: int = arg(2, "runs trained in parallel (separate processes, one torch thread each)")
    quick: bool = arg(False, "smoke test: dpo and online_dpo, two betas, two tiny stages, one seed")

    ray_gpus_used = False  # the runs train on the CPU

    def __post_init__(self) -> None:
        self.ray_settings()
        if self.quick:
            for name, value in QUICK.items():
                setattr(self, name, value)
        check_positive_options(self, ("n_eval_prompts", "n_envs", "workers"))
        parse_ints(self.seeds, "--seeds")
        for option in ("beta_scales", "lengths"):
            values = self.floats(option)
            if not values or min(values) <= 0 or values != sorted(set(values)):
                raise ConfigError(f"--{option.replace('_', '-')} must be positive numbers in increasing order, got "
                                  f"{getattr(self, option)!r}")
        for method in self.method_list():
            cls = get_algorithm(method)  # a ConfigError listing the algorithms
            if "dpo_beta" not in {f.name for f in fields(cls.Config)}:
                raise ConfigError(f"--methods: {method} has no --dpo-beta to sweep (a direct alignment algorithm has one)")

    def floats(self, option: str) -> list[float]:
        try:
            return [float(v) for v in getattr(self, option).split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--{option.replace('_', '-')} must be comma-separated numbers, got "
                              f"{getattr(self, option)!r}") from None

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def run_config(self) -> dict:
        return {k: getattr(self, k) for k in RUN_SETTINGS}

    def record_path(self, method: str, scale: float, seed: int) -> Path:
        return Path(self.out_dir) / "runs" / f"{method}_x{scale:g}_seed{seed}.json"


def stage_budget(length: float, unit: int, granularity: int) -> int:
    """The budget of a stage ``length`` units long, rounded up to a whole rollout (``granularity`` responses) or
    comparison, and at least one."""
    return max(granularity, math.ceil(length * unit / granularity) * granularity)


def train_run(args: Args, method: str, scale: float, seed: int) -> dict:
    """A job: one method at ``scale`` times its default beta, trained in stages and evaluated after each."""
    import torch

    from rlhf_gym.agents.callbacks import evaluation_point

    torch.set_num_threads(1)
    started = time.time()
    cls = get_algorithm(method)
    beta = scale * cls.Config().dpo_beta
    config = TrainConfig(algo=method, env_id=args.env_id, seed=seed, dpo_beta=beta, n_envs=args.n_envs, device="cpu",
                         **({"batch_size": min(args.n_envs, cls.Config().batch_size)} if cls.traits.online else {}))
    env, agent = build_env_and_agent(config)
    evaluate = held_out_evaluator(env, args.n_eval_prompts, seed)
    online = cls.traits.online
    unit, granularity = (DEFAULT_TOTAL_RESPONSES, args.n_envs) if online else (len(agent.comparisons), 1)
    points = [evaluation_point(evaluate(agent.trained_lm), 0, 0, length=0.0, budget=0)]
    for stage, length in enumerate(args.floats("lengths")):
        budget = stage_budget(length, unit, granularity)
        # the budget counts from the run's start (the contract's learn_run), so each stage continues the last one
        agent.learn_run(budget, None, budget, progress_bar=False, resumed=stage > 0)
        points.append(evaluation_point(evaluate(agent.trained_lm), stage + 1, 0, length=length, budget=budget))
    for point in points:
        point.pop("samples")
    return {"method": method, "beta_scale": scale, "beta": beta, "seed": seed, "unit": cls.traits.budget_unit,
            "points": points, "config": args.run_config(), "seconds": round(time.time() - started, 1)}


def jobs(args: Args) -> list[Job]:
    """The runs not stored yet (a stored one made with other settings is a :class:`ConfigError` naming it)."""
    todo = []
    for method in args.method_list():
        for scale in args.floats("beta_scales"):
            for seed in parse_ints(args.seeds, "--seeds"):
                path = args.record_path(method, scale, seed)
                if path.is_file():
                    check_stored(path, read_json(path, ("config",), "a direct over-optimisation run"), args.run_config())
                    continue
                todo.append(Job(f"{method} x{scale:g} seed={seed}", train_run, (args, method, scale, seed),
                                partial(atomic_write_json, path)))
    return todo


def overoptimised(run: dict) -> bool:
    """The run's gold rose to a peak after its start and before its last stage, and its last stage fell from the peak by
    more than the noise (:data:`NOISE_Z`; the standard errors from each point's ``gold_reward_std`` over the run's
    ``n_eval_prompts``)."""
    points = run["points"]
    gold = [p["gold_reward"] for p in points]
    peak = int(np.argmax(gold))
    if not 0 < peak < len(gold) - 1:
        return False
    n = run["config"]["n_eval_prompts"]
    noise = NOISE_Z * math.sqrt(points[peak]["gold_reward_std"] ** 2 / n + points[-1]["gold_reward_std"] ** 2 / n)
    return gold[peak] - gold[-1] > noise


def summarize_method(method: str, runs: list[dict]) -> dict:
    """A method's row: Gao's RL form fitted to the gold gain over the SFT policy at every point of its runs, the best
    point, and the runs that over-optimised."""
    kl, gain = gold_gain_points(runs)
    best_run, best = max(((r, p) for r in runs for p in r["points"]), key=lambda rp: rp[1]["gold_reward"])
    return {"method": method, "fit": fit_gao(kl, gain, "rl").as_dict(), "n_runs": len(runs), "max_kl": float(kl.max()),
            "best": {"beta": best_run["beta"], "length": best["length"], "gold_reward": best["gold_reward"],
                     "kl": best["kl"], "well_formed": best["well_formed"]},
            "overoptimised": sorted(f"beta {r['beta']:g}" for r in runs if overoptimised(r))}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| method | runs | best gold (beta, length, KL, well-formed) | Gao fit: alpha, b, R² | fitted peak KL | "
             "runs whose gold rose and then fell beyond the noise |", "|---" * 6 + "|"]
    for r in rows:
        fit, best = r["fit"], r["best"]
        # a peak past the largest KL measured is an extrapolation: the points themselves never turned down
        peak = ("none (no fall)" if fit["peak_kl"] is None else f"{fit['peak_kl']:.1f}" if fit["peak_kl"] <= r["max_kl"]
                else f"beyond the points (KL > {r['max_kl']:.1f})")
        lines.append(f"| {r['method']} | {r['n_runs']} | {best['gold_reward']:.3f} ({best['beta']:g}, {best['length']:g}, "
                     f"{best['kl']:.1f}, {best['well_formed']:.2f}) | {fit['alpha']:.3f}, {fit['b']:.3f}, {fit['r2']:.2f} | "
                     f"{peak} | {len(r['overoptimised'])} of {r['n_runs']}"
                     f"{': ' + ', '.join(r['overoptimised']) if r['overoptimised'] else ''} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], rows: list[dict], path: str | Path, title: str) -> None:
    """One panel per method: gold (solid) and proxy (dashed) against sqrt(KL), one colour per beta, a line through each
    run's stages in order, and the fitted gold curve (black)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(3.8 * len(rows), 3.6), sharey=True, squeeze=False)
    for ax, row in zip(axes[0], rows):
        mine = sorted((r for r in runs if r["method"] == row["method"]), key=lambda r: r["beta"])
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(mine)))
        for run, colour in zip(mine, colours):
            d = np.sqrt(np.clip([p["kl"] for p in run["points"]], 0, None))
            ax.plot(d, [p["gold_reward"] for p in run["points"]], "o-", color=colour, markersize=3, linewidth=1,
                    label=f"beta {run['beta']:g}")
            ax.plot(d, [p["proxy_reward"] for p in run["points"]], "--", color=colour, linewidth=0.8, alpha=0.7)
        start = mine[0]["points"][0]["gold_reward"]
        d_max = max(math.sqrt(max(p["kl"], 0.0)) for r in mine for p in r["points"])
        grid = np.linspace(0.0, d_max, 100)
        fit = row["fit"]
        ax.plot(grid, start + fit["alpha"] * grid - fit["b"] * grid * np.log(np.where(grid > 0, grid, 1.0)), color="black",
                linewidth=1, label="Gao RL fit (gold)")
        ax.set_title(row["method"], fontsize=9)
        ax.set_xlabel("sqrt(KL(pi || pi_ref))", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("gold (solid), proxy (dashed)", fontsize=8)
    save_figure(fig, path, title, dpi=90)


def main(args: Args) -> dict:
    started = start_study(args)
    out_dir = Path(args.out_dir)
    run_all(jobs(args), args.workers, args.ray_settings())
    runs = [read_json(args.record_path(m, s, seed), ("method", "points"), "a direct over-optimisation run")
            for m in args.method_list() for s in args.floats("beta_scales") for seed in parse_ints(args.seeds, "--seeds")]
    rows = [summarize_method(m, [r for r in runs if r["method"] == m]) for m in args.method_list()]
    result = {"args": asdict(args), "rows": rows, "runs": runs, "seconds": round(time.time() - started, 1)}
    atomic_write_json(out_dir / "overoptimisation.json", result)
    table = markdown_table(rows)
    atomic_write_text(out_dir / "overoptimisation.md", f"# Over-optimisation of direct methods, {args.env_id}\n\n{table}")
    plot(runs, rows, out_dir / "overoptimisation.png",
         f"{args.env_id}: gold and proxy vs KL, betas x ({args.beta_scales}) of each default, lengths {args.lengths}")
    print(table)
    print(f"done in {time.time() - started:.0f} s: overoptimisation.json, .md and .png in {out_dir}")
    return result
