"""Mean and 95 % confidence interval over training runs (one per seed) of their summary.json's before/after figures,
as a Markdown table (``mean ± half-width``, Student's t: :mod:`rlhf_gym.statistics`).

Then one row per run (seed, gold reward, well-formed share, KL, PPO iterations, seconds) so that no seed hides in a mean.

    for seed in 0 1 2 3 4; do rlhf-gym train --seed $seed; done
    rlhf-gym summarize                                  # runs/RLHF-v0__train_agent__*
    rlhf-gym summarize --runs 'runs/RLHF-v0__nlpo__*'   # a glob pattern (quoted: the command expands it)
    rlhf-gym summarize --runs runs/a,runs/b             # or comma-separated run directories
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhf_gym.cli import arg
from rlhf_gym.errors import MissingFileError
from rlhf_gym.metrics import EVALUATION_METRICS, format_number
from rlhf_gym.files import read_json
from rlhf_gym.statistics import mean_interval


@dataclass
class Args:
    runs: str = arg("runs/RLHF-v0__train_agent__*",
                    "run directories (each with summary.json): comma-separated, each a directory or a quoted glob pattern")


def run_directories(runs: str) -> list[Path]:
    """The directories named by ``--runs`` (glob patterns expanded, sorted), each holding a summary.json."""
    directories = []
    for pattern in (p.strip() for p in runs.split(",") if p.strip()):
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise MissingFileError(f"--runs: no run directory matches {pattern!r}")
        directories += [Path(m) for m in matches]
    if not directories:
        raise MissingFileError("--runs: no run directory given")
    missing = [str(d) for d in directories if not (d / "summary.json").is_file()]
    if missing:
        raise MissingFileError(f"no summary.json in: {', '.join(missing)}")
    return directories


def main(args: Args) -> str:
    directories = run_directories(args.runs)
    summaries = [read_json(d / "summary.json", ("before", "after", "seconds", "device"), "a run summary") for d in directories]
    algos = sorted({read_json(d / "args.json", (), "a run's arguments").get("algo", "ppo") for d in directories
                    if (d / "args.json").is_file()})
    lines = [f"| metric | before (SFT) | after ({', '.join(algos) or 'trained'}) |", "|---|---|---|"]
    for key in EVALUATION_METRICS:
        if key not in summaries[0]["before"]:
            continue
        cells = [mean_interval([s[stage][key] for s in summaries]).format() for stage in ("before", "after")]
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    seconds = np.array([s["seconds"] for s in summaries])
    table = "\n".join(lines)
    print(f"{len(summaries)} runs; mean ± half-width of the 95 % confidence interval (Student's t)\n\n{table}\n\n"
          f"wall time per run: {seconds.mean():.0f} s (min {seconds.min():.0f}, max {seconds.max():.0f}) on "
          f"{summaries[0]['device']}\n\n{per_run_table(directories, summaries)}")
    return table



def per_run_table(directories: list[Path], summaries: list[dict]) -> str:
    """One Markdown row per run: its seed, final gold reward, well-formed share and KL, iterations and seconds."""
    lines = ["| run | seed | gold reward | well-formed | KL | PPO iterations | seconds |", "|---|---|---|---|---|---|---|"]
    for directory, summary in zip(directories, summaries):
        run_args = read_json(directory / "args.json", (), "a run's arguments") if (directory / "args.json").is_file() else {}
        after = summary["after"]
        lines.append(f"| {directory.name} | {run_args.get('seed', '?')} | {format_number(after['gold_reward'])} | "
                     f"{format_number(after.get('well_formed', float('nan')))} | {format_number(after['kl'], 2)} | "
                     f"{summary.get('iterations', '?')} | {summary['seconds']:.0f} |")
    return "\n".join(lines)
