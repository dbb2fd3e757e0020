"""Every RLHF method on one task at a matched budget, scored by the benchmark protocol. Same as ``rlhf-gym leaderboard``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("leaderboard")
