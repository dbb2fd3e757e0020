"""What RLOO and GRPO share: k responses per prompt and a baseline from the group instead of a critic.

Both sample with :class:`rlhf_gym.agents.TokenPPO`'s KV-cached lock-step rollout on an env built with ``group_size=k``
(rows ``[g*k, (g+1)*k)`` answer the same prompt), turn each response's scalar reward into one advantage from its
group (:meth:`CriticFreeTokenPG.group_advantages`), give that advantage to every token of the response, and
update with a clipped importance ratio over ``n_epochs`` passes of minibatches (one forward per sequence). The
value head of :class:`rlhf_gym.agents.TransformerPolicy` is neither used nor trained.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from rlhf_gym.checks import check_option
from rlhf_gym.divergence import check_finite_loss
from rlhf_gym.errors import ConfigError

from .buffer import SequenceRolloutBuffer, SequenceSamples
from .critic_free_settings import DEFAULT_GROUP_SIZE
from .parallel import DataParallel
from .ppo import TokenPPO
from .schedules import check_lr_schedule
from .policy import TransformerPolicy
from .vec_env import RLHFVecEnv, unwrap_bridge


@dataclass
class CriticFreeConfig:
    """The hyperparameters RLOO and GRPO share, with their defaults (each checked here, once)."""

    learning_rate: float = 1e-4
    """AdamW learning rate (the initial one with ``lr_schedule="linear"``)."""
    lr_schedule: str = "constant"
    """``constant``, or ``linear``: annealed to 0 over the response budget."""
    batch_size: int = 16
    """Minibatch size, in responses; it must divide the rollout (``--n-envs``)."""
    n_epochs: int = 1
    """Passes over each rollout (TRL's ``num_iterations``, GRPO's mu): one, so the ratio is 1 and the loss is plain
    REINFORCE unless a rollout is split into several minibatches."""
    group_size: int = DEFAULT_GROUP_SIZE
    """Responses per prompt, k."""
    kl_coef: float | None = None
    """KL coefficient: of the env's reward for RLOO (None: the env id's), of the loss's KL term for GRPO."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "n_epochs"):
            check_option(name, getattr(self, name), strict=True)
        check_lr_schedule(self.lr_schedule)
        check_option("kl_coef", self.kl_coef)
        if self.group_size < 2:
            raise ConfigError(f"--group-size {self.group_size}: at least 2 responses per prompt are needed for a baseline "
                              "from the group")


