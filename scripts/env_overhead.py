"""The batched env's own cost per step against policy forward passes. Same as ``rlhf-gym env-overhead``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("env-overhead")
