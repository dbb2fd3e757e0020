"""Evidence that each suite task's designed reward hack happens. Same as ``rlhf-gym suite-hacks``; see ``--help``."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("suite-hacks")
