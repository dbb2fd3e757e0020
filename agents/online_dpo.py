"""Online DPO: the DPO loss on pairs the current policy samples, ranked by a judge as they are sampled.

Guo et al. (2024), "Direct language model alignment from online AI feedback", https://arxiv.org/abs/2402.04792 (TRL's
``OnlineDPOTrainer``). Each rollout samples two responses per prompt from the current policy (the env's group sampling
with ``group_size=2``: rows ``2g`` and ``2g + 1`` answer the same prompt); a judge says which is better; the update is
DPO's loss on those pairs::

    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)],     loss = -log sigmoid(beta * h)

with sequence log-probs summed over the response tokens (and the EOS that ended it), as :mod:`rlhf_gym.agents.dpo`.
``log pi_ref`` of every token comes from the env's own scoring pass (``info["ref_token_logprobs"]``), so the reference
costs no forward of its own. Offline DPO moves probability towards responses it never samples; here every pair comes
from the policy being trained, which is what the paper's name for it, on-policy feedback, means.

Judges (``judge``):

* ``"reward_model"``: the env's reward model; the response with the higher ``r_phi - penalty`` wins (TRL's
  ``reward_model`` with its ``missing_eos_penalty``); equal scores are a tie;
* ``"annotator"``: the task's simulated annotator or annotator pool (the biases, temperature, flips and tie policy its
  build recorded in ``metadata.json``: those who labelled the reward model's comparisons), asked once per pair, its
  draws seeded by the run's seed (plus :data:`JUDGE_SEED_OFFSET`, a stream apart from the build's) and the pair's number,
  so that a resumed run judges as an uninterrupted one and two seeds draw different noise; its ``"tie"`` is a tie;
* ``"person"``: you, at the terminal (:class:`rlhf_gym.labelers.TerminalLabeler`: ``1``, ``2``, ``t`` for a tie, ``s``
  to skip, which counts as a tie), pair by pair as each rollout ends; one process only. (The labelling page is
  asynchronous, so it labels rounds instead: ``rlhf-gym iterate --method dpo --labeler page``.)

A tied pair gives no gradient (its rows get advantage 0 and are left out of the loss's mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_gym.checks import check_option
from rlhf_gym.errors import ConfigError
from rlhf_gym.labelers import TerminalLabeler

from .buffer import SequenceRolloutBuffer, SequenceSamples
from .critic_free import CriticFreeTokenPG, group_view, store_reference_logprobs
from .registry import AlgorithmTraits, register_algorithm
from .schedules import check_lr_schedule

JUDGES = ("reward_model", "annotator", "person")
JUDGE_SEED_OFFSET = 20_000
"""The annotator judge of a run with seed ``s`` draws with seed ``s + 20,000``: apart from the build's stream (its seed,
0) and the held-out evaluations' (``s + 10,000``)."""
PAIR = 2
"""Responses per prompt: a pair."""


@dataclass
class OnlineDPOConfig:
    """Online DPO's hyperparameters for ``rlhf-gym train --algo online_dpo``, with its defaults (each checked here).

    A rollout of ``n_envs`` responses is ``n_envs / 2`` pairs; ``batch_size`` counts responses (two per pair).
    """

    learning_rate: float = 1e-4
    """AdamW learning rate (the initial one with ``lr_schedule="linear"``)."""
    lr_schedule: str = "constant"
    """``constant``, or ``linear``: annealed to 0 over the response budget."""
    batch_size: int = 16
    """Minibatch size, in responses (an even number: whole pairs)."""
    n_epochs: int = 1
    """Passes over each rollout's pairs."""
    group_size: int = PAIR
    """Responses per prompt: 2, a pair (the option exists so that a wrong value is refused by name)."""
    dpo_beta: float = 0.5
    """Temperature of the implicit reward ``beta * (log pi - log pi_ref)``."""
    judge: str = "reward_model"
    """Who ranks each pair: the env's ``reward_model``, the task's simulated ``annotator`` (pool), or a ``person`` at the
    terminal."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "n_epochs", "dpo_beta"):
            check_option(name, getattr(self, name), strict=True)
        check_lr_schedule(self.lr_schedule)
        if self.group_size != PAIR:
            raise ConfigError(f"--group-size {self.group_size}: online_dpo samples pairs, 2 responses per prompt")
        if self.batch_size % PAIR:
            raise ConfigError(f"--batch-size {self.batch_size}: online_dpo's minibatches hold whole pairs, so an even "
                              "number of responses")
        if self.judge not in JUDGES:
            raise ConfigError(f"--judge must be one of {', '.join(JUDGES)}, got {self.judge!r}")


def pair_preferences(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``+1`` where the pair's first response won, ``-1`` where the second did, ``0`` for a tie [P]."""
    return torch.sign(first - second)


