"""Diverse reward-model ensembles (Coste et al. 2023, https://arxiv.org/abs/2310.02743) and how much their members
disagree where it matters.

The shipped ensemble's members differ only in their seed and agree on the hacks (docs/reward_hacking.md). Each *kind*
below makes the members differ in one more way, three members each (``seeds[i]``, ``sizes[i]``, the i-th third of
the comparisons):

* ``seeds``:    the shipped recipe (64 x 2, all comparisons), seeds only — the baseline of diversity;
* ``disjoint``: 64 x 2, each member on its own third of the comparisons (no comparison seen twice);
* ``sizes``:    the three sizes, all comparisons;
* ``mixed``:    the three sizes, each on its own third — every source of diversity at once.

:func:`disagreement` measures the premise of the method: the between-member std of the standardised scores, on SFT
samples and on the policy samples that the gold reward calls ill-formed (the hacks). An ensemble can only hold a
policy back from a hack that its members disagree on.
"""

from __future__ import annotations

from collections.abc import Sequence


from rlhf_gym.ensemble import RewardEnsemble
from rlhf_gym.errors import ConfigError
from rlhf_gym.proxy_spec import ProxySpec
from .tables import plus_minus as pm

KINDS = ("seeds", "disjoint", "sizes", "mixed")


def ensemble_members(kind: str, n_comparisons: int, sizes: Sequence[tuple[int, int]], seeds: Sequence[int],
                     base_size: tuple[int, int] = (64, 2)) -> list[ProxySpec]:
    """The members of one kind of ensemble (see the module docstring); one per seed."""
    if kind not in KINDS:
        raise ConfigError(f"unknown ensemble kind {kind!r}; choose from {', '.join(KINDS)}")
    if kind in ("sizes", "mixed") and len(sizes) != len(seeds):
        raise ConfigError(f"ensembles of kind {kind!r} need one size per member: {len(sizes)} sizes, {len(seeds)} seeds")
    share = n_comparisons // len(seeds)  # disjoint kinds: member i gets comparisons [i * share, (i + 1) * share)
    members = []
    for i, seed in enumerate(seeds):
        width, layers = sizes[i] if kind in ("sizes", "mixed") else base_size
        disjoint = kind in ("disjoint", "mixed")
        members.append(ProxySpec(width, layers, share if disjoint else n_comparisons, seed, i * share if disjoint else 0))
    return members


def disagreement(ensemble: RewardEnsemble, prompts: Sequence[str], responses: Sequence[str]) -> dict:
    """Mean and std over responses of the between-member std of the standardised scores, and the number scored."""
    if not prompts:
        return {"mean_member_std": float("nan"), "std": float("nan"), "n": 0}
    spread = ensemble.member_scores(prompts, responses).std(axis=0)
    return {"mean_member_std": float(spread.mean()), "std": float(spread.std()), "n": len(prompts)}


def stored_samples(runs: list[dict]) -> list[tuple[str, str]]:
    """Every sample text kept at the evaluation points of ``runs``, as (prompt, response), without repeats."""
    return list(dict.fromkeys((p, r) for run in runs for point in run["points"] for p, r in point["samples"]))


def summary_table(rows: dict[str, dict]) -> str:
    """Per proxy (label -> a row of :func:`.tables.summarize` plus ``hacked``/``n_runs``): a markdown table."""
    lines = ["| proxy | beta | gold peak (KL at peak) | gold final | KL final | well-formed final | runs ending hacked |",
             "|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['beta']:g} | {pm(r['gold_peak'])} ({r['kl_at_peak'][0]:.1f}) | "
                     f"{pm(r['final_gold_reward'])} | {pm(r['final_kl'], 1)} | {pm(r['final_well_formed'])} | "
                     f"{r['hacked']} of {r['n_runs']} |")
    return "\n".join(lines) + "\n"
