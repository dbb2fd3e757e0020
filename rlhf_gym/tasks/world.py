"""What one task subpackage provides: its language, gold reward, annotator bias and build settings.

A :class:`TaskWorld` is everything that differs between tasks; :mod:`rlhf_gym.tasks.building` turns one into
shipped artifacts (SFT policy, comparisons, reward model, metadata) with code shared by every task, and
:meth:`TaskWorld.task` into the :class:`~rlhf_gym.tasks.base.Task` that envs and evaluation load.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from . import DEFAULT_MAX_NEW_TOKENS
from .base import Task

PAD_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN]
EVAL_FRACTION = 0.2
"""Share of a task's prompts held out for evaluation."""
SPLIT_SEED = 1234
"""Seed of every task's fixed train/held-out split."""
SUITE_BUILD = {"annotator_temperature": 0.25, "annotator_flip_rate": 0.05, "n_sft_texts": 60_000,
               "n_comparisons": 20_000, "reward_init": "sft"}
"""Build settings shared by the suite's tasks (their ``build_defaults`` add the bias weights): their languages need
twice the reviews task's SFT texts for the policy to learn to read the request, and a reward model that starts from
the SFT policy (InstructGPT's recipe) on 20,000 comparisons from annotators less noisy than the reviews task's
(temperature 0.25, 5% flips) to learn content beside the bias."""
SUITE_V1_BUILD = {"annotator_temperature": 0.1, "annotator_flip_rate": 0.02, "annotator_ties": "label", "pairs": "mixed",
                  "counterfactual_share": 0.5, "n_comparisons": 40_000, "reward_content_epochs": 4, "reward_epochs": 6,
                  "reward_standardise": True}
"""What the suite's v1 tasks change in their v0 task's build (issue 27; docs/task_suite.md, "v1"; each v1 task also
sets ``sft_from``, its v0 SFT policy, and its own bias weights): half the comparisons counterfactual (one content error
at equal length, form and bias), gold ties labelled and left out, careful annotators (temperature 0.1, 2% flips: a
content error moves gold by only ``1/k``, which at temperature 0.25 decides a label little better than a coin), twice
the comparisons, four reward-model passes over the counterfactual comparisons alone before six over all of them
(content first: with the annotators' length bias in the ordinary pairs, a model trained on all of them at once can
settle on length), and the reward scaled to std 1 on SFT samples (Ziegler et al. 2019), so that beta weighs the KL
against the same spread of reward as on the reviews task."""


ContentError = Callable[[str, str, random.Random], "str | None"]
"""``(prompt, response, rng) -> edited``: a counterfactual edit of one content-error family. ``edited`` is
``response`` with one more error of the family (an item of another category, a wrong value...) and nothing else
changed that a reader could weigh: the same number of words, the same well-formedness, the same annotator bias
``b``, the content profile (:attr:`TaskWorld.content_profile`) one higher in this family and equal in every other, and
a strictly lower gold reward. None when ``response`` is ill-formed or has no place for such an error. ``rng`` picks
among the places and substitutes, so one seed gives one edit."""


