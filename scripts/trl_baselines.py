"""TRL's DPO, RLOO, GRPO, online DPO, KTO and SimPO trainers on RLHF-v0 with our matched settings, scored by our
evaluation. Same as ``rlhf-gym trl-baselines`` (needs the ``bench`` extra)."""

from rlhf_gym.cli import run_command

if __name__ == "__main__":
    run_command("trl-baselines")
