"""The benchmarked systems, by name (``--systems``), with what each runs: readable without importing torch
(``rlhf-gym benchmark --help`` lists them); :mod:`rlhf_gym.benchmarks.measure` runs them."""

from __future__ import annotations

from rlhf_gym.agents.critic_free_settings import DEFAULT_GROUP_SIZE

GROUP_SIZE = DEFAULT_GROUP_SIZE
"""Responses per prompt, k, on both sides of the critic-free systems (TRL's ``num_generations``)."""

SYSTEMS = {
    "ours": "rlhf-gym TokenPPO + RLHFVecEnv (value head on the policy trunk)",
    "ours-fixed-length": "rlhf-gym TokenPPO + RLHFVecEnv, every response forced to the full budget (no stop token)",
    "ours-buckets": "rlhf-gym TokenPPO + RLHFVecEnv, the update's forward in up to 4 length buckets",
    "ours-separate-critic": "rlhf-gym TokenPPO, separate value trunk (TRL's layout)",
    "ours-lora": "rlhf-gym TokenPPO training LoRA adapters (PEFT) and the value head; reference = base, adapters off",
    "trl": "TRL PPOTrainer (separate value model)",
    "trl-lora": "TRL PPOTrainer with ours-lora's PEFT adapters on the policy; reference = the policy, adapters off",
    "sb3-per-token": "SB3 PPO + TransformerPolicy on DummyVecEnv(RLHFEnv), one forward per (state, action)",
    "ours-rloo": f"rlhf-gym RLOO + RLHFVecEnv, groups of k = {GROUP_SIZE} responses per prompt",
    "trl-rloo": f"TRL RLOOTrainer, k = {GROUP_SIZE} generations per prompt",
    "ours-grpo": f"rlhf-gym GRPO + RLHFVecEnv, groups of k = {GROUP_SIZE} responses per prompt",
    "trl-grpo": f"TRL GRPOTrainer, k = {GROUP_SIZE} generations per prompt",
    "ours-dpo": "rlhf-gym DPO on rollout-batch fixed comparisons, reference log-probs cached",
    "trl-dpo": "TRL DPOTrainer on the same comparisons, precompute_ref_log_probs=True",
}
"""Every system: name -> what it runs (the description in the report)."""
TRL_SYSTEMS = tuple(name for name in SYSTEMS if name.startswith("trl"))
"""The systems that need the optional ``trl`` package."""
NEW_TRAINER_SYSTEMS = tuple(f"{side}-{algo}" for algo in ("rloo", "grpo", "dpo") for side in ("ours", "trl"))
"""The systems of RLOO, GRPO and DPO (ours and TRL's), which run on the synthetic workloads only."""
