"""Reward-model scaling of over-optimisation (Gao et al. 2022). Same as ``rlhf-gym rm-scaling``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("rm-scaling")
