"""Mean ± std over runs of train_agent.py (one per seed): the before/after figures of their summary.json.

    for seed in 0 1 2; do python scripts/train_agent.py --seed $seed; done
    python scripts/summarize_runs.py runs/RLHF-v0__train_agent__*
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rlhf_gym.metrics import EVALUATION_METRICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with summary.json)")
    args = parser.parse_args()
    missing = [str(r) for r in args.runs if not (r / "summary.json").is_file()]
    if missing:
        parser.error(f"no summary.json in: {', '.join(missing)}")
    summaries = [json.loads((r / "summary.json").read_text()) for r in args.runs]
    print(f"{len(summaries)} runs\n")
    algos = sorted({json.loads((r / "args.json").read_text()).get("algo", "ppo") for r in args.runs
                    if (r / "args.json").is_file()})
    print(f"| metric | before (SFT) | after ({', '.join(algos) or 'trained'}) |\n|---|---|---|")
    for key in EVALUATION_METRICS:
        if key not in summaries[0]["before"]:
            continue
        before = np.array([s["before"][key] for s in summaries])
        after = np.array([s["after"][key] for s in summaries])
        print(f"| {key} | {before.mean():.3f} ± {before.std():.3f} | {after.mean():.3f} ± {after.std():.3f} |")
    seconds = np.array([s["seconds"] for s in summaries])
    print(f"\nwall time per run: {seconds.mean():.0f} ± {seconds.std():.0f} s on {summaries[0]['device']}")


if __name__ == "__main__":
    main()
