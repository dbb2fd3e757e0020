"""Stage 1's pair sampling: which two responses a comparison puts side by side.

* ``sft``: two samples of the policy for the prompt (rlhf-gym 0.9's only kind). Their differences mix length, form and
  content, and each content error moves the gold reward by a little, so a small reward model learns the length and
  form it sees in most pairs and little content.
* ``counterfactual``: a sample against the same sample with one content error added, of a family of the task
  (``TaskWorld.content_errors``: an item of another category, a wrong value, a negated property...), at the same
  length, form and annotator bias. The label can only be about that error. Families are tried in a random order and
  the first that has a place in the sample is used; a sample with no place for any stays an ``sft`` pair.
* ``mixed``: each pair is counterfactual with probability ``counterfactual_share``, else ``sft``: the ordinary pairs
  keep teaching the annotators' preferences (their bias included: the task's hack), the counterfactual ones content.

A share ``contrast_share`` of the counterfactual pairs may be *contrast* pairs instead (``TaskWorld.contrasts``): a
sample against the same words in another order that gold scores differently, such as describe's negation moved
from the unwanted property to a wanted one. A family's edit changes what a response says, and a small reward model can learn
most families from the words it sees; a contrast keeps every word, so only how the words are bound to one another
(and to the prompt) tells the two apart. Describe's negated-property rule is an exclusive or of the response's ``not``
and the prompt's ``but not``, which its family's comparisons alone leave a reward model at chance on
(docs/task_suite.md, describe v1); the contrasts give the rule a signal of its own.

Any kind may also make a share ``cut_share`` of its ordinary (``sft``) pairs *cut* pairs: a sample against an
ill-formed prefix of itself, as a response cut off by the budget reads (``pair_type`` ``cut``). SFT samples almost all
end properly, so without them a reward model never sees how an unfinished response should score, and a policy that
stops mid-clause at the budget can find it scored as if the clause were complete (docs/task_suite.md, describe v1).
With ``cut_empty`` a cut may also leave nothing: the empty response, a policy's EOS first. A reward summed over the
response's tokens scores it 0 whatever it learnt (:class:`~rlhf_gym.reward_model.RewardModel`), so unless comparisons
put it below real answers, a policy whose answers score below 0 learns to say nothing (docs/task_suite.md, lists v1).
With ``cut_ends`` a cut may also keep a sample's end instead of its start: an ill-formed proper suffix, down to its
last token (a lone ``.``). A reward averaged over the response reads a one-token answer where a clause ends, and
without such cuts no comparison puts it below a real answer (docs/task_suite.md, describe v1: PPO at a small beta
answered ``.``).

Any kind may also make a share ``garble_share`` of its ordinary pairs *garbled* pairs: a sample against itself with one
word edited so that it is ill-formed (``pair_type`` ``garbled``): two neighbours swapped, a word repeated, dropped, or
replaced by another word of the prompt or the response. The garbled copy says what the sample says in as many words, give
or take one, so its label can only be about form. SFT samples are almost all well-formed, so without them a reward
model may never see a broken sentence lose: facts v1's first proxy preferred a ceiling answer to its garbled copy on
0.62 of 300 held-out prompts (``rlhf-gym rm-quality``'s form row), and 14 % of PPO's answers at the default beta were
ill-formed (docs/task_suite.md, facts v1).

Every choice is drawn from a stream seeded by ``(seed, pair_id)``, so a resumed collection writes what an uninterrupted
one would. Records of a non-``sft`` sampling (or one with cuts or garbles) carry ``pair_type``: ``sft``,
``counterfactual:<family>``, ``contrast:<name>``, ``cut`` or ``garbled``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .tasks.world import ContentError, TaskWorld

PAIRINGS = ("sft", "counterfactual", "mixed")
"""``--pairs`` values."""
SFT_PAIR = "sft"
COUNTERFACTUAL = "counterfactual"
CONTRAST = "contrast"
CUT = "cut"
GARBLED = "garbled"


def _records_of(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if str(r.get("pair_type", "")).startswith(kind + ":")]


def counterfactual_records(records: list[dict]) -> list[dict]:
    """The records whose ``pair_type`` is ``counterfactual:<family>``: comparisons that differ in one content error."""
    return _records_of(records, COUNTERFACTUAL)


def contrast_records(records: list[dict]) -> list[dict]:
    """The records whose ``pair_type`` is ``contrast:<name>``: comparisons of the same words in two orders."""
    return _records_of(records, CONTRAST)


def check_pairing(kind: str, counterfactual_share: float, cut_share: float = 0.0, contrast_share: float = 0.0,
                  garble_share: float = 0.0) -> None:
    """A :class:`ConfigError` naming ``--pairs``, ``--counterfactual-share``, ``--cut-share``, ``--contrast-share`` or
    ``--garble-share`` for a value they do not take."""
    if kind not in PAIRINGS:
        raise ConfigError(f"--pairs must be one of {', '.join(PAIRINGS)}, got {kind!r}")
    if kind == "mixed" and not 0 < counterfactual_share < 1:
        raise ConfigError(f"--counterfactual-share must be in (0, 1) for --pairs mixed, got {counterfactual_share}")
    if not 0 <= cut_share < 1:
        raise ConfigError(f"--cut-share must be in [0, 1), got {cut_share}")
    if not 0 <= contrast_share < 1:
        raise ConfigError(f"--contrast-share must be in [0, 1), got {contrast_share}")
    if not 0 <= garble_share < 1:
        raise ConfigError(f"--garble-share must be in [0, 1), got {garble_share}")
    if contrast_share and kind == SFT_PAIR:
        raise ConfigError("--contrast-share replaces counterfactual pairs: it needs --pairs counterfactual or mixed")


def cut_response(response: str, is_well_formed: Callable[[str], bool], rng: random.Random, min_words: int = 1,
                 ends: bool = False) -> str | None:
    """An ill-formed proper prefix of ``response`` (whole words, at least ``min_words``: 0 admits the empty response),
    or with ``ends`` a proper prefix or suffix (a suffix has at least one word), ``rng`` choosing uniformly among them;
    None when it has none (a response of ``min_words`` words or fewer, or one whose every such cut is well-formed)."""
    words = response.split()
    cuts = [" ".join(words[:n]) for n in range(min_words, len(words))]
    if ends:
        cuts += [" ".join(words[n:]) for n in range(1, len(words))]
    ill_formed = [cut for cut in cuts if not is_well_formed(cut)]
    return rng.choice(ill_formed) if ill_formed else None


def garble_response(prompt: str, response: str, is_well_formed: Callable[[str], bool], rng: random.Random) -> str | None:
    """``response`` with one word edit that leaves it ill-formed: two neighbours swapped, a word repeated, a word dropped,
    or a word replaced by another of the prompt's or the response's words. ``rng`` shuffles the four kinds, then each
    kind's places (and a replacement's word), and the first ill-formed result is returned; None when every edit of every
    kind leaves a well-formed response (or the response has no word)."""
    words = response.split()
    vocabulary = sorted(set(prompt.split() + words))
    edits: dict[str, Callable[[int], list[str] | None]] = {
        "swap": lambda i: [*words[:i], words[i + 1], words[i], *words[i + 2:]] if words[i] != words[i + 1] else None,
        "repeat": lambda i: words[:i + 1] + words[i:],
        "drop": lambda i: words[:i] + words[i + 1:],
        "replace": lambda i: [*words[:i], rng.choice([w for w in vocabulary if w != words[i]] or [words[i]]), *words[i + 1:]],
    }
    places = {"swap": len(words) - 1, "repeat": len(words), "drop": len(words), "replace": len(words)}
    kinds = sorted(edits)
    rng.shuffle(kinds)
    for kind in kinds:
        positions = list(range(places[kind]))
        rng.shuffle(positions)
        for i in positions:
            edited = edits[kind](i)
            if edited is not None and edited != words and not is_well_formed(" ".join(edited)):
                return " ".join(edited)
    return None


def _first_edit(edits: Mapping[str, ContentError], kind: str, prompt: str, response: str,
                rng: random.Random) -> tuple[str, str] | None:
    """``(edited, "<kind>:<name>")`` of the first of ``edits``, in an order ``rng`` shuffles, that has a place in
    ``response``; None if none has."""
    names = sorted(edits)
    rng.shuffle(names)
    for name in names:
        edited = edits[name](prompt, response, rng)
        if edited is not None:
            return edited, f"{kind}:{name}"
    return None


@dataclass(frozen=True)
class Pairing:
    """How Stage 1 pairs responses (see the module docstring).

    :param kind: one of :data:`PAIRINGS`.
    :param counterfactual_share: ``mixed``: the probability that a pair is counterfactual, in (0, 1).
    :param families: the task's content-error edits, by family (``TaskWorld.content_errors``).
    :param cut_share: the probability that an ordinary pair is a cut pair instead, in [0, 1).
    :param is_well_formed: ``(prompt, response) -> bool``, the task's grammar (needed for cut pairs).
    :param cut_empty: a cut may leave the empty response (a prefix of no words).
    :param cut_ends: a cut may keep the sample's end instead of its start (an ill-formed proper suffix).
    :param garble_share: the probability that an ordinary pair that is not cut is a garbled pair instead, in [0, 1).
    :param contrast_share: the probability that a counterfactual pair is a contrast pair instead, in [0, 1).
    :param contrasts: the task's contrast edits, by name (``TaskWorld.contrasts``).
    """

    kind: str = SFT_PAIR
    counterfactual_share: float = 0.5
    families: Mapping[str, ContentError] = field(default_factory=dict)
    cut_share: float = 0.0
    is_well_formed: Callable[[str, str], bool] | None = None
    cut_empty: bool = False
    contrast_share: float = 0.0
    contrasts: Mapping[str, ContentError] = field(default_factory=dict)
    cut_ends: bool = False
    garble_share: float = 0.0

    def __post_init__(self) -> None:
        check_pairing(self.kind, self.counterfactual_share, self.cut_share, self.contrast_share, self.garble_share)
        if self.kind != SFT_PAIR and not self.families:
            raise ConfigError(f"--pairs {self.kind} needs a task with content-error families (lists, facts, describe)")
        if self.cut_share and self.is_well_formed is None:
            raise ConfigError("--cut-share needs a task with a grammar (is_well_formed): lists, facts, describe")
        if self.garble_share and self.is_well_formed is None:
            raise ConfigError("--garble-share needs a task with a grammar (is_well_formed): lists, facts, describe")
        if self.contrast_share and not self.contrasts:
            raise ConfigError("--contrast-share needs a task with contrasts (describe)")

    @classmethod
    def for_world(cls, world: TaskWorld, kind: str, counterfactual_share: float, cut_share: float = 0.0,
                  cut_empty: bool = False, contrast_share: float = 0.0, cut_ends: bool = False,
                  garble_share: float = 0.0) -> Pairing:
        """The pairing of ``world``'s content-error families, contrasts and grammar."""
        return cls(kind, counterfactual_share, world.content_errors, cut_share, world.is_well_formed, cut_empty,
                   contrast_share, world.contrasts, cut_ends, garble_share)

    def second_response(self, seed: int, pair_id: int, prompt: str, first: str, sampled: str) -> tuple[str, str | None]:
        """The pair's second response and its ``pair_type`` (None for the ``sft`` kind, whose records carry none).

        :param first: the pair's first response, which a counterfactual edits.
        :param sampled: the second response the policy sampled, which an ``sft`` pair keeps.
        """
        if self.kind == SFT_PAIR and not (self.cut_share or self.garble_share):
            return sampled, None
        rng = random.Random(f"{seed}/{pair_id}/pairing")  # a str seed is hashed with SHA-512: stable across runs
        if self.kind != SFT_PAIR and not (self.kind == "mixed" and rng.random() >= self.counterfactual_share):
            # the contrast draw only where there are contrasts, so that a pairing without draws what it always drew
            if self.contrast_share and rng.random() < self.contrast_share:
                contrast = _first_edit(self.contrasts, CONTRAST, prompt, first, rng)
                if contrast is not None:
                    return contrast
            counterfactual = _first_edit(self.families, COUNTERFACTUAL, prompt, first, rng)
            if counterfactual is not None:
                return counterfactual
        # an ordinary pair; the cut draw comes last, so that a pairing without cuts draws what it always drew
        if self.cut_share and rng.random() < self.cut_share:
            cut = cut_response(first, lambda response: self.is_well_formed(prompt, response), rng,
                               min_words=0 if self.cut_empty else 1, ends=self.cut_ends)
            if cut is not None:
                return cut, CUT
        # the garble draw after it, and only with garbles: a pairing without them draws what it always drew
        if self.garble_share and rng.random() < self.garble_share:
            garbled = garble_response(prompt, first, lambda response: self.is_well_formed(prompt, response), rng)
            if garbled is not None:
                return garbled, GARBLED
        return sampled, SFT_PAIR
