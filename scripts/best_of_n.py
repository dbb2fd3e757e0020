"""Best-of-n baseline from the SFT policy, chosen by the proxy reward. Same as ``rlhf-gym best-of-n``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("best-of-n")
