"""The run store of a beta sweep: one JSON record per finished (beta, seed) run, written atomically.

A record is ``{"beta", "seed", "config", "points", "train_curve", "timesteps", "seconds"}``; ``points`` are the
held-out evaluations along training (``iteration``, ``timesteps``, the evaluation metrics and sample texts), the
first before any update. A rerun of the sweep skips every (beta, seed) whose record exists.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_gym.files import atomic_write_json, read_json


def run_path(out_dir: str | Path, beta: float, seed: int) -> Path:
    """Where the record of the (beta, seed) run of the sweep in ``out_dir`` is stored."""
    return Path(out_dir) / "runs" / f"beta{beta:g}_seed{seed}.json"


def save_run(out_dir: str | Path, record: dict) -> None:
    """Store one finished (beta, seed) run atomically, so a crash never leaves half a file and a rerun skips it."""
    atomic_write_json(run_path(out_dir, record["beta"], record["seed"]), record)


def load_runs(out_dir: str | Path) -> list[dict]:
    """Every finished run under ``out_dir/runs``, ordered by (beta, seed); :class:`DataError` naming a malformed record."""
    runs = [read_json(p, ("beta", "seed", "points"), "a sweep run record")
            for p in (Path(out_dir) / "runs").glob("beta*_seed*.json")]
    return sorted(runs, key=lambda r: (r["beta"], r["seed"]))


def peak_point(run: dict) -> dict:
    """The evaluation point with the highest gold reward."""
    return max(run["points"], key=lambda p: p["gold_reward"])
