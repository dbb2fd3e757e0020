"""Train an RLHF policy (PPO or NLPO) on RLHF-v0: the main job. Same as ``rlhf-gym train``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("train")
