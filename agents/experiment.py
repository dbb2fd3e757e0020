"""One builder of env + agent, used by ``scripts/train_agent.py``, the studies and every algorithm.

:class:`TrainConfig` is the documented configuration of a training run (each field has its command-line
help); :func:`build_env_and_agent` turns it into the SB3 env bridge and the agent, so that every entry
point trains the same way for the same config. :func:`held_out_evaluator` scores a policy on the task's
held-out prompts with the env's reward model, reference and task, at a seed derived from the run's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.envs.config import KL_PLACEMENTS
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.kl import KL_ESTIMATORS
from rlhf_gym.tasks import task_names

from .critic_free_settings import DEFAULT_GROUP_SIZE, GRPO_LOSS_TYPES
from .critic_settings import CRITICS
from .lora_settings import ALL_LINEAR, ALL_LINEAR_AND_HEAD, LoraSettings
from .precision import AMP_MODES, auto_amp
from .registry import algorithm_names, get_algorithm
from .schedules import LR_SCHEDULES

if TYPE_CHECKING:  # the options (and a command's --help) need none of these: they load torch and SB3
    import torch

    from rlhf_gym.evaluation import Evaluation

    from .parallel import DataParallel
    from .vec_env import RLHFVecEnv

AMP_CHOICES = ("auto", *AMP_MODES, "none")
DEFAULT_TOTAL_RESPONSES = 12_800
"""The default run's budget: 200 PPO iterations of 64 responses (see :class:`rlhf_gym.agents.ppo.PPOConfig`)."""
LORA_LEARNING_RATE = 1e-3
"""The default with --lora-r: LoRA's adapters (rank 8 on every linear layer and the head) matched full fine-tuning on
RLHF-v0 at 1e-3 (gold 1.261 +- 0.008 over 3 seeds, docs/scaling_out.md)."""
EVAL_SEED_OFFSET = 10_000
"""Held-out evaluations sample with seed ``config.seed + EVAL_SEED_OFFSET``: a stream apart from training's."""

# TrainConfig fields passed to the env when set (None: the env id's registered value, else the env's default); the
# KL coefficient, group size and masks come from the algorithm (its env_settings)
ENV_FIELDS = ("task", "ref_model", "reward_model", "prompts", "max_new_tokens", "kl_target", "kl_estimator",
              "kl_placement", "temperature")
ALGORITHM_OPTIONS = ("learning_rate", "lr_schedule", "batch_size", "n_epochs", "kl_coef", "group_size", "gae_lambda",
                     "ent_coef", "vf_coef", "mask_top_p", "mask_refresh_every", "grpo_loss", "dpo_beta", "label_smoothing",
                     "simpo_gamma", "desirable_weight", "undesirable_weight", "judge", "critic")
"""TrainConfig fields that are hyperparameters of an algorithm: None means the algorithm's own default (its ``Config``),
and one that its ``Config`` does not have is refused."""




