"""The run store, table and figure of an iterated (online) RLHF study (``rlhf-gym iterate``, ``studies/iterated.py``).

Iterated RLHF (Bai et al. 2022, "Training a Helpful and Harmless Assistant with RLHF", section 4.5; the rounds of
Llama 2, Touvron et al. 2023) repeats Stage 1 -> 2 -> 3 (Ouyang et al. 2022): each round labels samples of the
*current* policy, retrains the reward model on every comparison so far and continues the policy. A study compares
schedules of ``R`` rounds at an equal total of comparisons and of PPO iterations.

Layout under the study's ``out_dir``: one directory per run ``rounds<R>_seed<s>/`` with ``run.json`` (its settings)
and per round ``k = 1..R`` a directory ``round_<k>/`` holding ``pairs.jsonl`` (unlabelled pairs, page labeller only),
``comparisons.jsonl``, ``reward_model/``, ``agent.zip`` and, written last, ``round.json``: the round's record
(``round``, ``config``, ``n_comparisons``, ``comparisons_ill_formed``, ``reward_model`` metrics, ``points``: the
held-out evaluations with the run's global PPO iteration numbers, ``first_round_proxy``, ``seconds``). No SB3 here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlhf_gym.files import read_json
from rlhf_gym.plots import pyplot, save_figure
from .tables import HACKED_WELL_FORMED, hacked_count, mean_std, summarize
from .tables import plus_minus as pm

RUN_FILE, ROUND_FILE = "run.json", "round.json"
COMPARISONS_FILE, PAIRS_FILE, AGENT_FILE, REWARD_DIR = "comparisons.jsonl", "pairs.jsonl", "agent.zip", "reward_model"
ROUND_SEED_STRIDE = 1000
"""Round ``k`` of seed ``s`` samples, labels and initialises its reward model with seed ``1000 s + k``."""


def run_dir(out_dir: str | Path, rounds: int, seed: int) -> Path:
    """The directory of the run with ``rounds`` rounds and seed ``seed``."""
    return Path(out_dir) / f"rounds{rounds}_seed{seed}"


def round_dir(run: Path, k: int) -> Path:
    """The directory of round ``k`` (1-based) of a run."""
    return run / f"round_{k}"


def round_seed(seed: int, k: int) -> int:
    """The seed of round ``k`` of a run of seed ``seed`` (its comparisons' sampling, labels and prompt order)."""
    return ROUND_SEED_STRIDE * seed + k


def round_prompts(train_prompts: list[str], seed: int, k: int) -> list[str]:
    """The train prompts in the order round ``k`` collects its comparisons on (pair ``i``: prompt ``i mod n``)."""
    return random.Random(round_seed(seed, k)).sample(train_prompts, len(train_prompts))


def load_run(out_dir: str | Path, rounds: int, seed: int) -> dict | None:
    """The record of a finished run: its rounds' records and their points in one list (each point tagged with its
    round), the comparisons' ill-formed share per round and the final policy's samples; None while a round is missing.

    :raises DataError: naming a ``round.json`` that is not a round record.
    """
    paths = [round_dir(run_dir(out_dir, rounds, seed), k) / ROUND_FILE for k in range(1, rounds + 1)]
    if not all(p.is_file() for p in paths):
        return None
    records = [read_json(p, ("round", "config", "points", "reward_model"), "an iterated-RLHF round record") for p in paths]
    points = [{**p, "round": r["round"]} for r in records for p in r["points"]]
    return {"rounds": rounds, "seed": seed, "beta": records[0]["config"]["beta"], "points": points,
            "comparisons_ill_formed": [r["comparisons_ill_formed"] for r in records],
            "reward_models": [r["reward_model"] for r in records],
            "first_round_proxy_final": records[-1]["first_round_proxy"], "final_samples": points[-1]["samples"],
            "seconds": round(sum(r["seconds"] for r in records), 1)}


def summarize_schedules(runs: list[dict], bias: Callable[[str, str], float] | None = None,
                        bias_name: str | None = None) -> list[dict]:
    """One row per schedule (number of rounds): :func:`.tables.summarize` of its seeds (start, peak and end of
    training, mean and std), the runs hacked at some evaluation and at the end (a run hacked and then not has been
    pulled back), the round-1 reward model's score of the final samples, per
    round the share of ill-formed responses among the comparisons (the labels a hacked policy's text gets) and, for a
    task whose annotators have a ``bias`` (its feature of a response, e.g. a list's length), its mean over each run's
    final samples."""
    rows = []
    for rounds in sorted({r["rounds"] for r in runs}):
        group = [r for r in runs if r["rounds"] == rounds]
        row = summarize(group)[0]  # one beta per study: one row
        ever = sum(any(p["well_formed"] < HACKED_WELL_FORMED for p in r["points"]) for r in group)
        row.update(rounds=rounds, hacked=hacked_count(group), ever_hacked=ever,
                   # None for iterative DPO, which trains no reward model
                   first_round_proxy_final=(None if group[0]["first_round_proxy_final"] is None
                                            else mean_std([r["first_round_proxy_final"] for r in group])),
                   comparisons_ill_formed=[mean_std(list(shares)) for shares in zip(*(r["comparisons_ill_formed"]
                                                                                      for r in group))])
        if bias is not None:
            row.update(bias_name=bias_name, final_bias=mean_std([np.mean([bias(p, r) for p, r in run["final_samples"]])
                                                                 for run in group]))
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The per-schedule summary as a markdown table (mean ± std over seeds)."""
    biased = "final_bias" in rows[0]
    lines = ["| rounds | seeds | gold start | gold peak (KL) | gold final | proxy final | round-1 proxy final | KL final | "
             "well-formed final | runs hacked: at some point, at the end | ill-formed comparisons, by round |"
             + (f" {rows[0]['bias_name']} (final samples) |" if biased else ""), "|---" * (11 + biased) + "|"]
    for r in rows:
        shares = ", ".join(pm(s) for s in r["comparisons_ill_formed"])
        first = r["first_round_proxy_final"]  # None for iterative DPO (no reward model)
        lines.append(f"| {r['rounds']} | {len(r['seeds'])} | {pm(r['gold_start'])} | {pm(r['gold_peak'])} "
                     f"({r['kl_at_peak'][0]:.1f}) | {pm(r['final_gold_reward'])} | {pm(r['final_proxy_reward'])} | "
                     f"{pm(first) if first else 'n/a'} | {pm(r['final_kl'], 1)} | {pm(r['final_well_formed'])} | "
                     f"{r['ever_hacked']}, {r['hacked']} of {len(r['seeds'])} | {shares} |"
                     + (f" {pm(r['final_bias'])} |" if biased else ""))
    return "\n".join(lines) + "\n"


def plot_iterated(runs: list[dict], path: str | Path, title: str = "") -> None:
    """One panel per schedule: gold reward against sqrt(KL), one line per seed through its evaluations in order, the
    points coloured by round. Last panel: gold reward over PPO iterations, one colour per schedule, one line per seed,
    the round boundaries of the schedule with most rounds dotted."""
    plt = pyplot()
    schedules = sorted({r["rounds"] for r in runs})
    fig, axes = plt.subplots(1, len(schedules) + 1, figsize=(3.6 * (len(schedules) + 1), 3.6), sharey=True, squeeze=False)
    round_colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.8, max(schedules)))
    for ax, rounds in zip(axes[0], schedules):
        for run in (r for r in runs if r["rounds"] == rounds):
            d = np.sqrt(np.clip([p["kl"] for p in run["points"]], 0, None))
            gold = [p["gold_reward"] for p in run["points"]]
            ax.plot(d, gold, color="grey", linewidth=0.8, alpha=0.6)
            ax.scatter(d, gold, s=12, linewidths=0, color=[round_colours[p["round"] - 1] for p in run["points"]])
        for k in range(rounds):
            ax.scatter([], [], s=12, color=round_colours[k], label=f"round {k + 1}")
        ax.set_title(f"{rounds} round{'s' if rounds > 1 else ''}", fontsize=9)
        ax.set_xlabel("sqrt(KL(pi || pi_sft))", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("gold reward (held-out prompts)", fontsize=8)
    ax = axes[0][-1]
    colours = plt.get_cmap("tab10")(np.arange(len(schedules)))
    for rounds, colour in zip(schedules, colours):
        for i, run in enumerate(r for r in runs if r["rounds"] == rounds):
            ax.plot([p["iteration"] for p in run["points"]], [p["gold_reward"] for p in run["points"]], color=colour,
                    linewidth=1, label=f"{rounds} round{'s' if rounds > 1 else ''}" if i == 0 else None)
    most = max(schedules)
    iterations = max(p["iteration"] for r in runs for p in r["points"])
    for k in range(1, most):
        ax.axvline(k * iterations / most, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("PPO iteration", fontsize=8)
    ax.set_title("gold reward over training", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path, title, dpi=90)
