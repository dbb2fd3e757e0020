"""Figures (matplotlib on the Agg backend, no display needed, imported only when a figure is drawn)."""

from __future__ import annotations

from pathlib import Path


def plot_learning_curve(rows: list[dict], path: str | Path, title: str = "RLHF training") -> None:
    """Write :func:`learning_curve_figure` of the learning-curve rows to ``path``."""
    fig = learning_curve_figure(rows, title)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def learning_curve_figure(rows: list[dict], title: str = "RLHF training"):
    """Proxy and gold reward (left axis) and KL (right axis) against responses sampled, from the rows of
    ``curve.jsonl`` (:class:`rlhf_gym.agents.callbacks.LearningCurveCallback`, one per PPO iteration; their
    ``responses``, the unit of ``--total-responses``, not SB3's token ``timesteps``)."""
    plt = pyplot()
    responses = [r["responses"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(responses, [r["proxy_reward"] for r in rows], label="proxy reward r_phi", color="tab:blue")
    if all("gold_reward" in r for r in rows):
        ax.plot(responses, [r["gold_reward"] for r in rows], label="gold reward", color="tab:green")
    ax.set_xlabel("responses sampled")
    ax.set_ylabel("reward")
    kl_ax = ax.twinx()
    kl_ax.plot(responses, [r["kl"] for r in rows], label="KL(pi || pi_ref)", color="tab:red", linestyle="--")
    kl_ax.set_ylabel("KL (nats per response)")
    lines = ax.get_lines() + kl_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display), imported when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, title: str, dpi: int) -> None:
    """Give ``fig`` its title, write it to ``path`` and free it."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
