"""Our critic-free systems ``ours-rloo`` and ``ours-grpo``: :class:`rlhf_gym.agents.RLOO` /
:class:`rlhf_gym.agents.GRPO` on the batched
:class:`rlhf_gym.agents.RLHFVecEnv` with group sampling (``group_size=k``), the work that ``trl-rloo`` / ``trl-grpo`` do.

Matched work (:mod:`rlhf_gym.benchmarks.trl_online` does the same with TRL): one iteration is one generation batch of
``rollout_batch`` responses, ``rollout_batch / k`` prompts x k = :data:`GROUP_SIZE` responses each, all of the full
``response_length`` (the env's stop token is outside the vocabulary, ``stop_token=vocab_size``), scored by the
reference (KV-cached sampling gives the old log-probs) and by the reward model on the prompt and response text; then
``epochs`` passes of ``minibatches`` optimizer steps of ``rollout_batch / minibatches`` responses each
(``Workload.optimizer_steps`` per iteration), one forward per whole sequence. The KL coefficients are the matched TRL
defaults of :mod:`rlhf_gym.benchmarks.trl_algorithms` (RLOO: ``beta`` 0.1 in the env's reward; GRPO: 0.04 on the per-token k3
term in the loss, the env's reward without KL), clip 0.2, the learning rate of :mod:`rlhf_gym.benchmarks.workloads`.

Phases as for ``ours``: sampling = the rollout less the env's scoring of finished responses (reference log-probs and
reward), update = the epochs of minibatches.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_gym.agents import GRPO, RLOO, RLHFVecEnv

from .clock import LapAtRolloutStart, PhaseClock
from .ours import time_scoring
from .protocol import Run, Settings, trainable
from .systems import GROUP_SIZE
from .trl_algorithms import Settings as TRLSettings
from .workloads import CLIP_RANGE, LEARNING_RATE, ModelFiles, Workload

KL_COEF = {"rloo": TRLSettings.rloo_beta, "grpo": TRLSettings.grpo_beta}
"""The KL coefficient of each algorithm, on both sides (the matched defaults of ``scripts/trl_baselines.py``)."""


def run(algo: str, workload: Workload, files: ModelFiles, settings: Settings, device: torch.device,
        clock: PhaseClock) -> Run:
    """``algo`` ("rloo" or "grpo") on the batched env with groups of :data:`GROUP_SIZE` responses per prompt."""
    # RLOO's KL is in the env's reward; GRPO's is in its loss (the env still computes the reference log-probs)
    env = RLHFVecEnv(num_envs=workload.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                     prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                     max_new_tokens=workload.response_length, beta=KL_COEF["rloo"] if algo == "rloo" else 0.0,
                     stop_token=workload.vocab_size, device=device, group_size=GROUP_SIZE)
    common = dict(learning_rate=LEARNING_RATE, batch_size=workload.rollout_batch // workload.minibatches,
                  n_epochs=workload.epochs, clip_range=CLIP_RANGE, amp=None if settings.amp == "none" else settings.amp,
                  seed=settings.seed, device=device, policy_kwargs={"model_name_or_path": files.policy})
    model = (RLOO("TransformerPolicy", env, **common) if algo == "rloo"
             else GRPO("TransformerPolicy", env, beta=KL_COEF["grpo"], **common))
    # The sampling phase is the rollout less the scoring of finished responses nested in it.
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")
    time_scoring(env, clock)
    model.train = clock.timed(model.train, "update")
    n_iterations = settings.warmup + settings.iterations
    model.learn(total_responses=n_iterations * workload.rollout_batch, callback=LapAtRolloutStart(clock),
                progress_bar=False)
    clock.lap()
    lengths = [info["response_length"] for info in model.last_rollout_infos]
    return Run(clock.iterations, trainable(model.policy), float(np.mean(lengths)), workload.update_tokens)
