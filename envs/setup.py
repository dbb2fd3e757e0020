"""Loading an :class:`rlhf_gym.envs.config.RLHFEnvConfig` into models, tokenizer, prompts and controllers.

Shared by :class:`rlhf_gym.envs.rlhf_env.RLHFEnv` and :class:`rlhf_gym.envs.vector_env.RLHFVectorEnv`, so that both see the
same world for the same config. :func:`resolve_setup` composes one small loader per concern; each raises a
:mod:`rlhf_gym.errors` error naming the argument, file or model at fault.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from transformers import AutoTokenizer

from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import check_prompts_fit
from rlhf_gym.kl import make_kl_controller
from rlhf_gym.prompts import load_prompts, tokenize_prompts
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.scoring import RewardFn, as_reward_fn
from rlhf_gym.tasks import DEFAULT_MAX_NEW_TOKENS, Task, load_task
from rlhf_gym.tokenizers import check_same_tokenizer
from rlhf_gym.utils import context_length, load_model, load_pretrained, resolve_device

from .config import RLHFEnvConfig


@dataclass
class MaskSettings:
    """NLPO action masks: top-p (and top-k) of a masking model (see :mod:`rlhf_gym.masking`).

    ``refreshable`` is True when the masking model is a copy (of the reference, at first) that an agent
    refreshes with its policy's weights; False when it is the frozen reference itself.
    """

    model: Any
    top_p: float
    top_k: int | None
    min_tokens: int
    refreshable: bool
    always_allowed: list[int] = field(default_factory=list)


@dataclass
class EnvSetup:
    """Everything an RLHF environment needs, resolved once from its config (internal to ``envs``)."""

    config: RLHFEnvConfig
    task: Task | None
    ref_model: Any
    tokenizer: Any
    reward_fn: RewardFn
    prompts: list[str]
    prompt_ids: list[list[int]]
    max_prompt_tokens: int
    max_new_tokens: int
    kl_controller: Any
    stop_token_id: int
    pad_token_id: int
    device: torch.device
    vocab_size: int
    mask: MaskSettings | None = None

    @property
    def context_length(self) -> int:
        return self.max_prompt_tokens + self.max_new_tokens

    def observation_space(self) -> spaces.Dict:
        return spaces.Dict({
            "input_ids": spaces.Box(0, self.vocab_size - 1, (self.context_length,), np.int64),
            "attention_mask": spaces.Box(0, 1, (self.context_length,), np.int64),
        })


def load_reference(config: RLHFEnvConfig, task: Task | None, device: torch.device):
    """The frozen reference policy (no gradients, eval mode) and the policy's tokenizer.

    A ``tokenizer`` given with a reference model that has its own (the task's, or one saved beside it) must be
    that same tokenizer: same ids, same special tokens.
    """
    ref_model, tokenizer = config.ref_model, config.tokenizer
    own_tokenizer = None
    if ref_model is None:
        if task is None:
            raise ConfigError("give a task or a ref_model")
        model, own_tokenizer = task.load_policy(device), task.load_tokenizer()
    elif isinstance(ref_model, (str, Path)):
        model = load_model(ref_model, "policy", "the reference model")
        if tokenizer is None or (Path(ref_model) / "tokenizer_config.json").is_file():
            own_tokenizer = load_pretrained(AutoTokenizer.from_pretrained, ref_model, "the reference tokenizer")
    elif tokenizer is None:
        raise ConfigError("a reference model given as an object needs its tokenizer (tokenizer=...)")
    else:
        model = ref_model
        if model.get_output_embeddings() is None:
            raise ConfigError(f"ref_model is a {type(model).__name__}, not a causal language model (a policy)")
    if tokenizer is None:
        tokenizer = own_tokenizer
    elif own_tokenizer is not None:
        check_same_tokenizer(tokenizer, own_tokenizer, "the tokenizer= argument", "the reference model's")
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > vocab_size:
        raise ConfigError(f"tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) does not fit the reference "
                          f"model ({type(model).__name__}, vocabulary {vocab_size})")
    return model, tokenizer


def load_reward(config: RLHFEnvConfig, task: Task | None, device: torch.device) -> RewardFn:
    """``r_phi`` as a callable ``f(prompts, responses) -> scores``."""
    if config.reward_model is None:
        if task is None:
            raise ConfigError("give a task or a reward_model")
        return task.load_reward_model(device)
    reward_fn = as_reward_fn(config.reward_model, device)
    if isinstance(reward_fn, RewardModel):
        rm_vocab = reward_fn.model.get_input_embeddings().weight.shape[0]
        if len(reward_fn.tokenizer) > rm_vocab:
            raise ConfigError(f"reward model tokenizer ({len(reward_fn.tokenizer)} tokens) does not fit the reward model "
                              f"({type(reward_fn.model).__name__}, vocabulary {rm_vocab})")
    return reward_fn


def load_prompt_ids(config: RLHFEnvConfig, task: Task | None, tokenizer, model,
                    max_new_tokens: int) -> tuple[list[str], list[list[int]], int]:
    """The prompts, their token ids (left-truncated if allowed) and the prompt budget, which with ``max_new_tokens``
    must fit the reference ``model``'s context."""
    if config.prompts is None and task is None:
        raise ConfigError("give a task or prompts")
    prompts = load_prompts(config.prompts if config.prompts is not None else task.train_prompts)
    prompt_ids = tokenize_prompts(prompts, tokenizer)
    empty = [i for i, ids in enumerate(prompt_ids) if not ids]
    if empty:
        raise ConfigError(f"prompt {empty[0]} ({prompts[empty[0]]!r}) is empty after tokenisation")
    budget = config.max_prompt_tokens or fit_prompt_budget(prompt_ids, config.truncate_prompts, model, max_new_tokens)
    check_context(model, budget, max_new_tokens)
    too_long = [i for i, ids in enumerate(prompt_ids) if len(ids) > budget]
    if too_long:
        i = too_long[0]
        if not config.truncate_prompts:
            raise ConfigError(f"prompt {i} has {len(prompt_ids[i])} tokens, more than max_prompt_tokens={budget} "
                              f"({len(too_long)} prompts too long); pass truncate_prompts=True to keep their last tokens")
        warnings.warn(f"{len(too_long)} prompts longer than {budget} tokens are left-truncated", stacklevel=4)
        prompt_ids = [ids[-budget:] for ids in prompt_ids]
    return prompts, prompt_ids, budget


def fit_prompt_budget(prompt_ids: list[list[int]], truncate_prompts: bool, model, max_new_tokens: int) -> int:
    """The prompt budget when none is given: the longest prompt, or with ``truncate_prompts`` what the reference
    model's context leaves beside ``max_new_tokens``, if that is less.

    :raises ConfigError: naming the longest prompt and the lengths, when it does not fit and may not be truncated.
    """
    budget, limit = max(len(ids) for ids in prompt_ids), context_length(model)
    # (when max_new_tokens alone fills the context, no prompt fits: check_context says so)
    if limit is not None and max_new_tokens < limit < budget + max_new_tokens:
        if truncate_prompts:
            return limit - max_new_tokens
        check_prompts_fit(prompt_ids, max_new_tokens, limit, "the reference model",  # raises: the longest does not fit
                          "; pass truncate_prompts=True to keep the last tokens of long prompts")
    return budget


def check_context(model, max_prompt_tokens: int, max_new_tokens: int) -> None:
    """Prompt plus response must fit the reference model's positions."""
    limit = context_length(model)
    if limit is not None and max_prompt_tokens + max_new_tokens > limit:
        raise ConfigError(f"max_prompt_tokens + max_new_tokens = {max_prompt_tokens + max_new_tokens} exceeds the "
                          f"reference model's context of {limit} positions")


def resolve_stop_token(stop_token: str | int | None, tokenizer) -> int:
    """The id of the token that ends an episode (default: EOS)."""
    if stop_token is None:
        stop_id = tokenizer.eos_token_id
    elif isinstance(stop_token, str):
        stop_id = tokenizer.convert_tokens_to_ids(stop_token)
        if stop_id is None or stop_id == tokenizer.unk_token_id:
            raise ConfigError(f"stop_token {stop_token!r} is not in the tokenizer's vocabulary")
    else:
        stop_id = int(stop_token)
    if stop_id is None:
        raise ConfigError("the tokenizer has no EOS token; pass stop_token=...")
    return stop_id


def build_mask(config: RLHFEnvConfig, model, stop_id: int) -> MaskSettings | None:
    """NLPO mask settings, or None when action masks are off."""
    if not config.uses_action_masks:
        return None
    refreshable = config.mask_model == "policy_copy"
    return MaskSettings(model=copy.deepcopy(model) if refreshable else model, top_p=config.mask_top_p or 1.0,
                        top_k=config.mask_top_k, min_tokens=config.mask_min_tokens, refreshable=refreshable,
                        always_allowed=[stop_id])


def resolve_setup(config: RLHFEnvConfig) -> EnvSetup:
    """Load everything the config names and check that the pieces fit together."""
    device = resolve_device(config.device)
    task = load_task(config.task) if config.task is not None else None
    model, tokenizer = load_reference(config, task, device)
    reward_fn = load_reward(config, task, device)
    max_new_tokens = config.max_new_tokens or (task.max_new_tokens if task else DEFAULT_MAX_NEW_TOKENS)
    prompts, prompt_ids, max_prompt_tokens = load_prompt_ids(config, task, tokenizer, model, max_new_tokens)
    stop_id = resolve_stop_token(config.stop_token, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    return EnvSetup(
        config=config, task=task, ref_model=model, tokenizer=tokenizer, reward_fn=reward_fn, prompts=prompts,
        prompt_ids=prompt_ids, max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
        kl_controller=make_kl_controller(config.beta, config.kl_target, config.kl_horizon), stop_token_id=stop_id,
        pad_token_id=pad_id, device=device, vocab_size=model.get_output_embeddings().weight.shape[0],
        mask=build_mask(config, model, stop_id),
    )