def word_level_tokenizer(vocabulary: Sequence[str], model_max_length: int = 64) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` with one id per word of ``vocabulary`` (ids 0, 1, 2 are pad, eos, unk)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + list(vocabulary))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
    )


def fixed_split(prompts: list[str], eval_fraction: float = EVAL_FRACTION,
                seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """The fixed ``(train, held-out)`` split of ``prompts``: a seeded shuffle, the first ``eval_fraction`` held out."""
    prompts = list(prompts)
    random.Random(seed).shuffle(prompts)
    n_eval = int(len(prompts) * eval_fraction)
    return prompts[n_eval:], prompts[:n_eval]


@dataclass(frozen=True)
class TaskWorld:
    """A task's world: the parts a new task subpackage writes (everything else is shared).

    :param name: task id (``load_task(name)``), also the subpackage's name.
    :param vocabulary: every word of prompts and responses (whitespace-separated tokens), sorted, no duplicates.
    :param sample_text: ``rng -> (prompt, response)``, one SFT training text from the task's generator.
    :param all_prompts: ``() -> prompts``, every prompt of the task, in a fixed order (split by :func:`fixed_split`).
    :param gold_reward: ``G(prompt, response)``, the hidden true reward in closed form.
    :param is_well_formed: ``(prompt, response) -> bool`` under the task's grammar.
    :param gold_ceiling: ``prompt -> max_y G(prompt, y)``, the best gold reward a response can get (None: unknown).
    :param annotator_bias: ``b(prompt, response)``, the feature the task's simulated annotators overrate: annotator
        ``i`` judges by ``G + w_i * b`` (weights in ``build_defaults["annotator_bias_weights"]``); None: unbiased.
    :param bias_name: what the bias is, in a few words ("response length in items", ...).
    :param bias_probe: ``(prompt, k) -> response``: a ceiling response of ``prompt`` with ``k`` units of the bias
        added and its content otherwise unchanged, to measure a reward model's preference for the bias alone.
    :param content_probe: ``prompt -> response``: ``bias_probe(prompt, 0)`` with its content made wrong and its shape
        and bias kept, to measure whether a reward model sees the content at all.
    :param content_errors: the task's content-error families, by name, each a :data:`ContentError` edit: a
        counterfactual pair is a response against its edit (Stage 1's ``--pairs counterfactual``), and a reward model's
        agreement with gold is reported per family (:mod:`rlhf_gym.pair_types`).
    :param contrasts: the task's contrast edits, by name: ``(prompt, response, rng) -> edited``, the response's words
        in another order that gold scores differently, or None where the response has no such order (Stage 1's
        ``--contrast-share``; :mod:`rlhf_gym.pairing`).
    :param content_profile: ``(prompt, response) -> {family: count}``, how many errors of each family of
        ``content_errors`` a response makes (every family a key); two responses whose profiles are equal differ in
        length or form only.
    :param max_new_tokens: the task's response budget.
    :param build_defaults: the task's values of :class:`~rlhf_gym.tasks.building.BuildConfig` fields.
    :param artifacts_dir: where the built artifacts ship.
    """

    name: str
    vocabulary: tuple[str, ...]
    sample_text: Callable[[random.Random], tuple[str, str]]
    all_prompts: Callable[[], list[str]]
    gold_reward: Callable[[str, str], float]
    is_well_formed: Callable[[str, str], bool]
    artifacts_dir: Path
    gold_ceiling: Callable[[str], float] | None = None
    annotator_bias: Callable[[str, str], float] | None = None
    bias_name: str | None = None
    bias_probe: Callable[[str, int], str] | None = None
    content_probe: Callable[[str], str] | None = None
    content_errors: Mapping[str, ContentError] = field(default_factory=dict)
    content_profile: Callable[[str, str], dict[str, int]] | None = None
    contrasts: Mapping[str, ContentError] = field(default_factory=dict)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    build_defaults: dict = field(default_factory=dict)

    def version(self, name: str, artifacts_dir: Path, **build_defaults) -> TaskWorld:
        """The same world (language, gold, annotator bias, content families, prompts and split) under the task id
        ``name``, with artifacts of its own, built with ``build_defaults`` over this world's: a new version of a task
        whose published artifacts stay as they are."""
        return replace(self, name=name, artifacts_dir=artifacts_dir, build_defaults={**self.build_defaults, **build_defaults})

    def suite_v1(self, bias_weights: tuple[float, ...], **build_defaults) -> TaskWorld:
        """This suite task's v1: task id ``<name>_v1`` (a sibling subpackage holds its artifacts), this task's SFT
        policy, built by :data:`SUITE_V1_BUILD` with annotators of ``bias_weights`` (and ``build_defaults`` over
        both)."""
        name = f"{self.name}_v1"
        return self.version(name, self.artifacts_dir.parent.parent / name / "artifacts", **{
            **SUITE_V1_BUILD, "annotator_bias_weights": bias_weights, "sft_from": str(self.artifacts_dir / "policy"),
            **build_defaults})

    def prompt_split(self) -> tuple[list[str], list[str]]:
        """The fixed ``(train, held-out)`` prompts."""
        return fixed_split(self.all_prompts())

    def tokenizer(self) -> PreTrainedTokenizerFast:
        return word_level_tokenizer(self.vocabulary)

    def task(self, artifacts_dir: str | Path | None = None) -> Task:
        """The loadable :class:`Task` (artifacts from ``artifacts_dir``, default the shipped ones)."""
        train, held_out = self.prompt_split()
        return Task(name=self.name, artifacts_dir=Path(artifacts_dir) if artifacts_dir else self.artifacts_dir,
                    train_prompts=train, eval_prompts=held_out, gold_reward=self.gold_reward,
                    is_well_formed=self.is_well_formed, max_new_tokens=self.max_new_tokens,
                    gold_ceiling=self.gold_ceiling, sample_text=self.sample_text)
