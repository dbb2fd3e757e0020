"""Token-level PPO for RLHF on Stable-Baselines3's machinery.

PPO (Schulman et al. 2017, https://arxiv.org/abs/1707.06347) applied per token as in Ziegler et al. (2019)
and Ouyang et al. (2022); the implementation details follow Huang et al. (2022), "The N Implementation
Details of RLHF with PPO". SB3's ``PPO`` class supplies the learn loop, callbacks, logger, progress bar,
schedules, ``save``/``load`` and seeding; this subclass replaces the two hot parts:

* ``collect_rollouts`` samples a whole batch of responses in lock step with a KV cache, taking log-probs
  and values from the sampling pass, and reports the log-probs to the env so its KL is exact;
* ``train`` runs one forward pass per sequence (all its tokens at once) per minibatch, with the clipped
  policy loss, clipped value loss, entropy bonus, gradient clipping and early stop on approximate KL.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import explained_variance
from transformers import AutoTokenizer

from rlhf_gym.envs import RLHFVectorEnv
from rlhf_gym.checks import check_option
from rlhf_gym.divergence import check_finite_loss, check_finite_parameters
from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import CacheRows, left_pad, long_budget
from rlhf_gym.masking import apply_mask
from rlhf_gym.metrics import EPISODE_METRICS
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.tokenizers import check_same_tokenizer

from .buckets import LONG_BUDGET_BUCKETS
from .buffer import SequenceRolloutBuffer, masked_mean
from .callbacks import ResponseProgressBar
from .critic_settings import CRITICS, SEPARATE, SHARED
from .lora import builds_on_reference
from .online import OnlineAlgorithm
from .parallel import DataParallel, PolicyCall, ProcessGroupKLController
from .policy import TransformerPolicy
from .precision import AMP_MODES, amp_dtype
from .registry import AlgorithmTraits, register_algorithm
from .schedules import check_lr_schedule
from .vec_env import RLHFVecEnv, row_infos, unwrap_bridge



@dataclass
class PPOConfig:
    """TokenPPO's hyperparameters for ``rlhf-gym train --algo ppo``, with its defaults (each checked here, once)."""

    learning_rate: float = 1e-4
    """AdamW learning rate (the initial one with ``lr_schedule="linear"``). With 200 iterations of 64 responses, 1e-4
    gives the same result over seeds on RLHF-v0 (docs/training.md): at 3e-4 the policy flipped between a sound reply and
    the proxy's punctuation hack."""
    lr_schedule: str = "constant"
    """``constant``, or ``linear``: annealed to 0 over the response budget (CleanRL's ``anneal_lr``, TRL's default). On
    the default job ``linear`` halved the spread over five seeds at one thread but not at two, and lowered the mean (by
    0.02 and 0.07; README, "Results"), so the default stays constant."""
    batch_size: int = 16
    """Minibatch size, in responses."""
    n_epochs: int = 4
    """Passes over each rollout."""
    kl_coef: float | None = None
    """KL coefficient of the env's reward ``r - kl_coef * KL`` (the initial one with an adaptive controller); None: the
    env id's (0.1 for RLHF-v0)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    critic: str = SHARED
    """Where the value function lives: ``shared``, ``separate`` or ``reward_model``
    (:mod:`rlhf_gym.agents.critic_settings`)."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "n_epochs"):
            check_option(name, getattr(self, name), strict=True)
        check_lr_schedule(self.lr_schedule)
        for name in ("kl_coef", "gae_lambda", "ent_coef", "vf_coef"):
            check_option(name, getattr(self, name))
        if self.critic not in CRITICS:
            raise ConfigError(f"--critic must be one of {', '.join(CRITICS)}, got {self.critic!r}")


