"""What RLOO and GRPO share: k responses per prompt and a baseline from the group instead of a critic.

Both sample with :class:`rlhf_gym.agents.TokenPPO`'s KV-cached lock-step rollout on an env built with ``group_size=k``
(rows ``[g*k, (g+1)*k)`` answer the same prompt), turn each response's scalar reward into one advantage from its
group (:meth:`CriticFreeTokenPG.group_advantages`), give that advantage to every token of the response, and
update with a clipped importance ratio over ``n_epochs`` passes of minibatches (one forward per sequence). The
value head of :class:`rlhf_gym.agents.TransformerPolicy` is neither used nor trained.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from rlhf_gym.divergence import check_finite_loss
from rlhf_gym.errors import ConfigError

from .buffer import SequenceRolloutBuffer, SequenceSamples
from .parallel import DataParallel
from .ppo import TokenPPO
from .policy import TransformerPolicy
from .vec_env import RLHFVecEnv, unwrap_bridge

DEFAULT_GROUP_SIZE = 4
"""Responses per prompt when the env is given by id (Ahmadian et al. 2024 report k = 2 and 4)."""


def group_view(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B]`` -> ``[B / k, k]``: row ``g`` holds the values of group ``g`` (env rows ``g*k .. g*k + k - 1``)."""
    if values.shape[0] % group_size:
        raise ValueError(f"{values.shape[0]} responses do not split into groups of {group_size}")
    return values.view(-1, group_size)


class CriticFreeTokenPG(TokenPPO):
    """Base of :class:`rlhf_gym.agents.RLOO` and :class:`rlhf_gym.agents.GRPO` (not used directly).

    :param env: an :class:`rlhf_gym.agents.RLHFVecEnv` whose batched env has ``group_size >= 2``, or an env id (built with
        ``group_size``).
    :param group_size: responses per prompt, k (default: the env's; :data:`DEFAULT_GROUP_SIZE` for an env id).
    :param n_envs: responses per rollout when ``env`` is an id (``n_envs / k`` prompts).
    :param batch_size: minibatch size in responses; ``n_envs / batch_size`` optimizer steps per epoch.
    :param n_epochs: passes over each rollout (TRL's ``num_iterations``, GRPO's mu).
    :param clip_range: clip of the importance ratio (TRL's ``epsilon``).

    The other parameters are :class:`rlhf_gym.agents.TokenPPO`'s.
    """

    algorithm_name = "critic-free"
    trains_value_head = False  # the value head is not part of the loss, so it is frozen (DDP refuses idle parameters)

    def __init__(
        self,
        policy: str | type[TransformerPolicy],
        env: RLHFVecEnv | str,
        learning_rate: float = 1e-4,
        batch_size: int = 16,
        n_epochs: int = 1,
        clip_range: float = 0.2,
        max_grad_norm: float = 1.0,
        group_size: int | None = None,
        amp: str | None = None,
        parallel: DataParallel | None = None,
        n_envs: int = 64,
        env_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if isinstance(env, str):
            group_size = group_size or DEFAULT_GROUP_SIZE
            env_kwargs = {**(env_kwargs or {}), "group_size": group_size}
        elif env is not None:
            env_group = unwrap_bridge(env).batched_env.group_size
            if group_size is not None and group_size != env_group:
                raise ConfigError(f"group_size={group_size} but the env samples groups of {env_group}; build the env with "
                                  f"group_size={group_size}")
            group_size = env_group
        if group_size is not None and group_size < 2:
            raise ConfigError(f"{self.algorithm_name} needs at least 2 responses per prompt: build the env with "
                              f"group_size >= 2 (got {group_size})")
        self.group_size = group_size
        super().__init__(policy, env, learning_rate=learning_rate, batch_size=batch_size, n_epochs=n_epochs, gamma=1.0,
                         gae_lambda=1.0, clip_range=clip_range, clip_range_vf=None, normalize_advantage=False,
                         ent_coef=0.0, vf_coef=0.0, max_grad_norm=max_grad_norm, amp=amp, parallel=parallel,
                         n_envs=n_envs,
                         env_kwargs=env_kwargs, stats_window_size=stats_window_size, tensorboard_log=tensorboard_log,
                         policy_kwargs=policy_kwargs, verbose=verbose, seed=seed, device=device,
                         _init_setup_model=_init_setup_model)

    # ------------------------------------------------------------------------------- to implement
    def sequence_rewards(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> torch.Tensor:
        """The scalar reward of each response [n_envs], from the rollout's rewards or its final infos."""
        raise NotImplementedError

    def group_advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """One advantage per response [n_envs] from the rewards of its group."""
        raise NotImplementedError

    def policy_loss(self, batch: SequenceSamples, logprobs: torch.Tensor, clip_range: float
                    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The minibatch loss and the numbers to log (means over the update under ``train/<name>``)."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------- machinery
    def _compute_advantages(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> None:
        """Every token of response ``i`` gets the advantage ``A_i`` of its group (no critic, no GAE)."""
        rewards = self.sequence_rewards(rollout_buffer, episodes).to(self.device, torch.float32)
        advantages = self.group_advantages(rewards)
        mask = rollout_buffer.response_mask.float()
        rollout_buffer.advantages = advantages[:, None] * mask
        rollout_buffer.returns = torch.zeros_like(mask)
        groups = group_view(rewards, self.group_size)
        self.logger.record("rollout/reward_std_in_group", self.parallel.mean(groups.std(1).cpu().numpy()))
        self.logger.record("rollout/advantage_std", float(self.parallel.gather(advantages).std()))

    def train(self) -> None:
        """``n_epochs`` passes of minibatches of whole responses, each one forward per sequence and one step."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        logs: dict[str, list[float]] = defaultdict(list)
        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size, self._shuffle, normalize_advantage=False):
                with self._autocast():
                    logprobs, _, _ = self._policy_call("evaluate_sequences", batch.queries, batch.query_mask,
                                                       batch.responses, batch.response_mask, entropy_grad=False)
                loss, stats = self.policy_loss(batch, logprobs, clip_range)
                check_finite_loss(loss, f"{self.algorithm_name} iteration {self.n_rollouts}, epoch {epoch + 1}")
                for name, value in stats.items():
                    logs[name].append(value)
                logs["loss"].append(loss.item())
                self._optimizer_step(loss)
            self._n_updates += 1
        for name, values in logs.items():
            self.logger.record(f"train/{name}", self.parallel.mean(values))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
