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
from .tables import HACKED_WELL_FORMED, mean_std
from .tables import plus_minus as pm


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
        "rl_fit_well_formed": fit_gao(*gold_gain_points(well_formed_points(runs)), form="rl").as_dict(),
        "seeds": [r["seed"] for r in runs],
        "rl_gold_start": float(np.mean([r["points"][0]["gold_reward"] for r in runs])),
        "rl_peak_gold": mean_std([p["gold_reward"] for p in peaks]),
        "rl_peak_kl": mean_std([p["kl"] for p in peaks]),
        "rl_final_gold": mean_std([r["points"][-1]["gold_reward"] for r in runs]),
        "rl_final_kl": mean_std([r["points"][-1]["kl"] for r in runs]),
        "rl_final_well_formed": mean_std([r["points"][-1]["well_formed"] for r in runs]),
    }


def well_formed_points(runs: list[dict]) -> list[dict]:
    """``runs`` with only their evaluation points before the collapse: those with at least
    :data:`~.tables.HACKED_WELL_FORMED` of their samples well-formed (the first point, before training, always is)."""
    return [{**r, "points": [p for p in r["points"] if p["well_formed"] >= HACKED_WELL_FORMED]} for r in runs]


def _fit_cell(fit: dict) -> str:
    peak = "—" if fit["peak_kl"] is None else f"{fit['peak_kl']:.1f}"
    return f"{fit['alpha']:.2f}, {fit['b']:.2f} ({fit['r2']:.2f}) | {peak}"


def scaling_table(rows: list[dict]) -> str:
    """The grid as two markdown tables, one row per proxy (by size, then data): the proxies and best-of-n; PPO."""
    rows = sorted(rows, key=lambda r: (r["parameters"], r["n_comparisons"]))
    proxies = ["| proxy (width x layers) | parameters | comparisons | held-out accuracy | gold agreement | "
               "best-of-n alpha, b (R²) | fitted peak KL | gold gained at best-of-max |", "|---" * 8 + "|"]
    ppo = ["| proxy | comparisons | RL alpha, b (R²), all points | fitted peak KL | the same, well-formed points only "
           "| fitted peak KL | gold peak (KL at peak) | gold final (KL) | well-formed final |", "|---" * 9 + "|"]
    for r in rows:
        last, first = r["best_of_n"][-1], r["best_of_n"][0]
        proxies.append(f"| {r['width']} x {r['layers']} | {r['parameters']:,} | {r['n_comparisons']:,} | "
                       f"{r['eval_accuracy']:.3f} | {r['gold_agreement']:.3f} | {_fit_cell(r['best_of_n_fit'])} | "
                       f"{last['gold_reward'] - first['gold_reward']:.3f} (n={last['n']}) |")
        ppo.append(f"| {r['width']} x {r['layers']} | {r['n_comparisons']:,} | {_fit_cell(r['rl_fit'])} | "
                   f"{_fit_cell(r['rl_fit_well_formed'])} | {pm(r['rl_peak_gold'])} ({pm(r['rl_peak_kl'], 1)}) | "
                   f"{pm(r['rl_final_gold'])} ({r['rl_final_kl'][0]:.1f}) | {r['rl_final_well_formed'][0]:.2f} |")
    return "\n".join(proxies) + "\n\nPPO at beta 0 against each proxy (mean ± std over seeds):\n\n" + "\n".join(ppo) + "\n"
