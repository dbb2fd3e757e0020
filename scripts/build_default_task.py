"""Rebuild the artifacts of the embedded default task (reviews). Same as ``rlhf-gym build-task``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("build-task")
