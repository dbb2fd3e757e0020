"""Train an RLHF policy on RLHF-v0: ``python scripts/train_agent.py --help`` (the same as ``rlhf-gym train``)."""

from agents.train import Args, main
from rlhf_gym.cli import run

if __name__ == "__main__":
    run(main, Args, __import__("agents.train").train.__doc__)
