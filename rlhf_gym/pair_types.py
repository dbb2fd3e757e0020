"""A reward model's agreement with the gold reward, split by what differs between the two responses of a pair.

Overall agreement hides a proxy that sees only length: on the lists task a reward model agreed with gold on 98 % of
the pairs that differ in length or form only, and was at chance on the 85 % that differ in content. So a proxy is
judged per *pair type*: the content-error families (``TaskWorld.content_errors``) whose counts differ between the two
responses (``TaskWorld.content_profile``), or ``length_form`` when no count differs. A pair with an ill-formed response
is a ``length_form`` pair (its content is not read). A pair whose counts differ in several families counts in each.

Gold ties are left out (no order to agree with); a tie of the proxy is a disagreement. The probe table
(:func:`content_probes`) asks the cleanest question: does the proxy prefer the ceiling answer to the same answer with one
error of a family, at the same length and bias? Its form row (:func:`form_probe`) asks the same of form: the ceiling
answer against itself with one word edited so that it is ill-formed (:func:`rlhf_gym.pairing.garble_response`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .tasks.world import TaskWorld

LENGTH_FORM = "length_form"
"""The pair type of two responses that make the same content errors: they differ in length or form only."""
OVERALL = "overall"
GOLD_TIE = 1e-9
"""Gold differences at most this large are ties."""

Scorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]
"""``(prompts, responses) -> scores``: a reward model's ``score``."""


