"""The algorithm contract (:mod:`rlhf_gym.agents.registry`) of the agents that sample from the env: TokenPPO and the
algorithms on its rollout (NLPO, RLOO, GRPO, and any new one).

A subclass declares ``traits`` and ``Config``, and overrides :meth:`OnlineAlgorithm.algorithm_kwargs` (its own
constructor arguments from its config) and, where it needs something of the env, :meth:`OnlineAlgorithm.env_settings`
(and of the policy, :meth:`OnlineAlgorithm.policy_settings`).
Everything else — building from a :class:`rlhf_gym.agents.experiment.TrainConfig`, resuming, the budget, checkpoints and
the counters of a run — is here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .callbacks import LearningCurveCallback, ResponseCheckpoint, read_curve, truncate_curve
from .registry import AlgorithmTraits
from .schedules import learning_rate_schedule

if TYPE_CHECKING:  # the builder imports this module: no cycle at run time
    from .experiment import TrainConfig
    from .vec_env import RLHFVecEnv


class OnlineAlgorithm:
    """Mixin of :class:`rlhf_gym.agents.TokenPPO` (first in its bases): the contract's class and instance methods."""

    traits: ClassVar[AlgorithmTraits]
    Config: ClassVar[type]

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def env_settings(cls, config: Any) -> dict[str, Any]:
        """Keyword arguments the env needs for this algorithm (given its ``Config``): the KL coefficient of the env's
        reward when it acts there, the group size of a group-sampling algorithm."""
        settings: dict[str, Any] = {}
        if cls.traits.kl == "reward" and config.kl_coef is not None:
            settings["beta"] = config.kl_coef
        elif cls.traits.kl == "loss":
            settings["beta"] = 0.0  # the KL is a term of the loss; the env still measures and reports it
        if cls.traits.group_sampling:
            settings["group_size"] = config.group_size
        return settings

    @classmethod
    def algorithm_kwargs(cls, config: Any) -> dict[str, Any]:
        """This algorithm's own constructor arguments from its ``Config`` (beyond learning rate, batch and epochs)."""
        return {}

    @classmethod
    def policy_settings(cls, config: Any, env: RLHFVecEnv) -> dict[str, Any]:
        """:class:`rlhf_gym.agents.TransformerPolicy` arguments this algorithm's ``Config`` sets (TokenPPO: where its
        critic lives); none by default."""
        return {}

    @classmethod
    def from_config(cls, train_config: TrainConfig, env: RLHFVecEnv, *, device: torch.device, parallel: Any,
                    tensorboard_log: str | None):
        """A new agent on ``env`` with the run's settings (this process's share of each minibatch)."""
        config = train_config.algorithm_config()
        return cls("TransformerPolicy", env, learning_rate=learning_rate_schedule(config.learning_rate, config.lr_schedule),
                   batch_size=parallel.share(config.batch_size, "--batch-size"), n_epochs=config.n_epochs,
                   amp=train_config.amp_on(device, env.batched_env.ref_model), seed=train_config.seed, device=device,
                   parallel=parallel,
                   tensorboard_log=tensorboard_log,
                   policy_kwargs={"model_name_or_path": train_config.model, "temperature": env.batched_env.temperature,
                                  "lora": train_config.lora_settings(), **cls.policy_settings(config, env)},
                   **cls.algorithm_kwargs(config))

    @classmethod
    def resume(cls, checkpoint: str | Path, train_config: TrainConfig, env: RLHFVecEnv, *, device: torch.device,
               parallel: Any, tensorboard_log: str | None):
        """The agent of ``checkpoint`` on ``env``, ready to continue (optimizer, counters, the env's KL controller)."""
        batch_size = parallel.share(train_config.algorithm_config().batch_size, "--batch-size")
        return cls.load(checkpoint, env=env, device=device, parallel=parallel, batch_size=batch_size,
                        tensorboard_log=tensorboard_log, amp=train_config.amp_on(device, env.batched_env.ref_model))

    @classmethod
    def policy_from_checkpoint(cls, path: str | Path, device: torch.device):
        """The trained causal LM of a saved agent, in eval mode (for ``rlhf-gym evaluate``)."""
        return cls.load(path, device=device).policy.lm.eval()

    # ------------------------------------------------------------------------------------------ a training run
    def learn_run(self, budget: int, run_dir: Path | None, checkpoint_every: int, progress_bar: bool, resumed: bool,
                  title: str = "") -> None:
        """Sample and train up to ``budget`` responses in all; with ``run_dir``, the learning curve (``curve.jsonl``,
        ``learning_curve.png``, titled ``title``) and a checkpoint every ``checkpoint_every`` responses: at the first
        boundary between PPO iterations at or past each multiple, ``checkpoints/agent_<responses>_responses.zip``
        (:class:`rlhf_gym.agents.callbacks.ResponseCheckpoint`)."""
        from rlhf_gym.plots import plot_learning_curve

        callbacks = ([ResponseCheckpoint(run_dir / "checkpoints", checkpoint_every),
                      LearningCurveCallback(run_dir / "curve.jsonl")] if run_dir is not None else [])
        self.learn(total_responses=budget, callback=callbacks, progress_bar=progress_bar, tb_log_name="tensorboard",
                   reset_num_timesteps=not resumed)
        curve = read_curve(run_dir / "curve.jsonl") if run_dir is not None else []
        if curve:
            coefficient = ", ".join(f"{k}={v:g}" for k, v in self.coefficients().items())
            plot_learning_curve(curve, run_dir / "learning_curve.png",
                                title=f"{title}: {self.traits.name}, {coefficient}, seed={self.seed}")

    @property
    def trained_lm(self):
        """The causal LM being trained (the policy's transformer, without its value head)."""
        return self.policy.lm

    def coefficients(self) -> dict[str, float]:
        """The KL coefficient in use: the env's (current, adaptive) beta when the KL is in the reward; a loss-KL
        algorithm overrides this with its own weight."""
        return {"kl_coef": float(self.batched_env.beta)}

    def progress(self, run_dir: Path) -> str:
        """Where a resumed run stands; the curve rows written after the checkpoint are dropped."""
        dropped = truncate_curve(run_dir / "curve.jsonl", self.n_rollouts)
        coefficients = ", ".join(f"{k} {v:.4f}" for k, v in self.coefficients().items())
        return (f"after {self.n_rollouts} iterations ({self.num_responses} responses), {coefficients}; dropped "
                f"{dropped} curve rows written after that checkpoint")

    def counters(self) -> dict[str, Any]:
        """The run's counters and final coefficients, for summary.json."""
        return {"iterations": int(self.n_rollouts), "responses": int(self.num_responses),
                "timesteps": int(self.num_timesteps), **self.coefficients()}
