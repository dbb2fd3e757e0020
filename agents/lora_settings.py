"""What LoRA adapts and how (:class:`LoraSettings`), checked without importing torch or PEFT: ``rlhf-gym train``'s
options read these names for their ``--help``; :mod:`rlhf_gym.agents.lora` applies them."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rlhf_gym.checks import check_number
from rlhf_gym.errors import ConfigError

ALL_LINEAR = "all-linear"
"""PEFT's shorthand for every linear (and GPT-2 ``Conv1D``) layer but the output head: for GPT-2 ``c_attn``, ``c_proj``
(attention and MLP) and ``c_fc``. QLoRA (Dettmers et al. 2023) found adapters on every linear layer needed to match full
fine-tuning."""
ALL_LINEAR_AND_HEAD = "all-linear+head"
"""Every linear layer, the output head included (the default). On RLHF-v0, whose word-level model ties its head to the
input embeddings, the head decides: PPO with adapters on ``all-linear`` stayed far below full fine-tuning at every
learning rate tried, as did full fine-tuning of those same layers alone; with the head it matched full fine-tuning."""
SHORTHANDS = (ALL_LINEAR, ALL_LINEAR_AND_HEAD)


@dataclass(frozen=True)
class LoraSettings:
    """What to adapt and how (``policy_kwargs["lora"]`` of :class:`rlhf_gym.agents.TransformerPolicy`, as this or a dict).

    LoRA dropout is always 0: the project disables dropout so that the rollout and the update see the same function
    (the first PPO ratio is 1).

    :param r: rank of each adapter ``B A``.
    :param alpha: scale numerator: the update is ``(alpha / r) * B A`` (Hu et al. 2021; ``alpha = 2r`` is common).
    :param target_modules: ``"all-linear+head"`` (every linear layer and the output head), ``"all-linear"`` (PEFT's:
        every linear layer but the head), or the names of the layers to adapt (a layer is adapted when its name is one
        of these or ends with ``"." + name``, PEFT's rule), as a sequence or one comma-separated string.
    """

    r: int = 8
    alpha: float = 16.0
    target_modules: str | tuple[str, ...] = ALL_LINEAR_AND_HEAD

    def __post_init__(self) -> None:
        # bool is an Integral: r=True would otherwise pass as rank 1
        if isinstance(self.r, bool) or not isinstance(self.r, numbers.Integral) or self.r <= 0:
            raise ConfigError(f"--lora-r (the LoRA rank) must be a positive integer, got {self.r!r}")
        object.__setattr__(self, "r", int(self.r))  # frozen dataclass: normalised through object.__setattr__
        check_number("--lora-alpha (the LoRA scale numerator)", self.alpha, minimum=0, strict=True)
        names = self.target_modules
        # a comma-separated string is how the command line gives a list of names
        if isinstance(names, str) and names not in SHORTHANDS:
            names = names.split(",")
        if not isinstance(names, str):
            names = tuple(name.strip() for name in names)
            if not names or not all(names):
                raise ConfigError(f"--lora-target-modules must be {' or '.join(map(repr, SHORTHANDS))} or layer names "
                                  f"separated by commas, got {self.target_modules!r}")
        object.__setattr__(self, "target_modules", names)  # normalised: a shorthand or a tuple of names

    @classmethod
    def parse(cls, value: LoraSettings | Mapping[str, Any] | None) -> LoraSettings | None:
        """``value`` as settings (None: no LoRA, full fine-tuning); a mapping takes the fields' names."""
        if value is None or isinstance(value, LoraSettings):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"lora must be a LoraSettings or a dict of r, alpha, target_modules, got {value!r}")
        unknown = set(value) - {"r", "alpha", "target_modules"}
        if unknown:
            raise ConfigError(f"lora: unknown setting(s) {', '.join(sorted(unknown))} (known: r, alpha, target_modules)")
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (what SB3 saves in ``policy_kwargs``)."""
        data = asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data