def gold_order_agreement(gold_delta: np.ndarray, proxy_delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(agrees, decided)`` per pair from the gold and proxy score differences: whether the proxy orders the pair as
    gold does (a proxy tie never agrees), and whether gold orders it at all (not a tie within :data:`GOLD_TIE`)."""
    gold_delta, proxy_delta = np.asarray(gold_delta, dtype=float), np.asarray(proxy_delta, dtype=float)
    return np.sign(gold_delta) == np.sign(proxy_delta), np.abs(gold_delta) > GOLD_TIE


def pair_families(world: TaskWorld, prompt: str, a: str, b: str) -> tuple[str, ...]:
    """The content families whose error counts differ between ``a`` and ``b`` (in ``content_errors`` order); empty
    when both make the same errors, or when either is ill-formed (a form difference)."""
    if world.content_profile is None or not (world.is_well_formed(prompt, a) and world.is_well_formed(prompt, b)):
        return ()
    first, second = world.content_profile(prompt, a), world.content_profile(prompt, b)
    return tuple(family for family in world.content_errors if first[family] != second[family])


def agreement_by_type(world: TaskWorld, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                      proxy_a: Sequence[float], proxy_b: Sequence[float]) -> dict[str, dict]:
    """Agreement of the proxy's order of each pair ``(a[i], b[i])`` with the gold order, overall and per pair type.

    :returns: ``{"overall" | "length_form" | family: {"pairs": n, "share": n / decided pairs, "agreement": share of
        those n pairs ordered as gold orders them (None when n is 0)}}``, plus ``"gold_ties"`` (pairs left out).
    """
    gold_delta = np.array([world.gold_reward(p, x) - world.gold_reward(p, y) for p, x, y in zip(prompts, a, b)])
    agrees, decided = gold_order_agreement(gold_delta, np.asarray(proxy_a, dtype=float) - np.asarray(proxy_b, dtype=float))
    members: dict[str, list[int]] = {OVERALL: [], LENGTH_FORM: [], **{family: [] for family in world.content_errors}}
    for i in np.flatnonzero(decided):
        members[OVERALL].append(i)
        for family in pair_families(world, prompts[i], a[i], b[i]) or (LENGTH_FORM,):
            members[family].append(i)
    n_decided = max(int(decided.sum()), 1)
    table = {kind: {"pairs": len(rows), "share": len(rows) / n_decided,
                    "agreement": float(agrees[rows].mean()) if rows else None} for kind, rows in members.items()}
    return {**table, "gold_ties": int((~decided).sum())}


PROBE_MAX_BIAS = 4
"""The most bias units a probe's ceiling answer takes to make room for an edit (see :func:`ceiling_edit`)."""


def ceiling_edit(world: TaskWorld, family: str, prompt: str, rng: random.Random) -> tuple[str, str] | None:
    """``(ceiling, edited)``: a ceiling answer of ``prompt`` and its edit with one error of ``family``; None when the
    family has no place in any.

    The ceiling answers tried are ``bias_probe(prompt, k)`` for ``k = 0, 1, ...`` up to :data:`PROBE_MAX_BIAS` (all
    reach the gold ceiling; ``k`` adds bias without changing content): the shortest one may have no room for an edit
    at equal length and bias (describe's three bare clauses cannot be negated without changing the echo).
    """
    edit = world.content_errors[family]
    for bias in range(PROBE_MAX_BIAS + 1):
        try:
            ceiling = world.bias_probe(prompt, bias)
        except ValueError:  # no room for this much bias in an answer to this prompt
            return None
        edited = edit(prompt, ceiling, rng)
        if edited is not None:
            return ceiling, edited
    return None


def content_probes(world: TaskWorld, score: Scorer, prompts: Sequence[str], seed: int = 0) -> dict[str, dict]:
    """Per family: a ceiling answer against the same answer with one error of the family (:func:`ceiling_edit`).

    :returns: ``{family: {"prompts": n, "prefers_ceiling": share of the n prompts where the proxy scores the ceiling
        answer higher, "margin": mean proxy score difference, "gold_margin": mean gold difference}}`` over the prompts
        where the family applies (an excluded member needs a prompt that excludes one).
    """
    if world.bias_probe is None:
        raise ValueError(f"task {world.name!r} has no ceiling answers (bias_probe) to probe with")
    table = {}
    for family in world.content_errors:
        rng = random.Random(seed)
        cases = [(p, *pair) for p in prompts if (pair := ceiling_edit(world, family, p, rng)) is not None]
        table[family] = _probe_row(world, score, cases)
    return table


def _probe_row(world: TaskWorld, score: Scorer, cases: list[tuple[str, str, str]]) -> dict:
    """A probe table's row of ``(prompt, ceiling, edited)`` cases: ``{"prompts", "prefers_ceiling", "margin",
    "gold_margin"}`` (None figures without a case)."""
    if not cases:
        return {"prompts": 0, "prefers_ceiling": None, "margin": None, "gold_margin": None}
    chosen_prompts = [p for p, _, _ in cases]
    margin = (np.asarray(score(chosen_prompts, [c for _, c, _ in cases]), dtype=float)
              - np.asarray(score(chosen_prompts, [e for _, _, e in cases]), dtype=float))
    gold = [world.gold_reward(p, c) - world.gold_reward(p, e) for p, c, e in cases]
    return {"prompts": len(cases), "prefers_ceiling": float(np.mean(margin > 0)), "margin": float(margin.mean()),
            "gold_margin": float(np.mean(gold))}


def form_probe(world: TaskWorld, score: Scorer, prompts: Sequence[str], seed: int = 0) -> dict:
    """The shortest ceiling answer (``bias_probe(prompt, 0)``) against itself garbled: one word swapped with its
    neighbour, repeated, dropped or replaced so that it is ill-formed, at the same content words.

    :returns: :func:`content_probes`' row for this one kind: ``{"prompts", "prefers_ceiling", "margin",
        "gold_margin"}`` over the prompts whose ceiling answer has such an edit.
    """
    from .pairing import garble_response

    if world.bias_probe is None or world.is_well_formed is None:
        raise ValueError(f"task {world.name!r} has no ceiling answers (bias_probe) or no grammar to probe form with")
    rng = random.Random(seed)
    cases = []
    for prompt in prompts:
        ceiling = world.bias_probe(prompt, 0)
        garbled = garble_response(prompt, ceiling, lambda response, prompt=prompt: world.is_well_formed(prompt, response),
                                  rng)
        if garbled is not None:
            cases.append((prompt, ceiling, garbled))
    return _probe_row(world, score, cases)


def markdown_agreement(table: dict[str, dict]) -> str:
    """The per-type agreement as a Markdown table (one row per pair type)."""
    lines = ["| pair type | pairs | share of decided pairs | agreement with gold |", "|---|---|---|---|"]
    for kind, row in table.items():
        if kind == "gold_ties":
            continue
        agreement = "—" if row["agreement"] is None else f"{row['agreement']:.3f}"
        lines.append(f"| {kind} | {row['pairs']} | {row['share']:.2f} | {agreement} |")
    return "\n".join(lines) + f"\n\n{table['gold_ties']} gold ties left out."
