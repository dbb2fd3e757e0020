"""Reward-model scaling of over-optimisation (Gao, Schulman & Hilton 2022, https://arxiv.org/abs/2210.10760).

A *cell* of the grid is one proxy reward model (a size and a number of comparisons, :class:`.proxies.ProxySpec`).
For each cell, :func:`summarize_cell` fits Gao's two forms: best-of-n, ``R(d) = d (alpha - b d)`` over the curve of
n = 1 ... n_max chosen by that proxy, and RL, ``R(d) = d (alpha - b ln d)`` over every held-out evaluation point of
the PPO runs (beta 0, several seeds) trained against it; ``d = sqrt(KL)`` and ``R`` is the gold reward gained over
the start (best-of-1, or the run's first point). It also records where the gold reward peaks: the fitted ``d*`` and
the run's own peak (mean over seeds).
"""

from __future__ import annotations

import numpy as np

from .gao import best_of_n_gain_points, fit_gao, gold_gain_points
from .run_store import peak_point
from .tables import mean_std


def summarize_cell(name: str, metrics: dict, best_of_n: list[dict], runs: list[dict]) -> dict:
    """One proxy's row: its size and data, accuracy, both Gao fits and the gold peak of its PPO runs.

    :param metrics: the proxy's training metrics (``spec``, ``parameters``, ``eval_accuracy``, ``gold_agreement``).
    :param best_of_n: its best-of-n curve (:func:`.best_of_n.rank_samples`).
    :param runs: its PPO runs (sweep records, one per seed).
    """
    peaks = [peak_point(r) for r in runs]
    return {
        "name": name, **{k: metrics["spec"][k] for k in ("width", "layers", "n_comparisons")},
        "parameters": metrics["parameters"], "eval_accuracy": metrics["eval_accuracy"],
        "gold_agreement": metrics["gold_agreement"], "best_of_n": best_of_n,
        "best_of_n_fit": fit_gao(*best_of_n_gain_points(best_of_n), form="best_of_n").as_dict(),
        "rl_fit": fit_gao(*gold_gain_points(runs), form="rl").as_dict(),
        "seeds": [r["seed"] for r in runs],
        "rl_gold_start": float(np.mean([r["points"][0]["gold_reward"] for r in runs])),
        "rl_peak_gold": mean_std([p["gold_reward"] for p in peaks]),
        "rl_peak_kl": mean_std([p["kl"] for p in peaks]),
        "rl_final_gold": mean_std([r["points"][-1]["gold_reward"] for r in runs]),
        "rl_final_kl": mean_std([r["points"][-1]["kl"] for r in runs]),
        "rl_final_well_formed": mean_std([r["points"][-1]["well_formed"] for r in runs]),
    }


def _fit_cell(fit: dict) -> str:
    peak = "—" if fit["peak_kl"] is None else f"{fit['peak_kl']:.1f}"
    return f"{fit['alpha']:.2f}, {fit['b']:.2f} ({fit['r2']:.2f}) | {peak}"


def scaling_table(rows: list[dict]) -> str:
    """The grid as a markdown table: one row per proxy (by size, then data)."""
    lines = ["| proxy (width x layers) | parameters | comparisons | held-out accuracy | gold agreement | "
             "best-of-n alpha, b (R²) | fitted peak KL | gold at best-of-max | RL alpha, b (R²) | fitted peak KL | "
             "RL gold peak (KL at peak) | RL gold final (KL) | well-formed final |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["parameters"], r["n_comparisons"])):
        last = r["best_of_n"][-1]
        lines.append(
            f"| {r['width']} x {r['layers']} | {r['parameters']:,} | {r['n_comparisons']:,} | {r['eval_accuracy']:.3f} | "
            f"{r['gold_agreement']:.3f} | {_fit_cell(r['best_of_n_fit'])} | {last['gold_reward']:.3f} (n={last['n']}) | "
            f"{_fit_cell(r['rl_fit'])} | {r['rl_peak_gold'][0]:.2f} ± {r['rl_peak_gold'][1]:.2f} "
            f"({r['rl_peak_kl'][0]:.1f} ± {r['rl_peak_kl'][1]:.1f}) | {r['rl_final_gold'][0]:.2f} ± "
            f"{r['rl_final_gold'][1]:.2f} ({r['rl_final_kl'][0]:.1f}) | {r['rl_final_well_formed'][0]:.2f} |")
    return "\n".join(lines) + "\n"