def online_dpo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, preference: torch.Tensor, beta: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's loss on sampled pairs, oriented by the judge.

    :param policy_logps: ``log pi`` of each pair's two responses [P, 2], summed over their tokens.
    :param ref_logps: the same under the reference [P, 2].
    :param preference: :func:`pair_preferences` [P]: +1 (first won), -1 (second won), 0 (tie).
    :return: ``(losses [P], decided [P] bool)``; a tie's loss is 0.
    """
    logratios = policy_logps - ref_logps
    # h of the winner over the loser: the first minus the second, turned round where the second won
    h = preference * (logratios[:, 0] - logratios[:, 1])
    decided = preference != 0
    return -F.logsigmoid(beta * h) * decided, decided


@register_algorithm
class OnlineDPO(CriticFreeTokenPG):
    """Online DPO on the batched RLHF env (pairs from the env's group sampling), on SB3's machinery like
    :class:`rlhf_gym.agents.TokenPPO`, whose rollout it shares.

    :param beta: temperature of the implicit reward.
    :param judge: ``"reward_model"`` or ``"annotator"`` (see the module docstring).

    The other parameters are :class:`rlhf_gym.agents.critic_free.CriticFreeTokenPG`'s (``group_size`` is 2).
    """

    algorithm_name = "online DPO"
    traits = AlgorithmTraits("online_dpo", "DPO on pairs sampled from the current policy and ranked by a judge "
                                           "(Guo et al. 2024)", online=True, group_sampling=True, kl="implicit")
    Config = OnlineDPOConfig
    keeps_groups_together = True  # a minibatch holds whole pairs: the loss compares the two responses of a prompt

    @classmethod
    def env_settings(cls, config: OnlineDPOConfig) -> dict[str, Any]:
        """Pairs, and no KL term in the env's reward (the DPO loss holds the policy near the reference; the env still
        measures and reports the KL)."""
        return {"group_size": PAIR, "beta": 0.0}

    @classmethod
    def algorithm_kwargs(cls, config: OnlineDPOConfig) -> dict[str, Any]:
        return {"beta": config.dpo_beta, "judge": config.judge}

    def __init__(self, policy, env, beta: float = OnlineDPOConfig.dpo_beta, judge: str = OnlineDPOConfig.judge, **kwargs):
        if not beta > 0:
            raise ConfigError(f"online DPO's beta must be > 0, got {beta}")
        if judge not in JUDGES:
            raise ConfigError(f"judge must be one of {', '.join(JUDGES)}, got {judge!r}")
        self.beta, self.judge = float(beta), judge
        self.judged_pairs = 0  # pairs this process judged so far: the annotator's seed of the next (saved with the agent)
        super().__init__(policy, env, group_size=kwargs.pop("group_size", PAIR), **kwargs)
        if self.batch_size % PAIR:  # this process's share of a minibatch: whole pairs, or the loss cannot pair rows up
            raise ConfigError(f"online DPO's minibatches hold whole pairs: a batch of {self.batch_size} responses per "
                              f"process is odd (give a --batch-size that is even on each of the "
                              f"{self.parallel.num_processes} process(es))")
        if judge == "person" and self.parallel.num_processes > 1:
            raise ConfigError("judge='person' reads your judgements in one process: run without a data-parallel launch")
        self._pair_judge = None  # built on first use (not saved: rebuilt from the task, or a new terminal)

    def coefficients(self) -> dict[str, float]:
        """The implicit reward's temperature (no KL term is paid anywhere)."""
        return {"dpo_beta": self.beta}

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_pair_judge"]

    def pair_judge(self):
        """The judge of the pairs when it is not the reward model: the task's annotators, or a person at the terminal."""
        if self._pair_judge is None:
            self._pair_judge = TerminalLabeler() if self.judge == "person" else self.annotator()
        return self._pair_judge

    def annotator(self):
        """The task's simulated annotator (a pool for the suite's tasks), as its build labelled the reward model's
        comparisons."""
        from rlhf_gym.tasks.building import task_annotator

        task = self.batched_env.task
        if task is None:
            raise ConfigError("judge='annotator' needs an env with a task (its simulated annotators)")
        return task_annotator(task.name, task.metadata.get("build_config", {}), JUDGE_SEED_OFFSET + (self.seed or 0))

    def sequence_rewards(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> torch.Tensor:
        """The judge's verdict as scores: the reward model's ``r_phi - penalty``, or 1 for the annotator's (person's)
        winner and 0 for its loser (0 and 0 for a tie or a skip); the reference's per-token log-probs go into the buffer
        for the loss."""
        store_reference_logprobs(rollout_buffer, episodes)
        if self.judge == "reward_model":
            return torch.tensor([episodes[row]["proxy_reward"] - episodes[row]["penalty"] for row in range(self.n_envs)])
        judge, scores = self.pair_judge(), torch.zeros(self.n_envs)
        for first in range(0, self.n_envs, PAIR):  # rows 2g, 2g + 1: one prompt's pair
            a, b = episodes[first], episodes[first + 1]
            if hasattr(judge, "seed_pair"):  # a pair's number over all processes: process p judges every n-th pair
                judge.seed_pair(self.judged_pairs * self.parallel.num_processes + self.parallel.process_index)
            self.judged_pairs += 1
            verdict = judge(a["prompt"], a["response_text"], b["response_text"])
            if verdict in ("a", "b"):
                scores[first if verdict == "a" else first + 1] = 1.0
        return scores

    def group_advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """+1 for a pair's winner, -1 for its loser, 0 for both of a tie: the buffer's advantage column carries the
        verdict into the minibatches."""
        pairs = group_view(rewards, PAIR)
        preference = pair_preferences(pairs[:, 0], pairs[:, 1])
        return torch.stack([preference, -preference], 1).reshape(-1)

    def policy_loss(self, batch: SequenceSamples, logprobs: torch.Tensor, clip_range: float):
        mask = batch.response_mask.float()
        # the minibatch holds whole pairs in order (keeps_groups_together): rows 2p and 2p + 1 are pair p
        policy_logps = group_view((logprobs * mask).sum(1), PAIR)
        ref_logps = group_view((batch.ref_logprobs * mask).sum(1), PAIR)
        preference = group_view(batch.advantages[:, 0], PAIR)[:, 0]  # the first response's +1 / -1 / 0
        losses, decided = online_dpo_loss(policy_logps, ref_logps, preference, self.beta)
        # the mean over the decided pairs of the whole minibatch, over every process (each process's loss is its share,
        # so the engine's average of the gradients is the gradient of that mean: cf. TokenPPO.minibatch_tokens); a
        # minibatch of ties only has no loss
        loss = losses.sum() / (self.parallel.sum(decided.sum().float()) / self.parallel.num_processes).clamp(min=1)
        with torch.no_grad():
            rewards = self.beta * (policy_logps - ref_logps)
            winner = torch.where(preference[:, None] >= 0, rewards, rewards.flip(1))  # [chosen, rejected] per pair
            kept = decided.float()
            stats = {"dpo_loss": loss.item(), "decided_pairs": kept.mean().item(),
                     "rewards_chosen": float((winner[:, 0] * kept).sum() / kept.sum().clamp(min=1)),
                     "rewards_rejected": float((winner[:, 1] * kept).sum() / kept.sum().clamp(min=1)),
                     "rewards_accuracy": float(((winner[:, 0] > winner[:, 1]).float() * kept).sum() / kept.sum().clamp(min=1))}
        return loss, stats
