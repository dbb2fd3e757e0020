"""TRL's DPO, RLOO and GRPO trainers on RLHF-v0 with our matched settings, scored by our evaluation; see ``--help``."""

from benchmarks import trl_algorithms
from rlhf_gym.cli import run

if __name__ == "__main__":
    run(trl_algorithms.main, trl_algorithms.Args, trl_algorithms.__doc__, prog="trl_baselines.py")
