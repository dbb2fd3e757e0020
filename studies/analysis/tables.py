"""Markdown tables of a beta sweep (mean ± std over seeds, per beta) and of a best-of-n curve."""

from __future__ import annotations

import numpy as np

from rlhf_gym.metrics import EVALUATION_METRICS, format_number
from .gao import fit_gao, gold_gain_points
from .run_store import peak_point


HACKED_WELL_FORMED = 0.5
"""A run ends *hacked* when fewer than this share of its final held-out responses are well-formed."""


def mean_std(values: list[float]) -> list[float]:
    """``[mean, std]`` over seeds."""
    return [float(np.mean(values)), float(np.std(values))]


def plus_minus(pair: list[float], digits: int = 2) -> str:
    """``"mean ± std"`` of a :func:`mean_std` pair."""
    return f"{format_number(pair[0], digits)} ± {format_number(pair[1], digits)}"


def hacked_count(runs: list[dict]) -> int:
    """Runs whose last evaluation is mostly ill-formed (:data:`HACKED_WELL_FORMED`)."""
    return sum(r["points"][-1]["well_formed"] < HACKED_WELL_FORMED for r in runs)


def summarize(runs: list[dict]) -> list[dict]:
    """One row per beta: mean and std over seeds of the start, peak and end of training, and the Gao fit."""
    rows = []
    for beta in sorted({r["beta"] for r in runs}):
        group = [r for r in runs if r["beta"] == beta]

        row = {"beta": beta, "seeds": [r["seed"] for r in group],
               "gold_start": mean_std([r["points"][0]["gold_reward"] for r in group]),
               "gold_peak": mean_std([peak_point(r)["gold_reward"] for r in group]),
               "kl_at_peak": mean_std([peak_point(r)["kl"] for r in group]),
               "iteration_at_peak": mean_std([peak_point(r)["iteration"] for r in group]),
               "iterations": group[0]["points"][-1]["iteration"]}
        for key in EVALUATION_METRICS:
            row[f"final_{key}"] = mean_std([r["points"][-1][key] for r in group])
        row["gao_fit"] = fit_gao(*gold_gain_points(group)).as_dict()
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The per-beta summary as a markdown table (mean ± std over seeds)."""
    pm = plus_minus
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
