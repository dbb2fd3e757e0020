"""Checks of argument values, each a :class:`~rlhf_gym.errors.ConfigError` naming the option or field at fault."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import ConfigError


def check_positive_options(args: Any, names: tuple[str, ...]) -> None:
    """Each field of ``args`` in ``names`` (a command's options; None: not set) must be a finite number > 0.

    ``not value > 0`` also refuses NaN; the message names the option as typed (``--n-envs``).
    """
    for name in names:
        value = getattr(args, name)
        if value is None:
            continue
        option = f"--{name.replace('_', '-')}"
        if not value > 0:
            raise ConfigError(f"{option} must be > 0, got {value}")
        if not math.isfinite(value):
            raise ConfigError(f"{option} must be finite, got {value}")


def check_option(name: str, value: float | None, low: float = 0.0, strict: bool = False) -> None:
    """A :class:`ConfigError` naming option ``--name`` unless ``value`` is None or a finite number ``>= low``
    (``> low`` when ``strict``)."""
    if value is None:
        return
    option = f"--{name.replace('_', '-')}"
    if not math.isfinite(value):
        raise ConfigError(f"{option} must be finite, got {value}")
    if value < low or (strict and value == low):
        raise ConfigError(f"{option} must be {'>' if strict else '>='} {low:g}, got {value}")


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> None:
    """A :class:`ConfigError` unless ``value`` is a finite number ``> minimum`` (``strict``) or ``>= minimum``."""
    valid = is_number(value) and math.isfinite(value)
    if valid and minimum is not None:
        valid = value > minimum if strict else value >= minimum
    if not valid:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise ConfigError(f"{name} must be a finite number{bound}, got {value!r}")


def check_count(name: str, value: Any) -> None:
    """A :class:`ConfigError` unless ``value`` is an integer >= 1 (a bool or 2.5 is not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


MIN_TEMPERATURE = 1e-6
"""The lowest sampling temperature: below it ``logits / temperature`` overflows float32 to inf."""


def check_temperature(temperature: float, option: str = "--temperature", sampling: bool = True) -> None:
    """:class:`ConfigError` naming ``option`` unless ``temperature`` is finite and > 0.

    :param sampling: a temperature that divides a policy's logits, which must also be at least :data:`MIN_TEMPERATURE`
        (an annotator's Bradley–Terry temperature may be smaller).
    """
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"{option} must be > 0 and finite, got {temperature}")
    if sampling and temperature < MIN_TEMPERATURE:
        raise ConfigError(f"{option} must be at least {MIN_TEMPERATURE} (float32 logits overflow below), got {temperature}")


def check_seed(seed: int, option: str = "--seed") -> None:
    """:class:`ConfigError` naming ``option`` unless ``0 <= seed < 2**32`` (what every seeded generator accepts)."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"{option} must be in [0, 2**32), got {seed}")