@dataclass
class TrainConfig:
    """A training run's algorithm, env and optimisation settings.

    The algorithm's hyperparameters default to None: the registered algorithm's own ``Config`` then supplies them
    (:meth:`algorithm_config`), and checks them there, once.
    """

    algo: str = arg("ppo", "the algorithm (any registered one; docs/algorithms.md)", choices=algorithm_names)
    env_id: str = arg("RLHF-v0", "registered env id (its registered arguments apply; the options below override them)")
    seed: int = arg(0, "seed of everything: prompts, sampling, initialisation, minibatch order")
    task: str | None = arg(None, "task id (default: the env id's, reviews for RLHF-v0)", choices=task_names)
    model: str | None = arg(None, "policy to start from: HF causal LM id or directory (default: the env's reference)")
    ref_model: str | None = arg(None, "frozen reference policy for the KL term (default: the task's SFT policy)")
    reward_model: Any = arg(None, "reward model: HF id or directory (default: the task's reward model)")
    prompts: str | None = arg(None, "training prompts: .jsonl (field 'prompt') or .txt file (default: the task's train split)")
    kl_coef: float | None = arg(None, "KL coefficient, wherever the algorithm puts the KL: in the env's reward "
                                      "r - kl_coef * KL for ppo, nlpo and rloo (default: the env's, 0.1; the initial value "
                                      "with --kl-target), in the loss for grpo (default 0.04)")
    beta: float | None = arg(None, "deprecated alias: --kl-coef, or --dpo-beta for the DPO family")
    kl_target: float | None = arg(None, "adaptive KL controller (Ziegler et al. 2019) with this target KL per response")
    kl_estimator: str | None = arg(None, "per-token KL estimator: k1 or k3 (default: the env's, k1)", choices=KL_ESTIMATORS)
    kl_placement: str | None = arg(None, "where the KL penalty is paid: terminal or per_token (default: the env's, terminal)",
                                   choices=KL_PLACEMENTS)
    max_new_tokens: int | None = arg(None, "response budget in tokens (default: the env's, 24 for RLHF-v0)")
    temperature: float | None = arg(None, "sampling temperature (default: the env's, 1.0)")
    n_envs: int = arg(64, "responses per rollout (rows of the batched env)")
    batch_size: int | None = arg(None, "minibatch size: responses (default 16), or comparisons for the DPO family (64; "
                                       "kto: examples)")
    n_epochs: int | None = arg(None, "passes over each rollout (default: 4 for ppo and nlpo, 1 for rloo and grpo)")
    group_size: int | None = arg(None, f"rloo, grpo (online_dpo: 2): responses per prompt, k (default "
                                       f"{DEFAULT_GROUP_SIZE}); must divide --n-envs")
    comparisons: str | None = arg(None, "the DPO family: preferences to train on, JSONL (prompt, chosen, rejected; kto "
                                        "also prompt, completion, label true|false) or a saved datasets directory "
                                        "(default: the comparisons the task's reward model was trained on)")
    dpo_beta: float | None = arg(None, "the DPO family and online_dpo: temperature of the implicit reward (default 0.5; "
                                       "kto 1.0; simpo: the scale of its length-normalised reward, default 2.0)")
    judge: str | None = arg(None, "online_dpo: who ranks each sampled pair, reward_model (the env's, the default), "
                                  "annotator (the task's simulated annotators) or person (you, at the terminal)",
                            choices=("reward_model", "annotator", "person"))
    label_smoothing: float | None = arg(None, "dpo, cdpo: the probability that a label is flipped, in [0, 0.5) "
                                              "(default: 0 for dpo, 0.1 for cdpo)")
    simpo_gamma: float | None = arg(None, "simpo: the target reward margin gamma, >= 0 (default 1.0)")
    desirable_weight: float | None = arg(None, "kto: lambda_D, the weight of a desirable example's loss (default 1.0)")
    undesirable_weight: float | None = arg(None, "kto: lambda_U, the weight of an undesirable example's loss "
                                                 "(default 1.0)")
    grpo_loss: str | None = arg(None, "grpo: dapo (the loss summed over tokens and divided by the rollout's response "
                                      "tokens, TRL's default) or grpo (averaged over each response's tokens, then "
                                      "responses: the paper's); default: dapo", choices=GRPO_LOSS_TYPES)
    learning_rate: float | None = arg(None, "AdamW learning rate (default: 1e-4; the DPO family 3e-4, simpo 2e-4; with "
                                            f"--lora-r {LORA_LEARNING_RATE:g})")
    lr_schedule: str | None = arg(None, "the online algorithms: constant (the default), or linear (annealed to 0 over "
                                        "the budget)", choices=LR_SCHEDULES)
    lora_r: int | None = arg(None, "train LoRA adapters of this rank instead of the whole policy (the lora extra); the "
                                   "reference is the same model with the adapters off, so its weights are held once")
    lora_alpha: float = arg(16.0, "LoRA scale numerator: the adapters' update is (alpha / r) * B A")
    lora_target_modules: str = arg(ALL_LINEAR_AND_HEAD, f"layers to adapt: {ALL_LINEAR_AND_HEAD} (every linear layer and "
                                                        f"the output head), {ALL_LINEAR} (without the head), or names "
                                                        "separated by commas (e.g. c_attn,c_proj)")
    ent_coef: float | None = arg(None, "ppo, nlpo: entropy bonus (default 0)")
    vf_coef: float | None = arg(None, "ppo, nlpo: value loss weight (default 0.5)")
    gae_lambda: float | None = arg(None, "ppo, nlpo: GAE lambda (default 0.95)")
    critic: str | None = arg(None, "ppo, nlpo: the value function: shared (a head on the policy's trunk, the default), "
                                   "separate (a head on its own copy of the starting trunk) or reward_model (a copy of the "
                                   "env's reward model, as InstructGPT)", choices=CRITICS)
    mask_top_p: float | None = arg(None, "nlpo: keep the tokens in this top-p mass of the masking policy (default 0.9)")
    mask_refresh_every: int | None = arg(None, "nlpo: copy the policy into the masking policy every this many rollouts "
                                               "(default 5)")
    device: str = arg("auto", "cpu, cuda[:N] or auto (CUDA when present)")
    amp: str = arg("auto", "mixed precision: auto (bf16 on CUDA, and on a CPU with bf16 units (AMX, AVX-512 BF16) for "
                           "models of width >= 256, where it was measured faster; else none), bf16 (autocast, also on "
                           "the CPU), fp16 (CUDA only) or none", choices=AMP_CHOICES)

    def __post_init__(self) -> None:
        traits = get_algorithm(self.algo).traits
        self._map_deprecated_beta(traits)
        check_positive_options(self, ("n_envs", "max_new_tokens", "temperature", "kl_target"))
        choices = {"amp": AMP_CHOICES, "kl_estimator": KL_ESTIMATORS, "kl_placement": KL_PLACEMENTS}
        for name, allowed in choices.items():
            if getattr(self, name) is not None and getattr(self, name) not in allowed:
                option = f"--{name.replace('_', '-')}"
                raise ConfigError(f"{option} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        config = self.algorithm_config()  # the algorithm's own checks of its values
        if traits.online and config.batch_size > self.n_envs:
            raise ConfigError(f"--batch-size {config.batch_size} is larger than a rollout (--n-envs {self.n_envs} "
                              "responses); minibatches are counted in responses")
        if traits.group_sampling:
            if self.n_envs % config.group_size:
                raise ConfigError(f"--group-size {config.group_size}: --n-envs {self.n_envs} must be a multiple of it")
            if self.n_envs % config.batch_size:
                raise ConfigError(f"--batch-size {config.batch_size} must divide --n-envs {self.n_envs} for {self.algo}")
        if traits.kl != "reward" and self.kl_target is not None:
            raise ConfigError(f"--kl-target adapts the KL coefficient of the env's reward; {self.algo} has no KL term there")
        if self.lora_r is not None:
            if not traits.online:
                raise ConfigError(f"--lora-r trains adapters for the online algorithms; {self.algo} fine-tunes the whole "
                                  "policy")
            self.lora_settings()  # bad values fail here, before any model is loaded
        if self.comparisons is not None:
            if traits.online:
                raise ConfigError(f"--comparisons: {self.algo} samples its own responses; comparisons are for the offline "
                                  "algorithms")
            if not Path(self.comparisons).exists():
                raise MissingFileError(f"--comparisons: no such file or directory: {self.comparisons}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be cpu, cuda[:N] or auto, got {self.device!r}")

    def _map_deprecated_beta(self, traits) -> None:
        """``--beta`` of rlhf-gym 0.8 meant three things; it now sets the one option it meant for this algorithm."""
        if self.beta is None:
            return
        target = traits.coefficient_option
        if getattr(self, target) is not None:
            raise ConfigError(f"--beta is a deprecated alias of --{target.replace('_', '-')}: give only one of them")
        warnings.warn(f"--beta is deprecated: use --{target.replace('_', '-')} ({self.algo})", FutureWarning, stacklevel=3)
        setattr(self, target, self.beta)
        self.beta = None

    @property
    def algorithm(self) -> type:
        """The registered class of ``algo``."""
        return get_algorithm(self.algo)

    def algorithm_config(self) -> Any:
        """The algorithm's ``Config``: its defaults, with the options that were given (and the LoRA learning rate)."""
        cls = self.algorithm
        own = {f.name for f in fields(cls.Config)}
        given = {name: getattr(self, name) for name in ALGORITHM_OPTIONS if getattr(self, name) is not None}
        foreign = sorted(set(given) - own)
        if foreign:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in foreign)
            raise ConfigError(f"{options}: not an option of {self.algo} (its own: "
                              f"{', '.join('--' + name.replace('_', '-') for name in sorted(own & set(ALGORITHM_OPTIONS)))})")
        if self.lora_r is not None and "learning_rate" not in given and "learning_rate" in own:
            given["learning_rate"] = LORA_LEARNING_RATE
        return cls.Config(**given)

    def env_kwargs(self, device: torch.device) -> dict[str, Any]:
        """Keyword arguments of the env: the fields that are set, the device, and what the algorithm needs."""
        kwargs = {name: getattr(self, name) for name in ENV_FIELDS if getattr(self, name) is not None}
        kwargs["device"] = device
        kwargs.update(self.algorithm.env_settings(self.algorithm_config()))
        return kwargs

    def lora_settings(self) -> dict[str, Any] | None:
        """``policy_kwargs["lora"]``: the LoRA settings, or None for full fine-tuning."""
        if self.lora_r is None:
            return None
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_target_modules).as_dict()

    @property
    def lr(self) -> float:
        """The learning rate the run uses (``--learning-rate``, or the algorithm's default)."""
        return self.algorithm_config().learning_rate

    def amp_on(self, device: torch.device, model=None) -> str | None:
        """The agent's ``amp``: ``--amp``, with ``auto`` resolved by :func:`rlhf_gym.agents.precision.auto_amp` for
        ``model`` (the policy's starting model: its hidden size) on ``device``; None for float32."""
        width = getattr(getattr(model, "config", None), "hidden_size", None)
        amp = auto_amp(device.type, width) if self.amp == "auto" else self.amp
        return None if amp == "none" else amp


