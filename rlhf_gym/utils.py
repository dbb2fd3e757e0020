"""Small shared helpers of the models: device choice, loading pretrained models (of the right kind), seeding.

File helpers (atomic writes, JSON records) are :mod:`rlhf_gym.files`, which loads no torch."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from .errors import ConfigError, MissingFileError
from .fused import fuse_gelu

T = TypeVar("T")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to ``torch.device``.

    :raises ConfigError: for a string that names no device, or a CUDA device this machine does not have.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {str(device)!r}: expected cpu, cuda, cuda:N, mps or auto") from None
    if resolved.type == "cuda" and (not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"device {str(device)!r} is not available on this machine "
                          f"({torch.cuda.device_count()} CUDA device(s)); use cpu or auto")
    return resolved


def load_pretrained(loader: Callable[..., T], name_or_path: str | Path, what: str, **kwargs: Any) -> T:
    """``loader(name_or_path, **kwargs)`` (a Hugging Face ``from_pretrained``), with one error for every way it fails.

    :param what: names the model in the message, e.g. ``"the policy"``.
    :raises MissingFileError: (a ``FileNotFoundError``) naming ``name_or_path``, when it is a local path that does
        not exist, or when it cannot be loaded (not a model directory, no such hub id while offline, ...).
    """
    text = str(name_or_path)
    if (Path(text).is_absolute() or text.startswith(".") or text.count("/") > 1) and not Path(text).exists():
        raise MissingFileError(f"cannot load {what} from {text!r}: no such file or directory")
    try:
        return loader(name_or_path, **kwargs)
    except (OSError, ValueError) as error:  # HF: OSError for missing files, ValueError for a config it cannot read
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not Path(text).exists():  # HF took it for a hub id: say that it is no local path either
            reason = f"no such local file or directory, and not loadable from the Hugging Face hub ({reason})"
        raise MissingFileError(f"cannot load {what} from {text!r}: {reason}") from None


@dataclass(frozen=True)
class ModelKind:
    """A kind of model :func:`load_model` loads: its Auto class and the saved ``architectures`` that are of it."""

    auto_class: Any
    suffixes: tuple[str, ...]
    name: str
    role: str


MODEL_KINDS = {
    "policy": ModelKind(AutoModelForCausalLM, ("ForCausalLM", "LMHeadModel"), "a causal language model", "a policy"),
    "reward_model": ModelKind(AutoModelForSequenceClassification, ("ForSequenceClassification",), "a sequence classifier",
                              "a reward model"),
}


def describe_architecture(architecture: str) -> str:
    """``"GPT2LMHeadModel (a policy)"``: a saved architecture and the role it plays here, when it has one."""
    role = next((kind.role for kind in MODEL_KINDS.values() if architecture.endswith(kind.suffixes)), None)
    return f"{architecture} ({role})" if role else architecture


def load_model(name_or_path: str | Path, kind: str, what: str, *, from_base: bool = False):
    """A policy (``kind="policy"``) or reward model (``kind="reward_model"``, one output) from a directory or hub id.

    The model's tanh-approximate GELUs run as one fused kernel (:func:`rlhf_gym.fused.fuse_gelu`).

    Hugging Face loads any checkpoint into any head and only prints a report, so a policy given as a reward
    model would score with a random head, and a reward model given as a policy would act. This refuses a
    checkpoint whose saved ``architectures`` are of another kind, and one that lacks weights of the model
    (a head that would start random).

    :param what: names the model in messages, e.g. ``"--policy"``.
    :param from_base: a reward model may start from a causal LM (its score head is new), as ``train-rm --model``.
    :raises ConfigError: for a model of another kind, or one with missing weights.
    :raises MissingFileError: when it cannot be loaded (see :func:`load_pretrained`).
    """
    wanted = MODEL_KINDS[kind]
    expected = f"{wanted.name} ({wanted.role})"
    suffixes = wanted.suffixes + (MODEL_KINDS["policy"].suffixes if from_base else ())
    architectures = load_pretrained(AutoConfig.from_pretrained, name_or_path, what).architectures or []
    if architectures and not any(a.endswith(suffixes) for a in architectures):
        found = ", ".join(describe_architecture(a) for a in architectures)
        raise ConfigError(f"{what} {str(name_or_path)!r} is a {found}, not {expected}")
    extra = {"num_labels": 1} if kind == "reward_model" else {}
    model, info = load_pretrained(wanted.auto_class.from_pretrained, name_or_path, what, output_loading_info=True, **extra)
    missing = sorted(info["missing_keys"])
    if missing and not from_base:
        raise ConfigError(f"{what} {str(name_or_path)!r} lacks weights of {expected} ({', '.join(missing[:3])}"
                          f"{', ...' if len(missing) > 3 else ''}); they would be randomly initialised")
    fuse_gelu(model)  # the same function in one kernel (rlhf_gym.fused)
    return model


def context_length(model_or_config: Any) -> int | None:
    """The number of positions a model reads (``n_positions`` / ``max_position_embeddings``), None if unbounded."""
    config = getattr(model_or_config, "config", model_or_config)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
