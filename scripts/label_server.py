"""Serve the labelling page where people judge pairs of responses. Same as ``rlhf-gym label``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("label")
