"""Iterated (online) RLHF: rounds of collect -> reward model -> policy against one round. Same as ``rlhf-gym iterate``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("iterate")
