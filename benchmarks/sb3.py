"""The per-token baseline: plain ``stable_baselines3.PPO`` with :class:`rlhf_gym.agents.TransformerPolicy` on a ``DummyVecEnv``
of single :class:`rlhf_gym.envs.RLHFEnv` envs.

Every (state, action) sample is one full forward pass over its context, in the rollout and in every update epoch
(the design that the closest prior library measured at about 16 tokens/s). Episodes last exactly
``response_length`` steps; ``batch_size = rollout batch * response length / minibatches`` (state, action) samples
gives as many optimizer steps per iteration as the other systems.
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from rlhf_gym.agents import TransformerPolicy

from .clock import LapAtRolloutStart, PhaseClock
from .ours import single_env_factory, time_scoring
from .protocol import Run, Settings, trainable
from .workloads import CLIP_RANGE, GAE_LAMBDA, LEARNING_RATE, VF_COEF, ModelFiles, Workload


def run(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock) -> Run:
    """Plain SB3 PPO on single envs: every (state, action) sample is a full forward pass over its context."""
    make_env = single_env_factory(workload, files, device)
    vec_env = DummyVecEnv([lambda: Monitor(make_env())] * workload.rollout_batch)
    samples = workload.rollout_batch * workload.response_length
    model = PPO(TransformerPolicy, vec_env, learning_rate=LEARNING_RATE, n_steps=workload.response_length,
                batch_size=samples // workload.minibatches, n_epochs=workload.epochs, gamma=1.0, gae_lambda=GAE_LAMBDA,
                clip_range=CLIP_RANGE, clip_range_vf=CLIP_RANGE, vf_coef=VF_COEF, max_grad_norm=1.0, seed=settings.seed,
                device=device, policy_kwargs={"model_name_or_path": files.policy})
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")
    for env in vec_env.envs:
        time_scoring(env, clock)
    model.train = clock.timed(model.train, "update")
    model.learn((settings.warmup + settings.sb3_iterations) * samples, callback=LapAtRolloutStart(clock),
                progress_bar=False)
    clock.lap()
    lengths = [episode["l"] for episode in model.ep_info_buffer]
    # Every one of the rollout_batch x response_length (state, action) samples is a forward over prompt + response.
    return Run(clock.iterations, trainable(model.policy), float(np.mean(lengths)),
               workload.update_tokens * workload.response_length)
