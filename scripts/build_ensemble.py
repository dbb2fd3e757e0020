"""Build the reward-model ensemble of the reviews task. Same as ``rlhf-gym build-ensemble``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("build-ensemble")
