"""Stage 1: sample pairs of responses and record which one a labeler prefers. Same as ``rlhf-gym collect``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("collect")
