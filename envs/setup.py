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
    # tokens kept whatever their probability (build_mask puts the stop token here, so every response can end)
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
        # the fixed width of every row and observation: the prompt budget plus the response budget
        return self.max_prompt_tokens + self.max_new_tokens

    def observation_space(self) -> spaces.Dict:
        # bounded by the model's vocabulary (the action space), which may be larger than len(tokenizer)
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
        # load the model's own tokenizer when it is needed (none given) or at hand to check the given one against
        # (a local directory with a tokenizer saved beside the weights; for a hub id none is downloaded just to compare)
        if tokenizer is None or (Path(ref_model) / "tokenizer_config.json").is_file():
            own_tokenizer = load_pretrained(AutoTokenizer.from_pretrained, ref_model, "the reference tokenizer")
    elif tokenizer is None:
        # a model object does not carry its tokenizer, and guessing one would silently mis-map every token
        raise ConfigError("a reference model given as an object needs its tokenizer (tokenizer=...)")
    else:
        model = ref_model
        # no LM head means no next-token distribution to take log pi_ref from (e.g. a reward model passed by mistake)
        if model.get_output_embeddings() is None:
            raise ConfigError(f"ref_model is a {type(model).__name__}, not a causal language model (a policy)")
    if tokenizer is None:
        tokenizer = own_tokenizer
    elif own_tokenizer is not None:
        # the agent acts in the given tokenizer's ids and the reference scores them as its own: they must agree
        check_same_tokenizer(tokenizer, own_tokenizer, "the tokenizer= argument", "the reference model's")
    # frozen: eval() turns dropout off, so log pi_ref is deterministic; requires_grad off, so no optimiser step
    # (say, one given these parameters by mistake) can move the KL anchor
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # the model's vocabulary may exceed the tokenizer's (e.g. padded to a round size), not the other way round: a
    # token id past the embedding table fails inside the forward pass
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
    # the same vocabulary check for an HF reward model, which tokenises the texts with its own tokenizer; a plain
    # callable is the user's own business
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
    # the first response token is predicted from the prompt's last position (prompt_len - 1): an empty prompt has none
    empty = [i for i, ids in enumerate(prompt_ids) if not ids]
    if empty:
        raise ConfigError(f"prompt {empty[0]} ({prompts[empty[0]]!r}) is empty after tokenisation")
    # a given budget wins; otherwise the longest prompt (with truncate_prompts, at most what the context leaves)
    budget = config.max_prompt_tokens or fit_prompt_budget(prompt_ids, config.truncate_prompts, model, max_new_tokens)
    check_context(model, budget, max_new_tokens)
    too_long = [i for i, ids in enumerate(prompt_ids) if len(ids) > budget]
    if too_long:
        i = too_long[0]
        if not config.truncate_prompts:
            raise ConfigError(f"prompt {i} has {len(prompt_ids[i])} tokens, more than max_prompt_tokens={budget} "
                              f"({len(too_long)} prompts too long); pass truncate_prompts=True to keep their last tokens")
        # stacklevel=4: past load_prompt_ids, resolve_setup and the env's __init__, to the code that built the env
        warnings.warn(f"{len(too_long)} prompts longer than {budget} tokens are left-truncated", stacklevel=4)
        # left truncation keeps a prompt's end, the text the response continues from
        prompt_ids = [ids[-budget:] for ids in prompt_ids]
    return prompts, prompt_ids, budget


def fit_prompt_budget(prompt_ids: list[list[int]], truncate_prompts: bool, model, max_new_tokens: int) -> int:
    """The prompt budget when none is given: the longest prompt, or with ``truncate_prompts`` what the reference
    model's context leaves beside ``max_new_tokens``, if that is less.

    :raises ConfigError: naming the longest prompt and the lengths, when it does not fit and may not be truncated.
    """
    budget, limit = max(len(ids) for ids in prompt_ids), context_length(model)
    # limit is None when the model's config names no context size: nothing to fit. Otherwise act only when the
    # longest prompt and the responses overflow the context
    # (when max_new_tokens alone fills the context, no prompt fits: check_context says so)
    if limit is not None and max_new_tokens < limit < budget + max_new_tokens:
        if truncate_prompts:
            return limit - max_new_tokens
        check_prompts_fit(prompt_ids, max_new_tokens, limit, "the reference model",  # raises: the longest does not fit
                          "; pass truncate_prompts=True to keep the last tokens of long prompts")
    return budget


def check_context(model, max_prompt_tokens: int, max_new_tokens: int) -> None:
    """Prompt plus response must fit the reference model's positions."""
    # checked at construction: past its positions a model fails in the middle of a run (GPT-2's learned position
    # embeddings raise an IndexError)
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
        # an unknown string maps to the unknown token (or None), which would make every <unk> end an episode
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
    # "policy_copy" starts as a deep copy of the reference (where the policy starts) so that refreshing it with the
    # policy's weights never touches the reference itself; "reference" shares the frozen model, no extra memory.
    # top_p 1.0 when only top_k is set (the mass cut keeps everything); the stop token is always allowed so that
    # a mask can never force a response to run into truncation.
    return MaskSettings(model=copy.deepcopy(model) if refreshable else model, top_p=config.mask_top_p or 1.0,
                        top_k=config.mask_top_k, min_tokens=config.mask_min_tokens, refreshable=refreshable,
                        always_allowed=[stop_id])


def resolve_setup(config: RLHFEnvConfig) -> EnvSetup:
    """Load everything the config names and check that the pieces fit together."""
    # Order matters: the device before any model is loaded onto it; the reference before the prompts and the stop
    # token, which need its tokenizer (and its context length).
    device = resolve_device(config.device)
    task = load_task(config.task) if config.task is not None else None
    model, tokenizer = load_reference(config, task, device)
    reward_fn = load_reward(config, task, device)
    # the budget is in the policy's tokens: a given one as it is; the task's, stated in its own tokenizer's tokens, is
    # converted for a policy with another tokenizer (Task.response_budget)
    max_new_tokens = config.max_new_tokens or (task.response_budget(tokenizer) if task else DEFAULT_MAX_NEW_TOKENS)
    prompts, prompt_ids, max_prompt_tokens = load_prompt_ids(config, task, tokenizer, model, max_new_tokens)
    stop_id = resolve_stop_token(config.stop_token, tokenizer)
    # GPT-2-style tokenizers have no pad token; the stop token serves. Padding only ever follows a row's real tokens and
    # lengths are tracked explicitly (never inferred from pad ids), so a pad id equal to the stop id is harmless.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_id
    # one KL controller per env, shared by all its rows: beta is a property of the training run, not of a row
    return EnvSetup(
        config=config, task=task, ref_model=model, tokenizer=tokenizer, reward_fn=reward_fn, prompts=prompts,
        prompt_ids=prompt_ids, max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
        kl_controller=make_kl_controller(config.beta, config.kl_target, config.kl_horizon), stop_token_id=stop_id,
        pad_token_id=pad_id, device=device, vocab_size=model.get_output_embeddings().weight.shape[0],
        mask=build_mask(config, model, stop_id),
    )
