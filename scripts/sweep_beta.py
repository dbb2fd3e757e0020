"""Beta sweep: reward hacking made visible (gold vs proxy vs KL). Same as ``rlhf-gym sweep``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("sweep")
