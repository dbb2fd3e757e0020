"""Figures of a beta sweep (matplotlib, no display needed): reward against sqrt(KL), over training, sweep against sweep.

Reward is drawn against ``sqrt(KL)``, the axis on which Gao et al. (2022) state their law (:mod:`.gao`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlhf_gym.plots import pyplot, save_figure

from .gao import GaoFit, best_of_n_gain_points, fit_gao, gao_rl, gold_gain_points
from .run_store import peak_point


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
    plt = pyplot()
    betas = sorted({r["beta"] for r in runs})
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(betas)))
    fig, (ax, ax_beta) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    for beta, colour in zip(betas, colours):
        group = [r for r in runs if r["beta"] == beta]
        points = [p for r in group for p in r["points"]]
        ax.scatter(np.sqrt(np.clip([p["kl"] for p in points], 0, None)), [p["gold_reward"] for p in points], s=8,
                   color=colour, alpha=0.5, linewidths=0)
        ax.plot(*binned_by_kl(group, "gold_reward"), "-o", color=colour, markersize=3, linewidth=1.6,
                label=f"PPO beta={beta:g}")
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
    ax_beta.plot(betas, [np.mean(v) for v in peaks], "^", color="tab:green", fillstyle="none",
                 label="gold, peak during training")
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
    save_figure(fig, path, title, dpi=90)


def plot_training(runs: list[dict], path: str | Path, title: str = "") -> None:
    """One panel per beta: gold (green) and proxy (blue) reward and sqrt(KL) (grey, right axis) over PPO iterations,
    one line per seed."""
    plt = pyplot()
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
    save_figure(fig, path, title, dpi=80)


def plot_comparison(sweeps: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """One panel per beta that every sweep ran: gold reward against sqrt(KL) (:func:`binned_by_kl`), one colour per
    sweep (e.g. the single reward model against the ensemble objectives). Proxies differ in scale, so only gold."""
    betas = sorted(set.intersection(*({r["beta"] for r in runs} for runs in sweeps.values())))
    plot_groups({f"beta={beta:g}": {label: [r for r in runs if r["beta"] == beta] for label, runs in sweeps.items()}
                 for beta in betas}, path, title)


def plot_groups(panels: dict[str, dict[str, list[dict]]], path: str | Path, title: str = "") -> None:
    """One panel per group: gold reward against sqrt(KL) (:func:`binned_by_kl`), one colour per set of runs in it
    (the same label, the same colour in every panel)."""
    plt = pyplot()
    labels = list(dict.fromkeys(label for sweeps in panels.values() for label in sweeps))
    colours = dict(zip(labels, plt.get_cmap("tab10")(np.arange(len(labels)) % 10)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), sharey=True, squeeze=False)
    for ax, (name, sweeps) in zip(axes[0], panels.items()):
        for label, runs in sweeps.items():
            ax.plot(*binned_by_kl(runs, "gold_reward"), "-o", color=colours[label], markersize=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("sqrt(KL)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("gold reward (held-out prompts)", fontsize=8)
    save_figure(fig, path, title, dpi=80)


def plot_scaling(rows: list[dict], runs: dict[str, list[dict]], path: str | Path, title: str = "") -> None:
    """Gao et al.'s Figure 1 for a grid of proxies: gold reward gained against sqrt(KL), best-of-n (top row) and RL
    (bottom row), one column per number of comparisons, one colour per proxy size; dots are measurements (every
    best-of-n n; every evaluation point of every seed), lines the fitted form.

    :param rows: :func:`.scaling.summarize_cell` rows.
    :param runs: proxy name -> its PPO runs (for the dots of the RL row).
    """
    plt = pyplot()
    sizes = sorted({r["parameters"] for r in rows})
    data = sorted({r["n_comparisons"] for r in rows})
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(sizes)))
    fig, axes = plt.subplots(2, len(data), figsize=(4.2 * len(data), 7.0), squeeze=False, sharey="row")
    for column, n in enumerate(data):
        for r in (r for r in rows if r["n_comparisons"] == n):
            colour = colours[sizes.index(r["parameters"])]
            label = f"{r['width']}x{r['layers']} ({r['parameters'] / 1e3:.0f}k)"
            for row, (kl, gain, fit) in enumerate([(*best_of_n_gain_points(r["best_of_n"]), r["best_of_n_fit"]),
                                                   (*gold_gain_points(runs[r["name"]]), r["rl_fit"])]):
                ax = axes[row][column]
                d = np.sqrt(np.clip(kl, 0, None))
                ax.scatter(d, gain, s=8 if row else 14, color=colour, alpha=0.5 if row else 0.9)
                grid = np.linspace(0.0, d.max(), 100)
                ax.plot(grid, GaoFit(fit["alpha"], fit["b"], fit["r2"], fit["n_points"], fit["form"]).predict(grid),
                        color=colour, linewidth=1.5, label=f"{label}, R² {fit['r2']:.2f}")
        for row, name in enumerate(("best-of-n: d (alpha - b d)", "PPO, beta 0: d (alpha - b ln d)")):
            ax = axes[row][column]
            ax.set_title(f"{name}\nproxy trained on {n:,} comparisons", fontsize=8)
            ax.axhline(0.0, color="grey", linewidth=0.5)
            ax.set_xlabel("d = sqrt(KL(pi || pi_SFT)) (nats^0.5)", fontsize=8)
            ax.legend(fontsize=6)
    for row in range(2):
        axes[row][0].set_ylabel("gold reward gained (held-out prompts)", fontsize=8)
    save_figure(fig, path, title, dpi=80)


def plot_coefficients(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Gao et al.'s coefficient plots: alpha and b of both forms against the proxy's parameters (log scale), one line
    per number of comparisons; and where the gold reward peaks (KL) against the proxy's parameters."""
    plt = pyplot()
    data = sorted({r["n_comparisons"] for r in rows})
    colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.8, len(data)))
    fig, axes = plt.subplots(2, 3, figsize=(12.0, 6.5), squeeze=False)
    for colour, n in zip(colours, data):
        group = sorted((r for r in rows if r["n_comparisons"] == n), key=lambda r: r["parameters"])
        x = [r["parameters"] for r in group]
        for row, key in enumerate(("best_of_n_fit", "rl_fit")):
            for column, coefficient in enumerate(("alpha", "b")):
                axes[row][column].plot(x, [r[key][coefficient] for r in group], "o-", color=colour,
                                       label=f"{n:,} comparisons")
        fitted = [r["best_of_n_fit"]["peak_kl"] for r in group]
        axes[0][2].plot(x, [np.nan if k is None else k for k in fitted], "o-", color=colour, label=f"{n:,} comparisons")
        axes[1][2].errorbar(x, [r["rl_peak_kl"][0] for r in group], yerr=[r["rl_peak_kl"][1] for r in group], fmt="o-",
                            color=colour, capsize=3, label=f"{n:,} comparisons")
    names = [["best-of-n alpha", "best-of-n b", "best-of-n: fitted peak KL"],
             ["RL alpha", "RL b", "PPO: KL at the gold peak (runs, mean ± std)"]]
    sizes = sorted({r["parameters"] for r in rows})
    for row in range(2):
        for column in range(3):
            ax = axes[row][column]
            ax.set_xscale("log")
            ax.set_xticks(sizes, [f"{p / 1e3:.0f}k" for p in sizes])  # the proxies' own sizes, not the log grid's
            ax.minorticks_off()
            ax.set_title(names[row][column], fontsize=9)
            ax.set_xlabel("proxy parameters", fontsize=8)
            ax.legend(fontsize=6)
    save_figure(fig, path, title, dpi=80)
