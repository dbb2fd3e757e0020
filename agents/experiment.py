"""One builder of env + agent, used by ``scripts/train_agent.py``, the beta sweep and every future trainer.

:class:`TrainConfig` is the documented configuration of a training run (each field has its command-line
help); :func:`build_env_and_agent` turns it into the SB3 env bridge and the agent, so that every entry
point trains the same way for the same config. :func:`held_out_evaluator` scores a policy on the task's
held-out prompts with the env's reward model, reference and task, at a seed derived from the run's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlhf_gym.envs.config import KL_PLACEMENTS
from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.evaluation import Evaluation, evaluate_policy
from rlhf_gym.kl import KL_ESTIMATORS

from .critic_free import DEFAULT_GROUP_SIZE
from .dpo import DPO
from .dpo import LOSS_TYPES as DPO_LOSSES
from .grpo import GRPO, LOSS_TYPES
from .lora import ALL_LINEAR, ALL_LINEAR_AND_HEAD, LoraSettings
from .parallel import DataParallel
from .ppo import AMP_DTYPES, TokenPPO
from .rloo import RLOO
from .vec_env import RLHFVecEnv

RL_ALGOS: dict[str, type[TokenPPO]] = {"ppo": TokenPPO, "nlpo": TokenPPO, "rloo": RLOO, "grpo": GRPO}
"""The online algorithms and their classes (all on TokenPPO's rollout)."""
ALGOS = (*RL_ALGOS, "dpo")
DEFAULT_EPOCHS = {"ppo": 4, "nlpo": 4, "rloo": 1, "grpo": 1}
"""Passes over each rollout when --n-epochs is not given: PPO's 4; RLOO and GRPO take one (TRL's num_iterations)."""
DEFAULT_GRPO_BETA = 0.04
"""GRPO's KL weight in the loss (Shao et al. 2024)."""
DEFAULT_DPO_BETA, DPO_LEARNING_RATE, DPO_BATCH_SIZE = 0.5, 3e-4, 64
"""DPO's defaults, chosen for one epoch on RLHF-v0's comparisons (see agents.dpo.DPO and docs/algorithms.md)."""
AMP_CHOICES = ("auto", *AMP_DTYPES, "none")
DEFAULT_TOTAL_RESPONSES = 12_800
"""The default run's budget: 200 PPO iterations of 64 responses (see DEFAULT_LEARNING_RATE)."""
DEFAULT_LEARNING_RATE = 1e-4
"""With 200 iterations, the default that gives the same result over seeds (docs/training.md): at 3e-4 the policy
flipped between a sound reply and the proxy's punctuation hack from one update to the next."""
LORA_LEARNING_RATE = 1e-3
"""The default with --lora-r: LoRA's adapters (rank 8 on every linear layer and the head) matched full fine-tuning on
RLHF-v0 at 1e-3 (gold 1.261 +- 0.008 over 3 seeds, docs/scaling_out.md)."""
EVAL_SEED_OFFSET = 10_000
"""Held-out evaluations sample with seed ``config.seed + EVAL_SEED_OFFSET``: a stream apart from training's."""

# TrainConfig fields passed to the env when set (None: the env id's registered value, else the env's default)
ENV_FIELDS = ("task", "ref_model", "reward_model", "prompts", "max_new_tokens", "beta", "kl_target", "kl_estimator",
              "kl_placement", "temperature")


@dataclass
class TrainConfig:
    """A training run's algorithm, env and optimisation settings."""

    algo: str = arg("ppo", "ppo; nlpo (PPO with top-p action masks from a periodically refreshed copy of the policy); "
                           "rloo (leave-one-out baseline); grpo (group-normalised advantages, k3 KL in the loss); dpo "
                           "(direct preference optimisation on comparisons, no reward model, no sampling)")
    env_id: str = arg("RLHF-v0", "registered env id (its registered arguments apply; the options below override them)")
    seed: int = arg(0, "seed of everything: prompts, sampling, initialisation, minibatch order")
    task: str | None = arg(None, "task id (default: the env id's, reviews for RLHF-v0)")
    model: str | None = arg(None, "policy to start from: HF causal LM id or directory (default: the env's reference)")
    ref_model: str | None = arg(None, "frozen reference policy for the KL term (default: the task's SFT policy)")
    reward_model: Any = arg(None, "reward model: HF id or directory (default: the task's reward model)")
    prompts: str | None = arg(None, "training prompts: .jsonl (field 'prompt') or .txt file (default: the task's train split)")
    beta: float | None = arg(None, "KL coefficient beta: of the env's reward r - beta*KL for ppo, nlpo and rloo (the "
                                   "initial value with --kl-target; default: the env's, 0.1); of grpo's k3 term in the loss "
                                   f"(default {DEFAULT_GRPO_BETA}; the env's reward then has no KL term); dpo's beta "
                                   f"(default {DEFAULT_DPO_BETA})")
    kl_target: float | None = arg(None, "adaptive KL controller (Ziegler et al. 2019) with this target KL per response")
    kl_estimator: str | None = arg(None, "per-token KL estimator: k1 or k3 (default: the env's, k1)")
    kl_placement: str | None = arg(None, "where the KL penalty is paid: terminal or per_token (default: the env's, terminal)")
    max_new_tokens: int | None = arg(None, "response budget in tokens (default: the env's, 24 for RLHF-v0)")
    temperature: float | None = arg(None, "sampling temperature (default: the env's, 1.0)")
    n_envs: int = arg(64, "responses per rollout (rows of the batched env)")
    batch_size: int | None = arg(None, f"minibatch size: responses (default 16), or comparisons for dpo ({DPO_BATCH_SIZE})")
    n_epochs: int | None = arg(None, "passes over each rollout (default: 4 for ppo and nlpo, 1 for rloo and grpo)")
    group_size: int = arg(DEFAULT_GROUP_SIZE, "rloo, grpo: responses per prompt (k); must divide --n-envs")
    comparisons: str | None = arg(None, "dpo: preference JSONL (prompt, chosen, rejected) to train on (default: the "
                                        "comparisons the task's reward model was trained on)")
    dpo_loss: str = arg("sigmoid", "dpo: sigmoid (DPO) or ipo (IPO, Azar et al. 2023)")
    label_smoothing: float = arg(0.0, "dpo: conservative DPO's label-flip probability, in [0, 0.5)")
    grpo_loss: str = arg("dapo", "grpo: average the loss over the minibatch's tokens (dapo, TRL's default) or over each "
                                 "response's tokens, then responses (grpo, the paper's)")
    learning_rate: float | None = arg(None, f"AdamW learning rate (default {DEFAULT_LEARNING_RATE:g}; dpo "
                                             f"{DPO_LEARNING_RATE:g}; with --lora-r {LORA_LEARNING_RATE:g})")
    lora_r: int | None = arg(None, "train LoRA adapters of this rank instead of the whole policy (the lora extra); the "
                                   "reference is the same model with the adapters off, so its weights are held once")
    lora_alpha: float = arg(16.0, "LoRA scale numerator: the adapters' update is (alpha / r) * B A")
    lora_target_modules: str = arg(ALL_LINEAR_AND_HEAD, f"layers to adapt: {ALL_LINEAR_AND_HEAD} (every linear layer and "
                                                        f"the output head), {ALL_LINEAR} (without the head), or names "
                                                        "separated by commas (e.g. c_attn,c_proj)")
    ent_coef: float = arg(0.0, "entropy bonus")
    vf_coef: float = arg(0.5, "value loss weight")
    gae_lambda: float = arg(0.95, "GAE lambda")
    mask_top_p: float = arg(0.9, "nlpo: keep the tokens in this top-p mass of the masking policy")
    mask_refresh_every: int = arg(5, "nlpo: copy the policy into the masking policy every this many rollouts")
    device: str = arg("auto", "cpu, cuda[:N] or auto (CUDA when present)")
    amp: str = arg("auto", "mixed precision: auto (bf16 on CUDA, none on the CPU), bf16 (autocast, also on the CPU), "
                           "fp16 (CUDA only) or none")

    def __post_init__(self) -> None:
        check_positive_options(self, ("n_envs", "batch_size", "n_epochs", "learning_rate", "mask_refresh_every",
                                      "max_new_tokens", "temperature", "kl_target", "group_size"))
        for name in ("beta", "ent_coef", "vf_coef", "gae_lambda"):
            if getattr(self, name) is not None and not math.isfinite(getattr(self, name)):
                raise ConfigError(f"--{name.replace('_', '-')} must be finite, got {getattr(self, name)}")
        if self.algo != "dpo" and self.batch_size is not None and self.batch_size > self.n_envs:
            raise ConfigError(f"--batch-size {self.batch_size} is larger than a rollout (--n-envs {self.n_envs} responses); "
                              "minibatches are counted in responses")
        if self.beta is not None and not self.beta >= 0:
            raise ConfigError(f"--beta must be >= 0, got {self.beta}")
        choices = {"algo": ALGOS, "amp": AMP_CHOICES, "kl_estimator": KL_ESTIMATORS, "kl_placement": KL_PLACEMENTS,
                   "grpo_loss": LOSS_TYPES, "dpo_loss": DPO_LOSSES}
        for name, allowed in choices.items():
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                option = f"--{name.replace('_', '-')}"
                raise ConfigError(f"{option} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 < self.mask_top_p <= 1:
            raise ConfigError(f"--mask-top-p must be in (0, 1], got {self.mask_top_p}")
        self._check_algorithm_options()
        if self.comparisons is not None and not Path(self.comparisons).is_file():
            raise MissingFileError(f"--comparisons: file not found: {self.comparisons}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be cpu, cuda[:N] or auto, got {self.device!r}")

    def _check_algorithm_options(self) -> None:
        """The options that only some algorithms take, or take only in some combinations."""
        if self.algo in ("rloo", "grpo"):
            if self.group_size < 2 or self.n_envs % self.group_size:
                raise ConfigError(f"--group-size {self.group_size}: {self.algo} needs at least 2 responses per prompt, and "
                                  f"--n-envs {self.n_envs} must be a multiple of it")
            if self.n_envs % self.minibatch:
                raise ConfigError(f"--batch-size {self.minibatch} must divide --n-envs {self.n_envs} for {self.algo}")
        if self.algo in ("grpo", "dpo") and self.kl_target is not None:
            raise ConfigError(f"--kl-target adapts the env's beta; {self.algo}'s KL term is in its loss, with a fixed --beta")
        if self.lora_r is not None:
            if self.algo == "dpo":
                raise ConfigError("--lora-r trains adapters for the online algorithms (ppo, nlpo, rloo, grpo); dpo "
                                  "fine-tunes the whole policy")
            self.lora_settings()  # bad values fail here, before any model is loaded

    def env_kwargs(self, device: torch.device) -> dict[str, Any]:
        """Keyword arguments of the env: the fields that are set, the device, and NLPO's masks."""
        kwargs = {name: getattr(self, name) for name in ENV_FIELDS if getattr(self, name) is not None}
        kwargs["device"] = device
        if self.algo == "nlpo":
            kwargs["mask_top_p"] = self.mask_top_p
        if self.algo in ("rloo", "grpo"):
            kwargs["group_size"] = self.group_size
        if self.algo == "grpo":
            kwargs["beta"] = 0.0  # GRPO's KL is in its loss; the env still measures and reports it
        return kwargs

    def lora_settings(self) -> dict[str, Any] | None:
        """``policy_kwargs["lora"]``: the LoRA settings, or None for full fine-tuning."""
        if self.lora_r is None:
            return None
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_target_modules).as_dict()

    @property
    def epochs(self) -> int:
        """``n_epochs``, or the algorithm's default."""
        return self.n_epochs if self.n_epochs is not None else DEFAULT_EPOCHS[self.algo]

    @property
    def lr(self) -> float:
        """``learning_rate``, or the algorithm's default."""
        default = (DPO_LEARNING_RATE if self.algo == "dpo" else LORA_LEARNING_RATE if self.lora_r is not None
                   else DEFAULT_LEARNING_RATE)
        return self.learning_rate if self.learning_rate is not None else default

    def amp_on(self, device: torch.device) -> str | None:
        """The agent's ``amp``: ``--amp``, with ``auto`` resolved to bf16 on CUDA and float32 (None) elsewhere."""
        amp = ("bf16" if device.type == "cuda" else "none") if self.amp == "auto" else self.amp
        return None if amp == "none" else amp

    @property
    def minibatch(self) -> int:
        """``batch_size``, or the algorithm's default."""
        return self.batch_size if self.batch_size is not None else DPO_BATCH_SIZE if self.algo == "dpo" else 16


def build_env_and_agent(config: TrainConfig, tensorboard_log: str | Path | None = None, resume: str | Path | None = None,
                        parallel: DataParallel | None = None) -> tuple[RLHFVecEnv, TokenPPO | DPO]:
    """The batched env (through Gymnasium's registry) and the agent on it, or the agent of checkpoint ``resume``.

    With ``parallel`` (the processes of ``accelerate launch``), this process's env holds its share of ``n_envs`` rows,
    its agent trains on its share of each minibatch, and only the main process logs to TensorBoard.
    """
    parallel = parallel or DataParallel()
    device = parallel.device(config.device)
    n_envs = parallel.share(config.n_envs, "--n-envs")
    if config.algo in ("rloo", "grpo") and n_envs % config.group_size:
        raise ConfigError(f"--n-envs {config.n_envs} over {parallel.num_processes} processes gives {n_envs} responses per "
                          f"process, not whole groups of --group-size {config.group_size}")
    env = RLHFVecEnv(num_envs=n_envs, env_id=config.env_id, **config.env_kwargs(device))
    if resume is not None and not Path(resume).is_file():
        raise MissingFileError(f"checkpoint not found: {resume}")
    log = None if tensorboard_log is None or not parallel.is_main_process else str(tensorboard_log)
    if config.algo == "dpo":
        return env, build_dpo(config, env, device, log, resume, parallel)
    batch_size = parallel.share(config.minibatch, "--batch-size")
    if resume is not None:
        return env, RL_ALGOS[config.algo].load(resume, env=env, device=device, parallel=parallel, batch_size=batch_size,
                                               tensorboard_log=log, amp=config.amp_on(device))
    common = dict(learning_rate=config.lr, batch_size=batch_size, n_epochs=config.epochs,
                  amp=config.amp_on(device), seed=config.seed, device=device, parallel=parallel,
                  tensorboard_log=log,
                  policy_kwargs={"model_name_or_path": config.model, "temperature": env.batched_env.temperature,
                                 "lora": config.lora_settings()})
    if config.algo == "rloo":
        return env, RLOO("TransformerPolicy", env, **common)
    if config.algo == "grpo":
        beta = DEFAULT_GRPO_BETA if config.beta is None else config.beta
        return env, GRPO("TransformerPolicy", env, beta=beta, loss_type=config.grpo_loss, **common)
    agent = TokenPPO("TransformerPolicy", env, gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
                     use_action_masks=config.algo == "nlpo", mask_refresh_every=config.mask_refresh_every, **common)
    return env, agent


def build_dpo(config: TrainConfig, env: RLHFVecEnv, device: torch.device, tensorboard_log: str | None,
              resume: str | Path | None, parallel: DataParallel) -> DPO:
    """DPO from the env's reference (or ``config.model``) on ``config.comparisons`` or the task's reward-model data; the
    env supplies the reference, tokenizer and response budget (and, after training, the evaluation)."""
    batched = env.batched_env
    if config.comparisons is not None:
        comparisons = config.comparisons
    elif batched.task is not None:
        comparisons = batched.task.reward_model_comparisons()
    else:
        raise ConfigError("dpo needs comparisons: pass --comparisons, or use an env id with a task")
    if resume is not None:
        return DPO.load(resume, comparisons=comparisons, device=device, tensorboard_log=tensorboard_log, parallel=parallel)
    return DPO(config.model or batched.ref_model, batched.ref_model, batched.tokenizer, comparisons,
               beta=DEFAULT_DPO_BETA if config.beta is None else config.beta, loss_type=config.dpo_loss,
               label_smoothing=config.label_smoothing, learning_rate=config.lr, batch_size=config.minibatch,
               max_new_tokens=batched.max_new_tokens, seed=config.seed, device=device, tensorboard_log=tensorboard_log,
               parallel=parallel)


def env_settings(env: RLHFVecEnv) -> dict[str, Any]:
    """The env's effective settings (after the id's registered arguments and the defaults), for logs and args.json."""
    batched = env.batched_env
    config = batched.config
    return {"task": batched.task.name if batched.task else None, "beta": batched.beta, "kl_target": config.kl_target,
            "kl_estimator": config.kl_estimator, "kl_placement": config.kl_placement,
            "max_new_tokens": batched.max_new_tokens, "temperature": batched.temperature, "n_prompts": len(batched.prompts),
            "group_size": batched.group_size,
            "ref_model": getattr(batched.ref_model, "name_or_path", type(batched.ref_model).__name__)}


def held_out_evaluator(env: RLHFVecEnv, n_prompts: int, seed: int) -> Callable[[Any], Evaluation]:
    """``evaluate(lm)``: one response per prompt on the first ``n_prompts`` held-out prompts of the env's task
    (seed ``seed + EVAL_SEED_OFFSET``, the env's budget and temperature), scored."""
    batched = env.batched_env
    if batched.task is None:
        raise ConfigError("held-out evaluation needs an env with a task (its held-out prompts and gold reward)")
    prompts = batched.task.eval_prompts[:n_prompts]

    def evaluate(lm) -> Evaluation:
        return evaluate_policy(lm, batched.tokenizer, prompts, batched.reward_fn, batched.ref_model, batched.task,
                               batched.max_new_tokens, batched.temperature, seed=seed + EVAL_SEED_OFFSET)

    return evaluate
