"""Diverse reward-model ensembles against over-optimisation (Coste et al. 2023). Same as
``rlhf-gym diverse-ensembles``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("diverse-ensembles")
