"""Score a saved agent on held-out prompts: the benchmark's evaluation protocol. Same as ``rlhf-gym evaluate``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("evaluate")
