"""Speed benchmarks of rlhf-gym: the same work through our trainers and TRL's (PPO, RLOO, GRPO, DPO) and per-token SB3 PPO.

One concept per module: ``clock`` (the phase clock), ``workloads`` (the work and its locally built models),
``protocol`` (what a system is asked to run and what it returns), ``ours``, ``trl`` and ``sb3`` (one compared system
each), ``critic_free`` and ``trl_online`` (ours and TRL's RLOO / GRPO), ``dpo`` (ours and TRL's DPO), ``tally`` (the
tokens each iteration really sampled and updated on), ``measure`` (one system in one process, summarised), ``runner``
(every system in a fresh process),
``report`` (the JSON and Markdown report) and ``env_overhead`` (the batched env's own cost per step).
Entry points: ``scripts/benchmark.py`` and ``scripts/env_overhead.py``.
"""