def build_env_and_agent(config: TrainConfig, tensorboard_log: str | Path | None = None, resume: str | Path | None = None,
                        parallel: DataParallel | None = None) -> tuple[RLHFVecEnv, Any]:
    """The batched env (through Gymnasium's registry) and the agent on it, or the agent of checkpoint ``resume``.

    The algorithm is the registered class of ``config.algo``, built through its contract
    (:mod:`rlhf_gym.agents.registry`). With ``parallel`` (the processes of ``accelerate launch``), this process's env holds
    its share of ``n_envs`` rows, its agent trains on its share of each minibatch, and only the main process logs to
    TensorBoard.
    """
    from .parallel import DataParallel  # torch, Accelerate and SB3 only once a run is built
    from .vec_env import RLHFVecEnv

    parallel = parallel or DataParallel()
    device = parallel.device(config.device)
    n_envs = parallel.share(config.n_envs, "--n-envs")
    cls, algorithm_config = config.algorithm, config.algorithm_config()
    if cls.traits.group_sampling and n_envs % algorithm_config.group_size:
        raise ConfigError(f"--n-envs {config.n_envs} over {parallel.num_processes} processes gives {n_envs} responses per "
                          f"process, not whole groups of --group-size {algorithm_config.group_size}")
    env = RLHFVecEnv(num_envs=n_envs, env_id=config.env_id, **config.env_kwargs(device))
    if resume is not None and not Path(resume).is_file():
        raise MissingFileError(f"checkpoint not found: {resume}")
    log = None if tensorboard_log is None or not parallel.is_main_process else str(tensorboard_log)
    common = dict(device=device, parallel=parallel, tensorboard_log=log)
    if resume is not None:
        return env, cls.resume(resume, config, env, **common)
    return env, cls.from_config(config, env, **common)


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
        from rlhf_gym.evaluation import evaluate_policy

        return evaluate_policy(lm, batched.tokenizer, prompts, batched.reward_fn, batched.ref_model, batched.task,
                               batched.max_new_tokens, batched.temperature, seed=seed + EVAL_SEED_OFFSET)

    return evaluate