@register_algorithm
class TokenPPO(OnlineAlgorithm, PPO):
    """PPO over tokens on the batched RLHF env.

    :param policy: ``"TransformerPolicy"`` (or the class).
    :param env: an :class:`rlhf_gym.agents.RLHFVecEnv` (``n_envs`` rows = responses per rollout), or a registered env id,
        built with ``gym.make_vec(env, num_envs=n_envs, **env_kwargs)`` through Gymnasium's registry.
    :param learning_rate: AdamW learning rate (or schedule).
    :param batch_size: minibatch size, in *sequences*.
    :param n_epochs: PPO epochs per rollout.
    :param gamma: discount per token (1: the episode return is the response's reward).
    :param gae_lambda: GAE lambda.
    :param clip_range: policy ratio clip.
    :param clip_range_vf: value clip around the rollout's values (None: off).
    :param normalize_advantage: whiten advantages over each rollout's tokens.
    :param normalize_rewards: scale rewards by the running std of episode returns.
    :param ent_coef: entropy bonus weight.
    :param vf_coef: value loss weight.
    :param max_grad_norm: gradient-norm clip.
    :param target_kl: SB3's early stop: end the epochs of an update when the approximate KL passes
        ``1.5 * target_kl`` (not the env's adaptive-beta target, which is the env's ``kl_target``).
    :param amp: mixed precision: ``"bf16"`` (autocast on CUDA and on the CPU), ``"fp16"`` (CUDA only, with a gradient
        scaler; ignored on the CPU) or None (float32).
    :param use_action_masks: NLPO (Ramamurthy et al. 2022): sample from, and compute the ratio and entropy of,
        the policy restricted to the env's top-p masks (``action_masks()``; the env needs ``mask_top_p``).
        The log-probs reported to the env for its KL term are the *unmasked* ones: the KL leash measures the
        policy itself against the reference, not the masked sampler.
    :param mask_refresh_every: NLPO: copy the policy into the env's masking model every this many rollouts.
    :param parallel: the processes of a data-parallel run (:meth:`rlhf_gym.agents.parallel.DataParallel.from_launch`); the env
        then holds this process's share of the rows, and ``batch_size`` is this process's share of a minibatch. None:
        one process.
    :param n_envs: rows when ``env`` is an id.
    :param env_kwargs: keyword arguments of the env when ``env`` is an id (they override the id's registered ones).
    :param policy_kwargs: keyword arguments of :class:`rlhf_gym.agents.TransformerPolicy`; ``model_name_or_path`` defaults to
        the env's reference model (and the policy's tokenizer must then be the env's). With ``lora`` settings (a dict of
        :class:`rlhf_gym.agents.lora.LoraSettings`' fields) the policy trains LoRA adapters on the reference's own weights.
    """

    traits = AlgorithmTraits("ppo", "PPO over tokens with a value head and GAE (Ziegler et al. 2019)", online=True)
    Config = PPOConfig
    policy_aliases = {"TransformerPolicy": TransformerPolicy}
    trains_value_head = True

    @classmethod
    def algorithm_kwargs(cls, config: PPOConfig) -> dict[str, Any]:
        return {"gae_lambda": config.gae_lambda, "ent_coef": config.ent_coef, "vf_coef": config.vf_coef}

    @classmethod
    def policy_settings(cls, config: PPOConfig, env: RLHFVecEnv) -> dict[str, Any]:
        """The :class:`TransformerPolicy` arguments of ``config.critic``.

        :raises ConfigError: for ``reward_model`` when the env's reward is not a reward model saved in a directory, or
            when its tokenizer is not the policy's (the critic reads the policy's token ids).
        """
        if config.critic == SHARED:
            return {}
        if config.critic == SEPARATE:
            return {"share_trunk": False}
        reward = env.batched_env.reward_fn
        directory = getattr(getattr(reward, "model", None), "name_or_path", "")
        if not isinstance(reward, RewardModel) or not directory or not Path(directory).is_dir():
            raise ConfigError("--critic reward_model initialises the critic from the env's reward model, which must be a "
                              f"reward model saved in a directory; this env's reward is a {type(reward).__name__}"
                              + (f" loaded from {directory!r}" if directory else ""))
        check_same_tokenizer(reward.tokenizer, env.batched_env.tokenizer, f"the reward model {directory} (--critic "
                             "reward_model: the critic reads the policy's token ids)", "the policy's")
        return {"share_trunk": False, "value_init": "reward_model", "reward_model_path": str(directory)}

    def __init__(
        self,
        policy: str | type[TransformerPolicy],
        env: RLHFVecEnv | str,
        learning_rate: float = 3e-4,
        batch_size: int = 16,
        n_epochs: int = 4,
        gamma: float = 1.0,
        gae_lambda: float = 0.95,
        clip_range: float = 0.2,
        clip_range_vf: float | None = 0.2,
        normalize_advantage: bool = True,
        normalize_rewards: bool = False,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 1.0,
        target_kl: float | None = None,
        amp: str | None = None,
        use_action_masks: bool = False,
        mask_refresh_every: int = 5,
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
            env = RLHFVecEnv(num_envs=n_envs, env_id=env, **(env_kwargs or {}))
        batched = unwrap_bridge(env).batched_env if env is not None else None
        if amp not in (None, *AMP_MODES):
            raise ConfigError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
        if use_action_masks and batched is not None and not batched.has_action_masks:
            raise ConfigError("use_action_masks=True needs an env built with mask_top_p=... (and/or mask_top_k=...)")
        self.parallel = parallel or DataParallel()
        if self.parallel.distributed and amp == "fp16":
            raise ConfigError("amp='fp16' keeps its own gradient scaler, which data-parallel runs do not use: use bf16, or "
                              "set mixed_precision: fp16 in Accelerate's config")
        self.amp, self.normalize_rewards = amp, normalize_rewards
        self.algorithm = self.traits.name  # saved with the agent: a checkpoint names its algorithm (agents.registry)
        self.use_action_masks, self.mask_refresh_every = use_action_masks, mask_refresh_every
        self.n_rollouts = 0  # PPO iterations so far: one rollout of n_envs responses, then one update
        self.num_responses = 0  # responses sampled so far (n_envs per rollout)
        self._response_budget: int | None = None  # learn(total_responses=...)'s target, checked before each rollout
        # running statistics of the responses' returns, for normalize_rewards (as VecNormalize's return scaling, which
        # lock-step agents cannot wrap around the env); saved with the agent so a resumed run keeps the same scale
        self.return_rms = RunningMeanStd(shape=())
        self.kl_controller_state: dict | None = None
        with warnings.catch_warnings():  # SB3 counts minibatches in tokens; ours are whole responses
            warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
            # n_steps = the response budget: the buffer has one column per token step, and every response ends within it
            super().__init__(
                policy, env, learning_rate=learning_rate, n_steps=batched.max_new_tokens if batched is not None else 1,
                batch_size=batch_size, n_epochs=n_epochs, gamma=gamma, gae_lambda=gae_lambda, clip_range=clip_range,
                clip_range_vf=clip_range_vf, normalize_advantage=normalize_advantage, ent_coef=ent_coef, vf_coef=vf_coef,
                max_grad_norm=max_grad_norm, target_kl=target_kl, stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs, verbose=verbose, seed=seed, device=device,
                rollout_buffer_class=SequenceRolloutBuffer, rollout_buffer_kwargs={"with_action_masks": use_action_masks},
                _init_setup_model=False,
            )
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------------------------------ setup
    @property
    def batched_env(self) -> RLHFVectorEnv | None:
        """The Gymnasium batched env behind ``self.env`` (driven through its public surface only)."""
        return None if self.env is None else unwrap_bridge(self.env).batched_env

    def _setup_model(self) -> None:
        """SB3's setup (schedules, seeding, rollout buffer, policy, clip schedules), with the policy defaulting to
        the env's reference model. A LoRA policy on the reference is built on the reference object itself, and the env
        then scores with its adapters off: one copy of the base weights (:mod:`rlhf_gym.agents.lora`)."""
        from_reference = self._fill_policy_model()
        if self.env is not None and long_budget(self.batched_env.max_new_tokens):  # unless the caller chose
            self.policy_kwargs.setdefault("max_length_buckets", LONG_BUDGET_BUCKETS)
        kwargs = self.policy_kwargs
        lora_on_reference = self.env is not None and builds_on_reference(kwargs, self.batched_env.ref_model)
        if lora_on_reference:  # for the build only: the saved kwargs keep the reference's directory
            self.policy_kwargs = {**kwargs, "model_name_or_path": self.batched_env.ref_model}
        super()._setup_model()
        self.policy_kwargs = kwargs
        if lora_on_reference:
            self.batched_env.share_reference(self.policy.reference_model)
        elif from_reference:  # the reference's weights, even where they differ from its files (a model built in memory)
            self.policy.lm.load_state_dict(self.batched_env.ref_model.state_dict())
        # the minibatch order has a generator of its own: reproducible from the seed whatever else draws from torch's
        # global RNG (the rollout's sampling does, and the number of draws depends on the response lengths)
        self._shuffle = torch.Generator().manual_seed(self.seed if self.seed is not None else 0)
        # loss scaling for fp16 only: its narrow exponent range underflows small gradients; bf16 has float32's range
        self._grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16" and self.device.type == "cuda")
        # frozen where no loss trains it (critic-free): DDP fails on parameters that require grad but get none
        self.policy.value_head.requires_grad_(self.trains_value_head)
        # every policy computation goes through one module, which a data-parallel engine wraps (rlhf_gym.agents.parallel)
        self._policy_call, self.policy.optimizer = self.parallel.prepare(PolicyCall(self.policy), self.policy.optimizer)
        # advantages are whitened with every process's statistics, so all processes take steps of the same scale
        self.rollout_buffer.sum_over_processes = self.parallel.sum
        if self.env is not None:
            self._attach_env()
            self._follow_env_kl_controller()

    def _attach_env(self) -> None:
        """Drive the env as a lock-step agent: its scoring deferred to one pass per rollout where the KL is paid at the
        end (:meth:`rlhf_gym.envs.RLHFVectorEnv.defer_scoring`), and in a data-parallel run its KL controller updated once per
        rollout over all processes' responses."""
        batched = self.batched_env
        # one reference pass and one reward-model call per rollout, instead of one per step where some row ends; only
        # with the KL paid at the end (a per-token KL reward needs the reference at every step anyway)
        batched.defer_scoring(batched.config.kl_placement == "terminal")
        controller = batched.kl_controller
        # each process sees its own rows' KL: an unwrapped adaptive controller would give each process its own beta, and
        # the processes would then optimise different rewards
        if self.parallel.distributed and not isinstance(controller, ProcessGroupKLController):
            self.batched_env.set_kl_controller(ProcessGroupKLController(controller, self.parallel))

    def set_random_seed(self, seed: int | None = None) -> None:
        """SB3's seeding (torch, numpy, the env's prompts), at this process's seed in a data-parallel run."""
        super().set_random_seed(self.parallel.process_seed(seed))

    @property
    def responses_per_rollout(self) -> int:
        """Responses per rollout over all processes (``n_envs`` in one process)."""
        return self.n_envs * self.parallel.num_processes

    def _fill_policy_model(self) -> bool:
        """Start the policy from the env's reference unless told otherwise (True when it does so); a policy given
        explicitly must share the env's tokenizer, or its actions would decode to other words.

        The saved ``policy_kwargs`` name the reference's directory when it has one (the architecture to rebuild
        on ``load``, whose saved weights then replace it), else hold the model object itself.
        """
        env = self.batched_env
        if env is None:
            return False
        given = self.policy_kwargs.get("model_name_or_path")
        if given is None:
            path = getattr(env.ref_model, "name_or_path", "")
            self.policy_kwargs["model_name_or_path"] = path if path and Path(path).is_dir() else env.ref_model
            return True
        if isinstance(given, (str, Path)):
            try:
                policy_tokenizer = AutoTokenizer.from_pretrained(given)
            except OSError:
                return False  # no tokenizer files beside the model: the policy checks the vocabulary size
            check_same_tokenizer(policy_tokenizer, env.tokenizer, f"policy {str(given)!r}", "the env's tokenizer")
        return False

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_shuffle", "_grad_scaler", "_response_budget", "parallel",
                "_policy_call"]

    @classmethod
    def load(cls, path, env=None, device: torch.device | str = "auto", custom_objects: dict[str, Any] | None = None,
             print_system_info: bool = False, force_reset: bool = True, **kwargs):
        """SB3's ``load``: the agent saved at ``path`` (weights, optimizer, counters), on ``env`` when one is given.

        The KL coefficient is the given env's, never silently the saved one. When ``env`` is configured as the saved
        agent's env was (the same ``beta``, ``kl_target`` and ``kl_horizon`` of its :class:`rlhf_gym.envs.RLHFEnvConfig`),
        its KL controller continues from the saved state: an adaptive controller's beta goes on from where it was, as a
        resumed run (``rlhf-gym train --resume``) needs. An env configured otherwise (``beta=0.3`` for an agent saved
        with 0.1, another ``kl_target``) keeps its own controller as built, and a warning names both settings and the
        saved beta. :meth:`set_env` follows the new env the same way.
        """
        return super().load(path, env=env, device=device, custom_objects=custom_objects,
                            print_system_info=print_system_info, force_reset=force_reset, **kwargs)

    def set_env(self, env, force_reset: bool = True) -> None:
        """SB3's ``set_env``. The KL controller follows the new env as in :meth:`load`: the new env continues this
        agent's beta (its current env's, else the saved one) when configured the same, else keeps its own, with a
        warning."""
        if self.env is not None:  # the beta this agent has reached is its current env's
            self.kl_controller_state = self.batched_env.kl_controller.state_dict()
            self.kl_controller_settings = self._env_kl_settings()
        super().set_env(unwrap_bridge(env), force_reset)
        self._attach_env()
        self._follow_env_kl_controller()

    def _env_kl_settings(self) -> dict[str, Any]:
        """How the env's KL controller is configured: its initial ``beta``, and ``kl_target`` and ``kl_horizon`` when
        it is adaptive (None when fixed)."""
        config = self.batched_env.config
        adaptive = config.kl_target is not None
        return {"beta": float(config.beta), "kl_target": float(config.kl_target) if adaptive else None,
                "kl_horizon": int(config.kl_horizon) if adaptive else None}

    def _follow_env_kl_controller(self) -> None:
        """Restore the saved KL-controller state on the env when the env is configured as the saved agent's was; else
        leave the env's controller as built and warn (:meth:`load`)."""
        state = self.kl_controller_state
        if state is None or self.env is None:
            return
        settings = self._env_kl_settings()
        saved = getattr(self, "kl_controller_settings", None)
        if saved is None:  # an agent saved before its settings were: what its state tells (not an adaptive initial beta)
            adaptive = "target" in state
            saved = {"beta": settings["beta"] if adaptive else float(state["beta"]),
                     "kl_target": float(state["target"]) if adaptive else None,
                     "kl_horizon": int(state.get("horizon", 10000)) if adaptive else None}
        controller = self.batched_env.kl_controller
        if saved == settings:
            controller.load_state_dict(state)
            return

        def describe(s: dict[str, Any]) -> str:
            if s["kl_target"] is None:
                return f"fixed beta {s['beta']:g}"
            return f"adaptive, initial beta {s['beta']:g}, kl_target {s['kl_target']:g}, kl_horizon {s['kl_horizon']}"

        warnings.warn(f"{type(self).__name__}: the env's KL controller ({describe(settings)}) is not the saved agent's "
                      f"({describe(saved)}; beta {float(state['beta']):g} when saved): the agent follows the env, beta "
                      f"{float(controller.beta):g}. To continue the saved beta, give an env configured as the saved one.",
                      stacklevel=2)

    def save(self, path, exclude=None, include=None) -> None:
        """SB3 ``save``, with the env's KL-controller state (beta) and settings (:meth:`load`) stored beside the weights
        and optimizer; in a data-parallel run the main process writes (every process holds the same weights)."""
        check_finite_parameters(self.policy, f"the agent to {path}")
        if self.env is not None:
            self.kl_controller_state = self.batched_env.kl_controller.state_dict()
            self.kl_controller_settings = self._env_kl_settings()
        if self.parallel.is_main_process:
            super().save(path, exclude=exclude, include=include)

    def export_pretrained(self, directory: str | Path) -> None:
        """Write the policy as a plain HF model directory with tokenizer (loadable by ``pipeline``)."""
        check_finite_parameters(self.policy, f"the policy to {directory}")
        self.policy.export_pretrained(directory, self.batched_env.tokenizer if self.env is not None else None)

    def _autocast(self):
        """Autocast of the policy's forward passes: bf16 on CUDA and on the CPU (where it pays on CPUs with bf16 matrix
        instructions, AVX512-BF16 or AMX), fp16 on CUDA only; float32 otherwise."""
        if self.amp is None or self.device.type not in ("cuda", "cpu") or (self.amp == "fp16" and self.device.type != "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=amp_dtype(self.amp))

    # -------------------------------------------------------------------------------------- learning
    def learn(self, total_timesteps: int | None = None, callback=None, log_interval: int = 1,
              tb_log_name: str = "TokenPPO", reset_num_timesteps: bool = True, progress_bar: bool = False,
              total_responses: int | None = None):
        """SB3's ``learn``, with the budget in either unit (give exactly one):

        :param total_timesteps: SB3's unit, environment steps x rows. A rollout takes as many steps as its longest
            response, so the number of PPO iterations it buys depends on how long the responses are.
        :param total_responses: responses to sample in all (TRL's ``total_episodes``), counted from the start of
            the run, also across a resume (``reset_num_timesteps=False``): training stops before the first rollout
            that would begin with ``num_responses >= total_responses``, i.e. after
            ``ceil(total_responses / n_envs)`` PPO iterations in all. The progress bar then counts responses.
        """
        if (total_timesteps is None) == (total_responses is None):
            raise ConfigError("learn() takes exactly one budget: total_timesteps or total_responses")
        if total_responses is None:
            self._response_budget = None
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
        if total_responses <= 0:
            raise ConfigError(f"total_responses must be > 0, got {total_responses}")
        if reset_num_timesteps:
            self.num_responses = self.n_rollouts = 0
        self._response_budget = total_responses
        # ceil((budget - done) / per rollout): the last rollout may overshoot the budget, never fall short of it
        rollouts_left = max(0, -(-(total_responses - self.num_responses) // self.responses_per_rollout))
        # an upper bound in SB3's unit (a rollout takes at most n_steps steps); the response budget stops it first
        bound = max(1, rollouts_left * self.responses_per_rollout * self.n_steps)
        if progress_bar:
            # SB3 takes one callback, a list of them or a CallbackList: the bar joins whichever was given
            given = (callback.callbacks if isinstance(callback, CallbackList) else list(callback)
                     if isinstance(callback, list) else [] if callback is None else [callback])
            callback = [ResponseProgressBar(total_responses), *given]
        return super().learn(bound, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar=False)

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        """SB3's ``progress_remaining`` (1 -> 0), which learning-rate and clip-range schedules read before each update.

        With a response budget it is the share of the budget that was still to sample when the rollout of this update
        began, as CleanRL's ``anneal_lr`` does: the first update reads 1, the last one (of ``n``) ``1 / n``, never 0.
        (SB3's own count of steps would not end near 0: ``learn`` passes it an upper bound, as a rollout takes as many
        steps as its longest response.) A resumed run reads the same values as an uninterrupted one.
        """
        if self._response_budget is None:
            super()._update_current_progress_remaining(num_timesteps, total_timesteps)
            return
        # called after collect_rollouts, which has already counted this rollout's responses
        sampled_before = self.num_responses - self.responses_per_rollout
        self._current_progress_remaining = max(0.0, 1.0 - sampled_before / self._response_budget)

    # -------------------------------------------------------------------------------------- rollouts
    def collect_rollouts(self, env: RLHFVecEnv, callback: BaseCallback, rollout_buffer: SequenceRolloutBuffer,
                         n_rollout_steps: int) -> bool:
        """Sample one response per row with a KV cache, stepping the env token by token, then compute GAE.

        All rows start together and the env's autoreset is off: a row that has finished waits (its actions are
        ignored, its buffer mask is False) until every row has finished or the budget ``n_rollout_steps`` is spent.
        """
        if self._response_budget is not None and self.num_responses >= self._response_budget:
            return False  # the response budget is spent (SB3's learn then ends as after a callback's stop)
        batched = unwrap_bridge(env).batched_env
        self.policy.set_training_mode(False)
        callback.on_rollout_start()
        # NLPO: the masking model is a delayed copy of the policy (Ramamurthy et al.), refreshed at the start of rollouts
        # 0, k, 2k, ... (k = mask_refresh_every); a frozen "reference" masking model is never refreshed
        if self.use_action_masks and batched.mask_model_refreshable and self.n_rollouts % self.mask_refresh_every == 0:
            batched.refresh_mask_model(self.policy.plain_lm(same_layout=True))
        self.n_rollouts += 1
        _, reset_info = batched.reset()
        # left padding puts every row's next token in the last column, so one incremental forward serves the whole batch
        # (rlhf_gym.generation); the policy's position ids skip the padding
        queries, query_mask = left_pad([batched.prompt_ids[i] for i in reset_info["prompt_index"]], batched.pad_token_id,
                                       self.device)
        rollout_buffer.start(queries, query_mask)
        alive = torch.ones(self.n_envs, dtype=torch.bool, device=self.device)  # rows still writing their response
        attention = query_mask  # grows by one column per step: the KV cache's attention mask
        episodes: dict[int, dict] = {}  # row -> the final info of its response
        # the rows the KV cache holds: on long budgets, only those still writing once most have ended
        cached = CacheRows(self.n_envs, self.device, long_budget(n_rollout_steps))
        with torch.no_grad(), self._autocast():
            logits, values, caches = self._policy_call("start", queries, query_mask)
            for _ in range(n_rollout_steps):  # the env truncates every response at this budget, so all rows end in it
                logp = unmasked_logp = torch.log_softmax(logits.float(), dim=-1)
                masks = None
                if self.use_action_masks:
                    masks = batched.action_masks(as_tensor=True)
                    logp = torch.log_softmax(apply_mask(logits.float(), masks), dim=-1)
                actions = torch.multinomial(logp.exp(), 1).squeeze(-1)
                # a finished row emits padding; the env ignores it and the buffer masks it out. It still needs an action:
                # the env takes one per row (its logits are zeros once the KV cache has dropped it)
                actions = torch.where(alive, actions, torch.full_like(actions, batched.pad_token_id))
                # the sampler's log-probs (masked under NLPO) are the old log-probs of the PPO ratio, which the update
                # recomputes under the same masks
                chosen = logp.gather(-1, actions[:, None]).squeeze(-1)
                # the env's KL is of the policy itself against the reference, so it gets the unmasked log-probs (under
                # NLPO the masked ones would measure the sampler, not the policy), the sampling pass's own numbers.
                # NaN: a finished row takes no action
                reported = unmasked_logp.gather(-1, actions[:, None]).squeeze(-1)
                batched.report_logprobs(reported, rows=alive)
                _, rewards, terminated, truncated, info = batched.step(actions.cpu().numpy())
                rewards = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
                # a finished row's reward at this step is a late one (deferred scoring): written here, at a padding
                # column, GAE would drop it, so it goes to the row's last token below
                rollout_buffer.add(actions, alive, chosen, values, torch.where(alive, rewards, 0.0), masks)
                # SB3's unit (steps x rows) over all processes, so every process counts the same global budget
                self.num_timesteps += self.responses_per_rollout
                ended = self._episode_infos(info)
                # deferred scoring pays the rows that ended before this step now: at their own last token
                late = torch.as_tensor([row for row in ended if not alive[row]], dtype=torch.long, device=self.device)
                rollout_buffer.add_late_rewards(late, rewards[late])
                episodes.update(ended)
                callback.update_locals(locals())
                if not callback.on_step():
                    return False  # SB3's contract: a callback that returns False ends learn()
                alive = alive & ~torch.as_tensor(terminated | truncated, device=self.device)
                if not alive.any():
                    break
                # the mask must cover the cache plus the token fed now, so it grows by one column per step (0 for rows
                # that have ended: their outputs are no longer used)
                attention = torch.cat([attention, alive[:, None].long()], dim=1)
                # once most rows have ended, a step runs only the rows the cache still holds (rlhf_gym.generation)
                caches = cached.compact(alive, *caches)
                logits, values, caches = self._policy_call("advance", cached.take(actions), cached.take(attention), caches)
                logits, values = cached.spread(logits), cached.spread(values)
        self.num_responses += self.responses_per_rollout
        # once per rollout, after the env has scored every row: one beta update from all processes' KL (a collective call)
        if isinstance(batched.kl_controller, ProcessGroupKLController):
            batched.kl_controller.synchronise()
        self._record_rollout([episodes[row] for row in sorted(episodes)], batched.beta)
        self._compute_advantages(rollout_buffer, episodes)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _compute_advantages(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> None:
        """PPO: rewards scaled by the running return std (``normalize_rewards``), then GAE with the critic's values.
        Critic-free subclasses (:class:`rlhf_gym.agents.RLOO`, :class:`rlhf_gym.agents.GRPO`) replace this with their
        group baselines."""
        if self.normalize_rewards:
            # scaled by the std of the returns and not centred, as VecNormalize does: a positive scale leaves the best
            # policy unchanged, while a shift of per-token rewards would change what a longer response earns. Every
            # process's returns go into the statistics, so all processes keep the same return_rms and divide alike
            returns = self.parallel.gather(rollout_buffer.rewards.sum(1)).cpu().numpy()  # every process's responses
            self.return_rms.update(returns)
            # before GAE, so the critic learns the scaled returns; 1e-8 keeps the division finite when returns barely vary
            rollout_buffer.rewards /= float(np.sqrt(self.return_rms.var + 1e-8))
        rollout_buffer.compute_returns_and_advantage()

    def _episode_infos(self, info: dict) -> dict[int, dict]:
        """The final infos of the episodes that ended in this step, by row (also fed to SB3's ``ep_info_buffer``)."""
        # a final info carries the scores; with deferred scoring every row's arrives at the rollout's last step
        episodes = {row: i for row, i in enumerate(row_infos(info, self.n_envs)) if "proxy_reward" in i}
        for episode in episodes.values():
            self.ep_info_buffer.append({"r": float(episode["terminal_reward"]), "l": int(episode["response_length"])})
        return episodes

    def _record_rollout(self, infos: list[dict], beta: float) -> None:
        """Log the rollout's means over every process's responses (``rlhf/<metric>``), kept in :attr:`rollout_means`;
        this process's final infos are kept in :attr:`last_rollout_infos`."""
        # a fixed list of keys, not the keys this process's infos hold: mean() is a collective call that every process
        # must make for the same keys in the same order (a key no process has gives NaN and is dropped)
        means = {key: self.parallel.mean([float(i[key]) for i in infos if key in i]) for key in (*EPISODE_METRICS, "eos")}
        self.rollout_means = {key: value for key, value in means.items() if not np.isnan(value)}
        for key, value in self.rollout_means.items():
            self.logger.record("rlhf/eos_share" if key == "eos" else f"rlhf/{key}", value)
        self.logger.record("rlhf/beta", beta)  # the env's reward coefficient; 0 where the KL is in the loss
        for name, value in self.coefficients().items():  # the coefficient actually used, wherever it acts
            self.logger.record(f"rlhf/{name}", value)
        self.last_rollout_infos = infos

    # ---------------------------------------------------------------------------------------- update
    def _optimizer_step(self, loss: torch.Tensor) -> None:
        """Backward, gradient-norm clip and one optimizer step (gradients averaged over the processes of a
        data-parallel run)."""
        self.policy.optimizer.zero_grad(set_to_none=True)
        if self.parallel.distributed:
            # Accelerate's backward all-reduces the gradients (and applies its own fp16 scaler when configured so), and
            # its clip unscales first and clips the global norm, the same on every process
            self.parallel.backward(loss)
            self.parallel.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            return
        # fp16 scales the loss against underflow; the scaler is a pass-through for bf16 and float32
        self._grad_scaler.scale(loss).backward()
        # unscaled before clipping, so that max_grad_norm bounds the true gradient norm
        self._grad_scaler.unscale_(self.policy.optimizer)
        # the clip bounds the step when a minibatch's gradient is unusually large (a few tokens can dominate it)
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        # skips the step when fp16 gradients overflowed (inf/NaN), and adapts the scale
        self._grad_scaler.step(self.policy.optimizer)
        self._grad_scaler.update()

    def minibatch_tokens(self, mask: torch.Tensor) -> torch.Tensor:
        """The normaliser of a minibatch's token means: its response tokens, or in a data-parallel run the tokens of the
        whole minibatch over all processes divided by their number. Each process's loss is then its share of the mean
        over the global minibatch, and the engine's average of the gradients is the gradient of that mean."""
        # not the local count: processes with more tokens in their share would otherwise weigh each token less
        return self.parallel.sum(mask.sum()) / self.parallel.num_processes

    def train(self) -> None:
        """PPO epochs over minibatches of whole sequences (one forward pass per sequence per minibatch)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = self.clip_range_vf(self._current_progress_remaining) if self.clip_range_vf is not None else None
        pg_losses, value_losses, entropy_losses, clip_fractions, approx_kls = [], [], [], [], []
        continue_training = True
        buffer = self.rollout_buffer
        for epoch in range(self.n_epochs):
            for batch in buffer.get(self.batch_size, self._shuffle, self.normalize_advantage):
                mask = batch.response_mask.float()
                # every loss is a mean over response tokens (padding masked out), normalised by the global minibatch's
                # token count so that data-parallel processes average to one mean
                tokens = self.minibatch_tokens(mask)
                with self._autocast():
                    # the NLPO masks go in too: the ratio and entropy are those of the masked policy that sampled
                    logprobs, entropy, values = self._policy_call(
                        "evaluate_sequences", batch.queries, batch.query_mask, batch.responses, batch.response_mask,
                        batch.action_masks, entropy_grad=self.ent_coef != 0)
                # with dropout off (policy.disable_dropout) the first minibatch's ratio is 1 up to rounding: the update
                # sees the function that sampled (checked by tests/test_policy.py)
                log_ratio = logprobs - batch.old_logprobs
                ratio = torch.exp(log_ratio)
                # PPO's clipped surrogate, negated: the max of the two losses is the min of the two objectives, the
                # pessimistic bound that gains nothing from moving the ratio out of [1 - eps, 1 + eps]
                pg_loss = masked_mean(torch.max(-batch.advantages * ratio,
                                                -batch.advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)), mask,
                                      tokens)
                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = batch.old_values + torch.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
                # value clipping as OpenAI's baselines and Ziegler et al. (Huang et al. 2022): the larger of the clipped
                # and unclipped errors, so the critic gains nothing from moving more than clip_range_vf from the
                # rollout's values in one update (SB3 uses the clipped error alone). Without clipping both are the same
                value_error = torch.max((values - batch.returns) ** 2, (values_pred - batch.returns) ** 2)
                value_loss = 0.5 * masked_mean(value_error, mask, tokens)
                entropy_loss = -masked_mean(entropy, mask, tokens)  # minimised: the bonus raises the entropy
                loss = pg_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                check_finite_loss(loss, f"PPO iteration {self.n_rollouts}, epoch {epoch + 1} (policy-gradient loss "
                                        f"{pg_loss.item():.4g}, value loss {value_loss.item():.4g})")
                with torch.no_grad():
                    # SB3's estimator of KL(pi_old || pi) (Schulman's k3: >= 0, low variance), over this process's tokens
                    approx_kl = masked_mean(torch.exp(log_ratio) - 1 - log_ratio, mask).item()
                    clip_fractions.append(masked_mean(((ratio - 1).abs() > clip_range).float(), mask).item())
                pg_losses.append(pg_loss.item())
                value_losses.append(value_loss.item())
                entropy_losses.append(entropy_loss.item())
                approx_kls.append(approx_kl)
                # SB3's early stop, checked before the step: once the policy has moved too far from the rollout's, this
                # minibatch and the rest of the update are skipped; the 1.5 margin is SB3's (and Spinning Up's). In a
                # data-parallel run every process must decide alike (one that stopped would leave the others waiting in
                # the gradient all-reduce), so the decision is taken on the mean over all processes' minibatch shares
                if self.target_kl is not None and self.parallel.mean([approx_kl]) > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch} due to reaching max kl: {approx_kl:.3f}")
                    break
                self._optimizer_step(loss)
            self._n_updates += 1  # SB3 counts epochs
            if not continue_training:
                break
        # over response tokens only (padding holds 0 in both); this process's rollout: a diagnostic, not reduced
        mask = buffer.response_mask
        explained = explained_variance(buffer.values[mask].cpu().numpy(), buffer.returns[mask].cpu().numpy())
        # the logged means are over every process's minibatches (each process's own differ by their data)
        self.logger.record("train/entropy_loss", self.parallel.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", self.parallel.mean(pg_losses))
        self.logger.record("train/value_loss", self.parallel.mean(value_losses))
        self.logger.record("train/approx_kl", self.parallel.mean(approx_kls))
        self.logger.record("train/clip_fraction", self.parallel.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())  # the last minibatch's, as SB3 logs it
        self.logger.record("train/explained_variance", explained)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
