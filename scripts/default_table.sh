#!/usr/bin/env bash
# The README's results table: the default main job over seeds 0-4, then the mean ± its 95 % interval and one row per seed.
#   bash scripts/default_table.sh [OUT_DIR]      (about 2 minutes per seed on 2 CPU cores)
# The README's band over thread counts: run it again with OMP_NUM_THREADS=1 and another OUT_DIR.
set -euo pipefail
out="${1:-runs/default_table}"
for seed in 0 1 2 3 4; do
    python scripts/train_agent.py --seed "$seed" --out-dir "$out" --no-progress-bar
done
python scripts/summarize_runs.py --runs "$out/RLHF-v0__train_agent__*"
