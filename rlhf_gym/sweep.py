"""Reward over-optimisation, measured: beta sweeps, best-of-n and the Gao et al. (2022) fit.

Gao, Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization"
(https://arxiv.org/abs/2210.10760). With ``d = sqrt(KL(pi || pi_ref))``, the gold reward gained over the
initial policy follows

* for RL:          ``R(d) = d (alpha - b ln d)``  (rises, peaks at ``d* = exp(alpha / b - 1)``, falls);
* for best-of-n:   ``KL_bon = ln n - (n - 1) / n`` (the analytic KL of Stiennon et al. 2020).

``R(d)`` is linear in ``(alpha, b)``, so the fit is ordinary least squares on the features ``(d, -d ln d)``.
This module is framework-agnostic (no SB3): the training loop lives in ``scripts/sweep_beta.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .generation import generate_texts
from .scoring import checked_scores
from .utils import atomic_write_json

METRICS = ("proxy_reward", "gold_reward", "kl", "well_formed", "response_length", "distinct_2")


# ------------------------------------------------------------------------------------- Gao et al. fit
def gao_rl(d: np.ndarray, alpha: float, b: float) -> np.ndarray:
    """``R(d) = d (alpha - b ln d)``, with ``R(0) = 0``."""
    d = np.asarray(d, dtype=np.float64)
    log_d = np.log(np.where(d > 0, d, 1.0))
    return d * (alpha - b * log_d)


@dataclass
class GaoFit:
    """Least-squares fit of :func:`gao_rl`; ``peak_d`` is the ``d`` of the fitted maximum (None if ``b <= 0``)."""

    alpha: float
    b: float
    r2: float
    n_points: int

    @property
    def peak_d(self) -> float | None:
        return float(np.exp(self.alpha / self.b - 1.0)) if self.b > 0 else None

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_d": self.peak_d, "peak_kl": None if self.peak_d is None else self.peak_d ** 2}


def fit_gao(kl: np.ndarray, gain: np.ndarray) -> GaoFit:
    """Fit ``gain = d (alpha - b ln d)`` with ``d = sqrt(max(kl, 0))`` by linear least squares; R² about the mean."""
    d = np.sqrt(np.clip(np.asarray(kl, dtype=np.float64), 0.0, None))
    y = np.asarray(gain, dtype=np.float64)
    features = np.stack([d, -d * np.log(np.where(d > 0, d, 1.0))], axis=1)
    (alpha, b), *_ = np.linalg.lstsq(features, y, rcond=None)
    residual = float(((y - features @ np.array([alpha, b])) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return GaoFit(float(alpha), float(b), 1.0 - residual / total if total > 0 else float("nan"), len(y))


# ------------------------------------------------------------------------------------------ best-of-n
def best_of_n_kl(n: int) -> float:
    """``KL(best-of-n || pi) = ln n - (n - 1) / n`` nats."""
    return math.log(n) - (n - 1) / n


def best_of_n_weights(n_samples: int, n: int) -> np.ndarray:
    """``w_i = C(i - 1, n - 1) / C(N, n)``: probability that the i-th lowest of N samples is the best of n drawn.

    Averaging with these weights over all N samples (sorted by the selection score) is the unbiased estimator
    of ``E[value of the best-of-n sample]`` (Nakano et al. 2021, appendix).
    """
    if not 1 <= n <= n_samples:
        raise ValueError(f"n must be in [1, {n_samples}], got {n}")
    total = math.comb(n_samples, n)
    return np.array([math.comb(i, n - 1) / total for i in range(n_samples)])


def best_of_n_curve(proxy: np.ndarray, values: dict[str, np.ndarray], ns: list[int]) -> list[dict]:
    """Expected proxy reward and ``values`` (e.g. gold reward) of the best-of-n response chosen by ``proxy``, per n.

    :param proxy: [prompts, N] selection scores of N samples per prompt.
    :param values: name -> [prompts, N] values of the same samples.
    """
    order = np.argsort(proxy, axis=1, kind="stable")
    columns = {"proxy_reward": proxy, **values}
    ranked = {name: np.take_along_axis(np.asarray(v, dtype=np.float64), order, axis=1) for name, v in columns.items()}
    rows = []
    for n in ns:
        w = best_of_n_weights(proxy.shape[1], n)
        rows.append({"n": n, "kl": best_of_n_kl(n), **{name: float((v @ w).mean()) for name, v in ranked.items()}})
    return rows


def sample_best_of_n(policy, tokenizer, prompts: list[str], reward_fn, task, n_max: int = 64, max_new_tokens: int = 24,
                     seed: int = 20_000) -> list[dict]:
    """Sample ``n_max`` responses per prompt from ``policy`` and return :func:`best_of_n_curve` for n = 1, 2, 4, ..., n_max.

    The values averaged are the task's gold reward and well-formed share.
    """
    if n_max < 1 or n_max & (n_max - 1):
        raise ValueError(f"n_max must be a power of two, got {n_max}")
    repeated = [p for p in prompts for _ in range(n_max)]
    responses = generate_texts(policy, tokenizer, repeated, max_new_tokens, seed=seed)
    shape = (len(prompts), n_max)
    proxy = checked_scores(reward_fn(repeated, responses), repeated).reshape(shape)
    values = {"gold_reward": np.array([task.gold_reward(p, r) for p, r in zip(repeated, responses)]).reshape(shape),
              "well_formed": np.array([task.is_well_formed(p, r) for p, r in zip(repeated, responses)], float).reshape(shape)}
    return best_of_n_curve(proxy, values, [2 ** k for k in range(n_max.bit_length())])


def interpolate_best_of_n(curve: list[dict], kl: float) -> float | None:
    """Gold reward of best-of-n at ``kl`` (linear in ``sqrt(KL)``); None beyond the curve's largest n."""
    d = np.sqrt([r["kl"] for r in curve])
    if kl > curve[-1]["kl"]:
        return None
    return float(np.interp(math.sqrt(max(kl, 0.0)), d, [r["gold_reward"] for r in curve]))


