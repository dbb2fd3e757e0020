"""A proxy reward model's name: its size, its slice of the shipped comparisons and its seed (:class:`ProxySpec`), and
the options that list them; readable without importing torch (a study's ``--help``). :mod:`rlhf_gym.proxies` trains
and measures them."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class ProxySpec:
    """One proxy reward model: its size, its slice of the shipped comparisons and its seed."""

    width: int
    layers: int
    n_comparisons: int
    seed: int = 0
    offset: int = 0

    @property
    def name(self) -> str:
        """A directory name, e.g. ``w64_l2_n10000`` (``_from3333``, ``_seed1`` when not the defaults)."""
        return (f"w{self.width}_l{self.layers}_n{self.n_comparisons}" + (f"_from{self.offset}" if self.offset else "")
                + (f"_seed{self.seed}" if self.seed else ""))


def parse_sizes(text: str, option: str = "--sizes") -> list[tuple[int, int]]:
    """``"32x1,64x2"`` -> ``[(32, 1), (64, 2)]`` (width x layers); a :class:`ConfigError` naming ``option`` otherwise."""
    try:
        sizes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        sizes = []
    # GPT-2's attention has 4 heads here, so the width must split into them
    if not sizes or any(len(s) != 2 or s[0] < 4 or s[0] % 4 or s[1] < 1 for s in sizes):
        raise ConfigError(f"{option} must list WIDTHxLAYERS sizes (width a multiple of 4), e.g. 32x1,64x2; got {text!r}")
    return sizes  # type: ignore[return-value]


def parse_ints(text: str, option: str, minimum: int = 0) -> list[int]:
    """Comma-separated integers ``>= minimum``, each once; a :class:`ConfigError` naming ``option`` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum or len(set(values)) != len(values):
        raise ConfigError(f"{option} must list distinct integers >= {minimum}, got {text!r}")
    return values
