"""Speed benchmark: TokenPPO vs TRL's PPOTrainer vs per-token SB3 PPO. Same as ``rlhf-gym benchmark``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("benchmark")
