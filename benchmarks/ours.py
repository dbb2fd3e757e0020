"""Our system: :class:`rlhf_gym.agents.TokenPPO` on the batched :class:`rlhf_gym.agents.RLHFVecEnv`, and our single env
for the SB3 baseline.

One rollout samples ``rollout_batch`` responses in lock step with a KV cache; the env scores the finished responses
with the reference and the reward model (one pass each when all end together); the update runs one forward pass per
whole sequence per minibatch. The value head sits on the policy's trunk, or (``separate_critic``) on a separate value
trunk initialised from the reward model (TRL's layout: two transformers are trained); with LoRA (``ours-lora``) only
adapters and the value head train.

Response length: on the synthetic workloads, and with ``fixed_length`` (``ours-fixed-length``), responses have the
full length: the env gets a stop token outside the vocabulary (``stop_token=vocab_size``). On a task workload
(``reviews``) they end at the task's EOS, as in ``scripts/train_agent.py``: the rollout stops once every row has ended,
and each update minibatch is cut to its longest live response (:class:`rlhf_gym.agents.buffer.SequenceRolloutBuffer`). The
live response tokens and the tokens through the update are counted per iteration (:mod:`rlhf_gym.benchmarks.tally`).

Apart from ``env_overhead.py``, this module is the speed benchmark's only user of the env and TokenPPO API
(constructors, ``batched_env``, ``_episodes.finish``, ``last_rollout_infos``, ``policy.evaluate_sequences``):
``sb3.py`` builds its envs through :func:`single_env_factory` and :func:`time_scoring`, and takes only
:class:`rlhf_gym.agents.TransformerPolicy` from ``agents``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.envs import RLHFEnv
from rlhf_gym.reward_model import RewardModel

from .clock import LapAtRolloutStart, PhaseClock
from .protocol import Run, Settings, trainable, training_state_mb, weights_mb
from .tally import TokenTally
from .workloads import BETA, CLIP_RANGE, GAE_LAMBDA, LEARNING_RATE, VF_COEF, ModelFiles, Workload


def run(workload: Workload, files: ModelFiles, settings: Settings, device: torch.device, clock: PhaseClock,
        separate_critic: bool = False, lora: dict[str, Any] | None = None, fixed_length: bool = False,
        length_buckets: int | None = None) -> Run:
    """TokenPPO on the batched env: KV-cached sampling, the env's reference and reward passes; with ``lora``
    settings the policy trains LoRA adapters on the reference's own weights (one copy of the model); with
    ``fixed_length`` (always on a synthetic workload without a ``stop_rate``) every response has the full length;
    ``length_buckets``: the policy's ``max_length_buckets`` (None: TokenPPO's default, 4 on a long budget, else 1)."""
    # None: the env's default, the tokenizer's EOS (the task's stop token)
    stop_token = workload.vocab_size if fixed_length or not workload.ends_at_eos else None
    env = RLHFVecEnv(num_envs=workload.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                     prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                     max_new_tokens=workload.response_length, beta=BETA, stop_token=stop_token, device=device)
    policy_kwargs: dict[str, Any] = {"model_name_or_path": files.policy, "lora": lora}
    if length_buckets is not None:
        policy_kwargs["max_length_buckets"] = length_buckets
    if separate_critic:
        policy_kwargs.update(share_trunk=False, value_init="reward_model", reward_model_path=files.reward)
    model = TokenPPO("TransformerPolicy", env, learning_rate=LEARNING_RATE,
                     batch_size=workload.rollout_batch // workload.minibatches, n_epochs=workload.epochs,
                     gae_lambda=GAE_LAMBDA, clip_range=CLIP_RANGE, clip_range_vf=CLIP_RANGE, vf_coef=VF_COEF,
                     amp=None if settings.amp == "none" else settings.amp, seed=settings.seed, device=device,
                     policy_kwargs=policy_kwargs)
    tally = TokenTally()
    count_tokens(model, tally)
    # The sampling phase is the rollout less the scoring of finished responses nested in it.
    collect = clock.timed(model.collect_rollouts, "sampling")

    def collect_rollouts(*args, **kwargs) -> bool:
        collected = collect(*args, **kwargs)
        if collected:
            tally.rollout([info["response_length"] for info in model.last_rollout_infos])
        return collected

    model.collect_rollouts = collect_rollouts
    time_scoring(env, clock)
    model.train = clock.timed(model.train, "update")
    model.learn(total_responses=(settings.warmup + settings.iterations) * workload.rollout_batch,
                callback=LapAtRolloutStart(clock), progress_bar=False)
    clock.lap()
    batched = env.batched_env
    return tally.run(clock.iterations, trainable(model.policy), settings.warmup,
                     weights_mb=weights_mb(model.policy, batched.ref_model, batched.reward_fn.model),
                     training_state_mb=training_state_mb(model.policy.optimizer))


def count_tokens(model: TokenPPO, tally: TokenTally) -> None:
    """Count the tokens of every update forward: ``evaluate_sequences`` runs one pass over ``[query; response]`` per
    minibatch, the response columns cut to the minibatch's longest live response."""
    evaluate = model.policy.evaluate_sequences

    def evaluate_sequences(queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor, *args, **kwargs):
        tally.update(queries.shape[0], queries.shape[1] + responses.shape[1])
        return evaluate(queries, query_mask, responses, *args, **kwargs)

    # an instance attribute: TokenPPO reaches the policy's methods by name (rlhf_gym.agents.parallel.PolicyCall)
    model.policy.evaluate_sequences = evaluate_sequences


def single_env_factory(workload: Workload, files: ModelFiles, device: torch.device) -> Callable[[], RLHFEnv]:
    """Single :class:`rlhf_gym.envs.RLHFEnv` envs of the workload sharing one tokenizer, reference and reward model; episodes
    last exactly ``response_length`` steps (the stop token is outside the vocabulary)."""
    tokenizer = AutoTokenizer.from_pretrained(files.policy)
    ref_model = AutoModelForCausalLM.from_pretrained(files.policy)
    reward_model = RewardModel.from_pretrained(files.reward, device=device)
    return lambda: RLHFEnv(task=None, ref_model=ref_model, tokenizer=tokenizer, reward_model=reward_model,
                           prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                           max_new_tokens=workload.response_length, beta=BETA, stop_token=workload.vocab_size,
                           device=device)


def time_scoring(env: RLHFVecEnv | gym.Env, clock: PhaseClock) -> None:
    """Time the env's scoring of finished responses (reference log-probs and reward) as the scoring phase.

    :param env: our batched ``RLHFVecEnv`` or a (possibly wrapped) single ``RLHFEnv``
    """
    # instrumentation, not an agent: it times the env's internal scoring step, which has no public hook
    episodes = env.batched_env._episodes if isinstance(env, RLHFVecEnv) else env.unwrapped._episodes
    episodes.finish = clock.timed(episodes.finish, "scoring")