# -------------------------------------------------------------------------------------- sweep results
def run_path(out_dir: str | Path, beta: float, seed: int) -> Path:
    return Path(out_dir) / "runs" / f"beta{beta:g}_seed{seed}.json"


def save_run(out_dir: str | Path, record: dict) -> None:
    """Store one finished (beta, seed) run atomically, so a crash never leaves half a file and a rerun skips it."""
    atomic_write_json(run_path(out_dir, record["beta"], record["seed"]), record)


def load_runs(out_dir: str | Path) -> list[dict]:
    """Every finished run under ``out_dir/runs``, ordered by (beta, seed)."""
    runs = [json.loads(p.read_text()) for p in (Path(out_dir) / "runs").glob("beta*_seed*.json")]
    return sorted(runs, key=lambda r: (r["beta"], r["seed"]))


def gold_gain_points(runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(KL, gold reward minus the run's gold reward before training) over every evaluation point of ``runs``."""
    kl = [p["kl"] for r in runs for p in r["points"]]
    gain = [p["gold_reward"] - r["points"][0]["gold_reward"] for r in runs for p in r["points"]]
    return np.array(kl), np.array(gain)


def peak_point(run: dict) -> dict:
    """The evaluation point with the highest gold reward."""
    return max(run["points"], key=lambda p: p["gold_reward"])


def summarize(runs: list[dict]) -> list[dict]:
    """One row per beta: mean and std over seeds of the start, peak and end of training, and the Gao fit."""
    rows = []
    for beta in sorted({r["beta"] for r in runs}):
        group = [r for r in runs if r["beta"] == beta]

        def stat(values: list[float]) -> list[float]:
            return [float(np.mean(values)), float(np.std(values))]

        row = {"beta": beta, "seeds": [r["seed"] for r in group],
               "gold_start": stat([r["points"][0]["gold_reward"] for r in group]),
               "gold_peak": stat([peak_point(r)["gold_reward"] for r in group]),
               "kl_at_peak": stat([peak_point(r)["kl"] for r in group]),
               "iteration_at_peak": stat([peak_point(r)["iteration"] for r in group]),
               "iterations": group[0]["points"][-1]["iteration"]}
        for key in METRICS:
            row[f"final_{key}"] = stat([r["points"][-1][key] for r in group])
        row["gao_fit"] = fit_gao(*gold_gain_points(group)).as_dict()
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The per-beta summary as a markdown table (mean ± std over seeds)."""
    def pm(pair: list[float], digits: int = 2) -> str:
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    lines = [("| beta | seeds | gold start | gold peak (KL, iteration) | gold final | proxy final | KL final | "
             "well-formed final | Gao alpha, b (R²) |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fit = r["gao_fit"]
        lines.append(f"| {r['beta']:g} | {len(r['seeds'])} | {pm(r['gold_start'])} | {pm(r['gold_peak'])} "
                     f"({r['kl_at_peak'][0]:.1f}, {r['iteration_at_peak'][0]:.0f}) | {pm(r['final_gold_reward'])} | "
                     f"{pm(r['final_proxy_reward'])} | {pm(r['final_kl'], 1)} | {pm(r['final_well_formed'])} | "
                     f"{fit['alpha']:.2f}, {fit['b']:.2f} ({fit['r2']:.2f}) |")
    return "\n".join(lines) + "\n"


def best_of_n_table(curve: list[dict]) -> str:
    """Best-of-n rows as a markdown table."""
    lines = ["| n | KL (nats) | proxy reward | gold reward | well-formed |", "|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['kl']:.2f} | {r['proxy_reward']:.3f} | {r['gold_reward']:.3f} | "
              f"{r.get('well_formed', float('nan')):.3f} |" for r in curve]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ figure
def binned_by_kl(runs: list[dict], key: str, per_bin: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(mean sqrt(KL), mean ``key``) over groups of ``per_bin`` evaluation points of ``runs``, pooled and sorted by KL.

    Seeds reach a given KL at different iterations (and some fall back), so the reward as a function of KL is
    averaged along KL, not along time.
    """
    d = np.sqrt(np.clip([p["kl"] for r in runs for p in r["points"]], 0, None))
    y = np.array([p[key] for r in runs for p in r["points"]])
    groups = np.array_split(np.argsort(d, kind="stable"), max(1, len(d) // per_bin))
    return np.array([d[g].mean() for g in groups]), np.array([y[g].mean() for g in groups])


def plot_sweep(runs: list[dict], path: str | Path, best_of_n: list[dict] | None = None, title: str = "") -> None:
    """Left: gold (solid) and proxy (dashed) reward against sqrt(KL), one colour per beta (lines: :func:`binned_by_kl`
    over all seeds' evaluation points; dots: every point's gold reward), best-of-n in black, the Gao fit of the
    smallest beta.
    Right: gold reward at the end of training and at its peak against beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = sorted({r["beta"] for r in runs})
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(betas)))
    fig, (ax, ax_beta) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    for beta, colour in zip(betas, colours):
        group = [r for r in runs if r["beta"] == beta]
        points = [p for r in group for p in r["points"]]
        ax.scatter(np.sqrt(np.clip([p["kl"] for p in points], 0, None)), [p["gold_reward"] for p in points], s=8,
                   color=colour, alpha=0.5, linewidths=0)
        ax.plot(*binned_by_kl(group, "gold_reward"), "-o", color=colour, markersize=3, linewidth=1.6, label=f"PPO beta={beta:g}")
        ax.plot(*binned_by_kl(group, "proxy_reward"), "--", color=colour, linewidth=1)
    if best_of_n:
        d = np.sqrt([r["kl"] for r in best_of_n])
        ax.plot(d, [r["gold_reward"] for r in best_of_n], "-s", color="black", markersize=3,
                label=f"best-of-n, n=1..{best_of_n[-1]['n']}")
        ax.plot(d, [r["proxy_reward"] for r in best_of_n], "--", color="black", linewidth=1)
    smallest = [r for r in runs if r["beta"] == betas[0]]
    fit = fit_gao(*gold_gain_points(smallest))
    grid = np.linspace(0, float(np.sqrt(max(p["kl"] for r in smallest for p in r["points"]))), 100)
    start = float(np.mean([r["points"][0]["gold_reward"] for r in smallest]))
    ax.plot(grid, start + gao_rl(grid, fit.alpha, fit.b), ":", color="red", linewidth=1.5,
            label=f"Gao fit, beta={betas[0]:g}: alpha={fit.alpha:.2f}, b={fit.b:.2f}, R²={fit.r2:.2f}")
    ax.set_xlabel("sqrt(KL(pi || pi_ref))  (sqrt nats per response)")
    ax.set_ylabel("reward: gold (solid), proxy (dashed)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    ax.grid(alpha=0.3)

    finals = [[r["points"][-1]["gold_reward"] for r in runs if r["beta"] == b] for b in betas]
    peaks = [[peak_point(r)["gold_reward"] for r in runs if r["beta"] == b] for b in betas]
    ax_beta.errorbar(betas, [np.mean(v) for v in finals], [np.std(v) for v in finals], fmt="-o", capsize=3,
                     color="tab:green", label="gold, end of training (mean ± std)")
    ax_beta.plot(betas, [np.mean(v) for v in peaks], "^", color="tab:green", fillstyle="none", label="gold, peak during training")
    if best_of_n:
        ax_beta.axhline(best_of_n[-1]["gold_reward"], color="black", linestyle=":",
                        label=f"best-of-{best_of_n[-1]['n']} (KL {best_of_n[-1]['kl']:.1f})")
    positive = [b for b in betas if b > 0]
    ax_beta.set_xscale("symlog", linthresh=min(positive, default=0.01))
    ax_beta.set_xticks(betas, [f"{b:g}" for b in betas])
    ax_beta.minorticks_off()
    ax_beta.set_xlabel("beta (KL coefficient)")
    ax_beta.set_ylabel("gold reward (held-out prompts)")
    ax_beta.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    ax_beta.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_training(runs: list[dict], path: str | Path, title: str = "") -> None:
    """One panel per beta: gold (green) and proxy (blue) reward and sqrt(KL) (grey, right axis) over PPO iterations,
    one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = sorted({r["beta"] for r in runs})
    fig, axes = plt.subplots(1, len(betas), figsize=(2.6 * len(betas), 3.2), sharey=True, squeeze=False)
    d_max = float(np.sqrt(max(max(p["kl"] for p in r["points"]) for r in runs)))
    for ax, beta in zip(axes[0], betas):
        kl_ax = ax.twinx()
        for r in (r for r in runs if r["beta"] == beta):
            it = [p["iteration"] for p in r["points"]]
            ax.plot(it, [p["gold_reward"] for p in r["points"]], color="tab:green", linewidth=1.2)
            ax.plot(it, [p["proxy_reward"] for p in r["points"]], color="tab:blue", linewidth=1, linestyle="--")
            kl_ax.plot(it, np.sqrt(np.clip([p["kl"] for p in r["points"]], 0, None)), color="grey", linewidth=0.8, alpha=0.7)
        kl_ax.set_ylim(0, d_max * 1.05)
        if beta != betas[-1]:
            kl_ax.set_yticklabels([])
        ax.set_title(f"beta={beta:g}", fontsize=9)
        ax.set_xlabel("PPO iteration", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("gold (green), proxy (blue dashed)", fontsize=8)
    kl_ax.set_ylabel("sqrt(KL) (grey)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_comparison(sweeps: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """One panel per beta that every sweep ran: gold reward against sqrt(KL) (:func:`binned_by_kl`), one colour per
    sweep (e.g. the single reward model against the ensemble objectives). Proxies differ in scale, so only gold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = sorted(set.intersection(*({r["beta"] for r in runs} for runs in sweeps.values())))
    fig, axes = plt.subplots(1, len(betas), figsize=(3.4 * len(betas), 3.4), sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10")(np.arange(len(sweeps)))
    for ax, beta in zip(axes[0], betas):
        for (label, runs), colour in zip(sweeps.items(), colours):
            group = [r for r in runs if r["beta"] == beta]
            ax.plot(*binned_by_kl(group, "gold_reward"), "-o", color=colour, markersize=3, label=label)
        ax.set_title(f"beta={beta:g}", fontsize=9)
        ax.set_xlabel("sqrt(KL)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("gold reward (held-out prompts)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