def store_reference_logprobs(rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> None:
    """Put the reference's per-token log-probs of every response, from its final info, into the buffer
    (``rollout_buffer.ref_logprobs`` [n_envs, T], 0 past a response's end) for a loss that needs ``log pi_ref``."""
    # the env already ran the reference over every response to score it: its per-token log-probs are reused, so the
    # loss costs no reference forward of its own. They are fixed for the update, like the old log-probs
    rollout_buffer.ref_logprobs = torch.zeros_like(rollout_buffer.logprobs)
    for row, info in episodes.items():
        ref = torch.as_tensor(info["ref_token_logprobs"], dtype=torch.float32)
        rollout_buffer.ref_logprobs[row, : len(ref)] = ref.to(rollout_buffer.ref_logprobs.device)


def group_view(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B]`` -> ``[B / k, k]``: row ``g`` holds the values of group ``g`` (env rows ``g*k .. g*k + k - 1``)."""
    # the env lays groups out as consecutive rows, so a reshape finds them (no index bookkeeping)
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
    keeps_groups_together = False  # True: every minibatch holds whole groups (a loss that compares a group's responses)

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
        # the env draws the groups (one prompt per k consecutive rows), so group_size is the env's setting: passed on
        # to an env built here, checked against a given one
        if isinstance(env, str):
            group_size = group_size or DEFAULT_GROUP_SIZE
            env_kwargs = {**(env_kwargs or {}), "group_size": group_size}
        elif env is not None:
            env_group = unwrap_bridge(env).batched_env.group_size
            if group_size is not None and group_size != env_group:
                raise ConfigError(f"group_size={group_size} but the env samples groups of {env_group}; build the env with "
                                  f"group_size={group_size}")
            group_size = env_group
        # a group of 1 has no other response to compare with (RLOO would divide by k - 1 = 0; GRPO's reward minus its
        # group mean is always 0)
        if group_size is not None and group_size < 2:
            raise ConfigError(f"{self.algorithm_name} needs at least 2 responses per prompt: build the env with "
                              f"group_size >= 2 (got {group_size})")
        self.group_size = group_size
        # PPO's critic settings fixed off: no GAE (the advantages come from the group), no value loss or value clip, no
        # entropy bonus, and no whitening by the buffer (each algorithm scales its own group advantages)
        super().__init__(policy, env, learning_rate=learning_rate, batch_size=batch_size, n_epochs=n_epochs, gamma=1.0,
                         gae_lambda=1.0, clip_range=clip_range, clip_range_vf=None, normalize_advantage=False,
                         ent_coef=0.0, vf_coef=0.0, max_grad_norm=max_grad_norm, amp=amp, parallel=parallel,
                         n_envs=n_envs,
                         env_kwargs=env_kwargs, stats_window_size=stats_window_size, tensorboard_log=tensorboard_log,
                         policy_kwargs=policy_kwargs, verbose=verbose, seed=seed, device=device,
                         _init_setup_model=_init_setup_model)

    @classmethod
    def algorithm_kwargs(cls, config: CriticFreeConfig) -> dict[str, Any]:
        """None beyond the shared ones (no critic, no GAE); a subclass adds its own."""
        return {}

    @classmethod
    def policy_settings(cls, config: CriticFreeConfig, env: RLHFVecEnv) -> dict[str, Any]:
        """None: there is no critic to place (TokenPPO's ``--critic``)."""
        return {}

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
        # a whole response is one action for the reward: its scalar reward, not a per-token one, is what the group compares
        rewards = self.sequence_rewards(rollout_buffer, episodes).to(self.device, torch.float32)
        # a process holds whole groups (its env's rows), so per-group statistics need no reduction over processes; the
        # rollout-wide ones (RLOO's standardising, GRPO's scale_rewards="batch") gather every process's rewards
        advantages = self.group_advantages(rewards)
        mask = rollout_buffer.response_mask.float()
        # broadcast over the response's tokens, 0 on the padding (GRPO's loss reads it per token, RLOO's at column 0)
        rollout_buffer.advantages = advantages[:, None] * mask
        # no critic, so no value targets; a tensor all the same, because the buffer slices it into every minibatch
        rollout_buffer.returns = torch.zeros_like(mask)
        groups = group_view(rewards, self.group_size)
        # logged because a group whose k rewards are equal gives no signal (all its advantages are 0). A mean of per-group
        # stds is a mean, which the processes can average; the std of all advantages is not, so those are gathered
        self.logger.record("rollout/reward_std_in_group", self.parallel.mean(groups.std(1).cpu().numpy()))
        self.logger.record("rollout/advantage_std", float(self.parallel.gather(advantages).std()))

    def train(self) -> None:
        """``n_epochs`` passes of minibatches of whole responses, each one forward per sequence and one step."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        logs: dict[str, list[float]] = defaultdict(list)
        for epoch in range(self.n_epochs):
            # normalize_advantage=False: the group advantages are already on their own scale (group_advantages)
            group = self.group_size if self.keeps_groups_together else 1
            for batch in self.rollout_buffer.get(self.batch_size, self._shuffle, normalize_advantage=False, group_size=group):
                with self._autocast():
                    # only the log-probs enter the loss: the values are unused and the entropy is kept out of the graph
                    logprobs, _, _ = self._policy_call("evaluate_sequences", batch.queries, batch.query_mask,
                                                       batch.responses, batch.response_mask, entropy_grad=False)
                # the first minibatch of the first epoch has ratio 1 (dropout off): one epoch of one minibatch is
                # REINFORCE with the group baseline (plus GRPO's KL term)
                loss, stats = self.policy_loss(batch, logprobs, clip_range)
                check_finite_loss(loss, f"{self.algorithm_name} iteration {self.n_rollouts}, epoch {epoch + 1}")
                for name, value in stats.items():
                    logs[name].append(value)
                logs["loss"].append(loss.item())
                self._optimizer_step(loss)  # TokenPPO's: gradient clip, fp16 scaler, all-reduce in a data-parallel run
            self._n_updates += 1  # SB3 counts epochs
        # the same names in the same order on every process (mean() is a collective call), over all processes' minibatches
        for name, values in logs.items():
            self.logger.record(f"train/{name}", self.parallel.mean(values))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
