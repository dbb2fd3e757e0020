"""Stage 2: train a Bradley-Terry reward model on preference data. Same as ``rlhf-gym train-rm``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("train-rm")
