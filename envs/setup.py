"""Resolution of the environment's keyword arguments into models, tokenizer, prompts and controllers.

Shared by :class:`envs.rlhf_env.RLHFEnv` and :class:`envs.vector_env.RLHFVectorEnv`, so that both see the
same world for the same arguments.
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
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_gym.kl import KL_ESTIMATORS, make_kl_controller
from rlhf_gym.prompts import load_prompts
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.scoring import as_reward_fn
from rlhf_gym.tasks import Task, load_task
from rlhf_gym.utils import resolve_device

KL_PLACEMENTS = ("terminal", "per_token")


@dataclass
class EnvSetup:
    """Everything an RLHF environment needs, resolved once."""

    task: Task | None
    ref_model: Any
    tokenizer: Any
    reward_fn: Any
    prompts: list[str]
    prompt_ids: list[list[int]]
    max_prompt_tokens: int
    max_new_tokens: int
    kl_controller: Any
    kl_penalty: str
    kl_estimator: str
    stop_token_id: int
    pad_token_id: int
    no_eos_penalty: float
    temperature: float
    device: torch.device
    vocab_size: int
    mask: "MaskSettings | None" = None

    @property
    def context_length(self) -> int:
        return self.max_prompt_tokens + self.max_new_tokens

    def observation_space(self) -> spaces.Dict:
        return spaces.Dict({
            "input_ids": spaces.Box(0, self.vocab_size - 1, (self.context_length,), np.int64),
            "attention_mask": spaces.Box(0, 1, (self.context_length,), np.int64),
        })

    def gold_reward(self, prompt: str, response: str) -> float | None:
        return None if self.task is None or self.task.gold_reward is None else float(self.task.gold_reward(prompt, response))


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


def _load_reference(ref_model: Any, tokenizer: Any, task: Task | None, device: torch.device):
    if ref_model is None:
        if task is None:
            raise ValueError("give a task or a ref_model")
        return task.load_policy(device), tokenizer or task.load_tokenizer()
    if isinstance(ref_model, (str, Path)):
        try:
            model = AutoModelForCausalLM.from_pretrained(ref_model)
        except OSError as error:
            raise FileNotFoundError(f"cannot load the reference model {str(ref_model)!r}: {error}") from None
        return model.to(device).eval(), tokenizer or AutoTokenizer.from_pretrained(ref_model)
    if tokenizer is None:
        raise ValueError("a reference model given as an object needs its tokenizer (tokenizer=...)")
    return ref_model.to(device).eval(), tokenizer


def resolve_setup(
    task: str | Task | None = "reviews",
    ref_model: Any = None,
    tokenizer: Any = None,
    reward_model: Any = None,
    prompts: Any = None,
    max_new_tokens: int | None = None,
    max_prompt_tokens: int | None = None,
    truncate_prompts: bool = False,
    beta: float = 0.05,
    target_kl: float | None = None,
    kl_horizon: int = 10000,
    kl_penalty: str = "terminal",
    kl_estimator: str = "k1",
    stop_token: str | int | None = None,
    no_eos_penalty: float = 0.0,
    temperature: float = 1.0,
    device: str | torch.device = "cpu",
    mask_top_p: float | None = None,
    mask_top_k: int | None = None,
    mask_min_tokens: int = 1,
    mask_model: str = "policy_copy",
) -> EnvSetup:
    """Check and load the environment's arguments (see :class:`envs.rlhf_env.RLHFEnv`)."""
    if kl_penalty not in KL_PLACEMENTS:
        raise ValueError(f"kl_penalty must be one of {KL_PLACEMENTS}, got {kl_penalty!r}")
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = resolve_device(device)
    task = load_task(task) if task is not None else None
    model, tokenizer = _load_reference(ref_model, tokenizer, task, device)
    for p in model.parameters():
        p.requires_grad_(False)
    vocab_size = model.get_output_embeddings().weight.shape[0]
    if len(tokenizer) > vocab_size:
        raise ValueError(f"tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) does not fit the reference "
                         f"model ({type(model).__name__}, vocabulary {vocab_size})")
    if reward_model is None:
        if task is None:
            raise ValueError("give a task or a reward_model")
        reward_fn = task.load_reward_model(device)
    else:
        reward_fn = as_reward_fn(reward_model, device)
    if isinstance(reward_fn, RewardModel):
        rm_vocab = reward_fn.model.get_input_embeddings().weight.shape[0]
        if len(reward_fn.tokenizer) > rm_vocab:
            raise ValueError(f"reward model tokenizer ({len(reward_fn.tokenizer)} tokens) does not fit the reward model "
                             f"({type(reward_fn.model).__name__}, vocabulary {rm_vocab})")
    prompt_list = load_prompts(prompts if prompts is not None else task.train_prompts)
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompt_list]
    empty = [i for i, ids in enumerate(prompt_ids) if not ids]
    if empty:
        raise ValueError(f"prompt {empty[0]} ({prompt_list[empty[0]]!r}) is empty after tokenisation")
    longest = max(len(ids) for ids in prompt_ids)
    max_prompt_tokens = max_prompt_tokens or longest
    too_long = [i for i, ids in enumerate(prompt_ids) if len(ids) > max_prompt_tokens]
    if too_long:
        i = too_long[0]
        if not truncate_prompts:
            raise ValueError(f"prompt {i} has {len(prompt_ids[i])} tokens, more than max_prompt_tokens={max_prompt_tokens} "
                             f"({len(too_long)} prompts too long); pass truncate_prompts=True to keep their last tokens")
        warnings.warn(f"{len(too_long)} prompts longer than {max_prompt_tokens} tokens are left-truncated", stacklevel=3)
        prompt_ids = [ids[-max_prompt_tokens:] for ids in prompt_ids]
    max_new_tokens = max_new_tokens or (task.max_new_tokens if task else 32)
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_prompt_tokens + max_new_tokens > limit:
        raise ValueError(f"max_prompt_tokens + max_new_tokens = {max_prompt_tokens + max_new_tokens} exceeds the reference "
                         f"model's context of {limit} positions")
    if stop_token is None:
        stop_id = tokenizer.eos_token_id
    elif isinstance(stop_token, str):
        stop_id = tokenizer.convert_tokens_to_ids(stop_token)
        if stop_id is None or stop_id == tokenizer.unk_token_id:
            raise ValueError(f"stop_token {stop_token!r} is not in the tokenizer's vocabulary")
    else:
        stop_id = int(stop_token)
    if stop_id is None:
        raise ValueError("the tokenizer has no EOS token; pass stop_token=...")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    mask = None
    if mask_top_p is not None or mask_top_k is not None:
        if mask_model not in ("policy_copy", "reference"):
            raise ValueError(f"mask_model must be 'policy_copy' or 'reference', got {mask_model!r}")
        refreshable = mask_model == "policy_copy"
        mask = MaskSettings(model=copy.deepcopy(model) if refreshable else model, top_p=mask_top_p or 1.0,
                            top_k=mask_top_k, min_tokens=mask_min_tokens, refreshable=refreshable, always_allowed=[stop_id])
    return EnvSetup(
        task=task, ref_model=model, tokenizer=tokenizer, reward_fn=reward_fn, prompts=prompt_list, prompt_ids=prompt_ids,
        max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
        kl_controller=make_kl_controller(beta, target_kl, kl_horizon), kl_penalty=kl_penalty, kl_estimator=kl_estimator,
        stop_token_id=stop_id, pad_token_id=pad_id, no_eos_penalty=float(no_eos_penalty), temperature=float(temperature),
        device=device, vocab_size=vocab_size, mask=mask,
    )
