"""Mean ± std of the before/after figures over training runs. Same as ``rlhf-gym summarize``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("summarize")
