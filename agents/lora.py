"""LoRA through PEFT: train low-rank adapters on the reference's own weights instead of a copy of the policy.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) freezes each targeted weight ``W`` and learns
``W + (alpha / r) * B A`` with ``A`` [r, in] and ``B`` [out, r]; ``B`` starts at zero, so the adapted model starts as
the base model. The RLHF reference ``pi_ref`` is then the same base model with the adapters switched off (PEFT's
``disable_adapter``, as TRL does), so one copy of the base weights serves both the policy and the reference.

:func:`apply_lora` adapts a model in place; :class:`AdaptersDisabled` is the reference view an env scores with;
:func:`merged_copy` folds the adapters into a plain model for export. PEFT is an optional extra, imported here only
when LoRA is asked for.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn
from transformers import PreTrainedModel

from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import cache_kwargs

from .lora_settings import ALL_LINEAR, ALL_LINEAR_AND_HEAD, SHORTHANDS, LoraSettings

INSTALL_HINT = 'pip install "rlhf-gym[lora]"'
def import_peft():
    """The ``peft`` module, or a :class:`ConfigError` saying how to install it."""
    try:
        import peft
    except ImportError as error:
        raise ConfigError(f"LoRA needs PEFT, which is not installed: {INSTALL_HINT}") from error
    return peft


def linear_layers(model: nn.Module) -> list[str]:
    """The full names of the layers PEFT's LoRA adapts as linear (``nn.Linear``, GPT-2's ``Conv1D``), the head included."""
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))]


def target_modules(model: nn.Module, settings: LoraSettings) -> str | list[str]:
    """PEFT's ``target_modules`` for ``model``; a :class:`ConfigError` names each target that matches no layer of it,
    and the linear layers it has."""
    if settings.target_modules == ALL_LINEAR:
        return ALL_LINEAR
    if settings.target_modules == ALL_LINEAR_AND_HEAD:
        # PEFT's "all-linear" leaves the head out, so the head is asked for by listing every linear layer by full name
        return linear_layers(model)
    names = [name for name, _ in model.named_modules()]
    # checked here because PEFT's own error for a name that matches nothing does not list the layers there are
    missing = [target for target in settings.target_modules
               if not any(name == target or name.endswith(f".{target}") for name in names)]
    if missing:
        layers = sorted({name.rsplit(".", 1)[-1] for name in linear_layers(model)})
        raise ConfigError(f"--lora-target-modules: {', '.join(map(repr, missing))} not in {type(model).__name__} (its "
                          f"linear layers: {', '.join(layers)}; or {' or '.join(map(repr, SHORTHANDS))})")
    return list(settings.target_modules)


def lora_config(model: nn.Module, settings: LoraSettings):
    """PEFT's ``LoraConfig`` of ``settings`` for ``model`` (also what the speed benchmark gives TRL's trainer)."""
    peft = import_peft()
    # dropout 0: the first PPO ratio must be 1 (LoraSettings). bias "none": only A and B train, so switching the
    # adapters off gives back the base model exactly, which is what makes it the reference (trained biases would stay on)
    return peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=0.0, bias="none",
                           task_type=peft.TaskType.CAUSAL_LM, target_modules=target_modules(model, settings))


def apply_lora(model: PreTrainedModel, settings: LoraSettings):
    """Adapt ``model`` in place (no copy): a PEFT model whose adapters (and only they) require grad.

    ``model`` itself keeps running with the adapters on; :class:`AdaptersDisabled` runs it with them off.
    """
    peft = import_peft()
    config = lora_config(model, settings)
    with warnings.catch_warnings():
        # expected and handled: PEFT sets fan_in_fan_out per layer (GPT-2's Conv1D stores W as [in, out], its head is a
        # Linear); merged_copy unties an adapted head tied to the input embeddings, as PEFT's warning advises; and PEFT
        # 0.21 reads an attribute that transformers 5 deprecates
        for message in ("fan_in_fan_out is set", ".*tie_word_embeddings", ".*is_gradient_checkpointing"):
            warnings.filterwarnings("ignore", message=message)
        return peft.get_peft_model(model, config)


def adapts_tied_head(peft_model: nn.Module) -> bool:
    """Whether the adapters include an output head whose weight is the input embeddings' (GPT-2's tied ``lm_head``):
    the merged model then needs a head of its own."""
    model = peft_model.get_base_model()
    head = model.get_output_embeddings()
    base = getattr(head, "base_layer", None)  # PEFT wraps an adapted layer, keeping the original as base_layer
    return base is not None and base.weight is model.get_input_embeddings().weight


class AdaptersDisabled(nn.Module):
    """The base model under a PEFT model, with its adapters off: the reference ``pi_ref`` of a LoRA policy.

    A view, not a copy: it holds the PEFT model (whose base weights the policy shares) and runs the base model inside
    PEFT's ``disable_adapter()``. It offers what the env and the evaluation read of a reference model: ``forward``,
    ``parameters``, ``config``, ``name_or_path`` and ``get_output_embeddings``.
    """

    def __init__(self, peft_model: nn.Module):
        super().__init__()
        self.peft_model = peft_model

    @property
    def base(self) -> PreTrainedModel:
        """The adapted HF model (with the adapters' layers in it)."""
        return self.peft_model.get_base_model()

    @property
    def config(self):
        return self.base.config

    @property
    def name_or_path(self) -> str:
        return self.base.name_or_path

    def get_output_embeddings(self) -> nn.Module:
        return self.base.get_output_embeddings()

    def forward(self, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        # a caller that picks the KV-cache keyword from this signature passes past_key_values: hand it to the base
        # under the base's own keyword (``cache`` in transformers 5)
        if past_key_values is not None:
            kwargs.update(cache_kwargs(self.base, past_key_values))
        # off for this call only: the policy, which runs the same layers, gets its adapters back when it returns
        with self.peft_model.disable_adapter():
            return self.base(*args, **kwargs)


def builds_on_reference(policy_kwargs: Mapping[str, Any], ref_model: nn.Module) -> bool:
    """Whether a policy with these keyword arguments is LoRA on the env's reference ``ref_model`` itself: LoRA is on,
    and the policy's model is ``ref_model`` or the directory (or hub id) it was loaded from. Such a policy is built on
    the reference object, not on a second copy, and the env then scores with its adapters off."""
    if policy_kwargs.get("lora") is None:
        return False
    given, path = policy_kwargs.get("model_name_or_path"), getattr(ref_model, "name_or_path", "")
    if isinstance(given, nn.Module):
        return given is ref_model  # the same object, not an equal one: only then are the weights shared
    # resolved, so that "./m" and an absolute path to the same directory match; a model built in memory has no path
    return given is not None and bool(path) and Path(given).resolve() == Path(path).resolve()


def lora_base(model: nn.Module) -> nn.Module:
    """The model to adapt in place for a LoRA policy built on ``model``: ``model`` itself, or, when ``model`` is already
    another LoRA policy's reference view (a second agent on the same env), a copy of the base under it without that
    policy's adapters (the env can share one base with one policy only)."""
    if isinstance(model, AdaptersDisabled):
        # unload() removes the other policy's adapters without merging them: the copy is the plain reference
        return copy.deepcopy(model.peft_model).unload()
    return model


def merged_copy(peft_model: nn.Module) -> PreTrainedModel:
    """A plain HF model with the adapters folded in (``W + (alpha / r) B A``), for export; the PEFT model is untouched
    (training goes on), at the cost of one temporary copy of the weights.

    An adapted head tied to the input embeddings is untied in the copy first (``tie_word_embeddings=False``): merged
    into the shared weight it would change the input embeddings too.
    """
    merged = copy.deepcopy(peft_model)  # a copy, so training can go on with the adapters separate
    if adapts_tied_head(merged):
        model = merged.get_base_model()
        head = model.get_output_embeddings().base_layer
        # a tensor of its own for the head: the merge then changes the head only, the input embeddings stay the base's
        head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
        model.config.tie_word_embeddings = False
    return merged.merge_and_unload()
