"""Supervised fine-tuning without torch: demonstrations in TRL's formats, their token examples, the held-out split, the
packing of examples into blocks, and the settings of the loop (:class:`SFTConfig`, run by :func:`rlhf_gym.sft.train_sft`).

A demonstration is one record of any of TRL's formats (a file may mix them):

- prompt-completion ``{"prompt": str, "completion": str}``: the completion is learnt after the prompt;
- language modelling ``{"text": str}``: every token is learnt;
- conversational ``{"messages": [{"role", "content"}, ...]}``, ending with the assistant's message (the completion), or
  ``{"prompt": [messages], "completion": [messages]}``: rendered to prompt and completion text by the tokenizer's chat
  template (:func:`rlhf_gym.conversation.render_messages`, :func:`~rlhf_gym.conversation.render_completion`).

Tokenisation is the env's (:func:`rlhf_gym.prompts.tokenize_prompts`): prompt and completion are tokenised apart with
``add_special_tokens=False`` and concatenated, so the policy learns the completion after exactly the ids the env feeds
it at RL time. No BOS is prepended (a chat template that writes one in its text keeps it); a BPE tokenizer's completion
keeps the leading space the data gives it (``" great"``). The EOS is appended after each completion (unless its
tokens end with it), so that the policy learns to stop: the env ends an episode at EOS. A blank completion or text is
refused: a demonstration of stopping at once is more likely a broken export than intended.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .conversation import check_all_or_none, check_messages, render_completion, render_messages
from .errors import ConfigError, DataError
from .jsonl import JSONLError, read_jsonl

if TYPE_CHECKING:
    from .tasks.world import TaskWorld

LR_SCHEDULES = ("linear", "constant")
"""After the warm-up: linear decay to 0, or constant."""


@dataclass
class SFTConfig:
    """Settings of :func:`rlhf_gym.sft.train_sft` (the defaults: the task build's SFT stage)."""

    epochs: int = 2
    """Passes over the examples."""
    batch_size: int = 64
    """Examples per optimizer step (with ``packing``: blocks)."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay, on every parameter."""
    seed: int = 0
    """Seed of the shuffling."""
    lr_schedule: str = "linear"
    """After the warm-up: ``linear`` decay to 0 or ``constant`` (:data:`LR_SCHEDULES`)."""
    warmup_ratio: float = 0.0
    """Share of the steps over which the learning rate rises linearly from 0 (``ceil(ratio * steps)`` steps)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping."""
    completion_only_loss: bool = True
    """Learn the completion tokens only (TRL's default for prompt-completion data); False: every token."""
    packing: bool = False
    """Pack examples into blocks of ``max_length`` tokens (:func:`pack`)."""
    max_length: int | None = None
    """The block length with ``packing``; examples must be cut to it first (:func:`fit_examples`)."""

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.packing and self.max_length is None:
            raise ConfigError("packing needs max_length, the length of its blocks")


class DemonstrationError(JSONLError):
    """A malformed demonstration; the message names its file and line (or dataset row) and the field."""


@dataclass(frozen=True)
class Demonstration:
    """One record of a format of the module docstring; ``where`` names it in errors (``file:line``)."""

    record: dict
    where: str

    def texts(self, tokenizer: Any) -> tuple[str, str]:
        """``(prompt, completion)`` as text: a conversation rendered by ``tokenizer``'s chat template, the prompt of a
        ``text`` record empty."""
        record = self.record
        if "messages" in record:
            return render_messages(record["messages"], tokenizer, f"{self.where}: field 'messages'")
        if "text" in record:
            return "", record["text"]
        if isinstance(record["prompt"], list):
            return render_completion(record["prompt"], record["completion"], tokenizer, self.where)
        return record["prompt"], record["completion"]


def _check_text(record: dict, field: str, where: str, may_be_blank: bool = False) -> None:
    """``record[field]`` is a string (non-blank unless ``may_be_blank``); :class:`DemonstrationError` otherwise."""
    value = record[field]
    if not isinstance(value, str):
        raise DemonstrationError(f"{where}: field {field!r} must be a string or a list of messages, got "
                                 f"{type(value).__name__}")
    if not may_be_blank and not value.strip():
        raise DemonstrationError(f"{where}: field {field!r} is empty: a demonstration needs something to learn")


def check_demonstration(record: dict, where: str) -> Demonstration:
    """``record`` as a :class:`Demonstration` when it is of a format of the module docstring; else
    :class:`DemonstrationError` naming ``where`` and the field. ``None`` values (a saved dataset's columns that a row
    lacks) count as absent."""
    record = {key: value for key, value in record.items() if value is not None}
    if "messages" in record:
        check_messages(record["messages"], f"{where}: field 'messages'", DemonstrationError)
    elif "prompt" in record or "completion" in record:
        for field in ("prompt", "completion"):
            if field not in record:
                raise DemonstrationError(f"{where}: missing field {field!r} (a prompt-completion demonstration has both)")
        if check_all_or_none(record, where, DemonstrationError):
            for field in ("prompt", "completion"):
                check_messages(record[field], f"{where}: field {field!r}", DemonstrationError)
        else:
            _check_text(record, "prompt", where, may_be_blank=True)
            _check_text(record, "completion", where)
    elif "text" in record:
        _check_text(record, "text", where)
    else:
        raise DemonstrationError(f"{where}: no demonstration fields: expected 'prompt' and 'completion', 'text' or "
                                 f"'messages', got {sorted(record) or 'an empty object'}")
    return Demonstration(record, where)


def read_demonstrations(path: str | Path) -> list[Demonstration]:
    """The demonstrations of a JSONL file or of a saved ``datasets`` directory; errors name ``file:line`` (or the row)
    and the field.

    :raises MissingFileError: when ``path`` does not exist.
    """
    path = Path(path)
    if path.is_dir():
        from .preferences import load_saved_dataset

        dataset = load_saved_dataset(path)
        demonstrations = [check_demonstration(dict(row), f"{path} row {i}") for i, row in enumerate(dataset)]
    else:
        demonstrations = list(read_jsonl(path, check_demonstration, error=DemonstrationError, what="demonstration file"))
    if not demonstrations:
        raise DataError(f"{path}: no demonstrations")
    return demonstrations


def task_demonstrations(world: TaskWorld, n: int, seed: int) -> list[Demonstration]:
    """``n`` prompt-completion demonstrations of ``world``'s generator, drawn as the task build draws its SFT texts
    (``world.sample_text`` with ``random.Random(seed)``); the completion starts with the space that joins it to the
    prompt, so ``prompt + completion`` is the build's text."""
    rng = random.Random(seed)
    return [Demonstration({"prompt": prompt, "completion": " " + response}, f"{world.name} demonstration {i}")
            for i, (prompt, response) in enumerate(world.sample_text(rng) for _ in range(n))]


@dataclass(frozen=True)
class Example:
    """One demonstration as token ids: ``prompt_ids``, then ``completion_ids`` (which end with the EOS)."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)

    @property
    def input_ids(self) -> list[int]:
        return [*self.prompt_ids, *self.completion_ids]

    def labels(self, completion_only_loss: bool) -> list[int]:
        """The targets of the cross-entropy: the ids, with -100 (ignored) on the prompt when ``completion_only_loss``."""
        ignored = len(self.prompt_ids) if completion_only_loss else 0
        return [-100] * ignored + self.input_ids[ignored:]

    def n_targets(self, completion_only_loss: bool) -> int:
        """The tokens the loss predicts: the targets of :meth:`labels` after the first token (which nothing predicts)."""
        return len(self) - max(1, len(self.prompt_ids) if completion_only_loss else 1)

    def truncated(self, max_length: int) -> Example:
        """The first ``max_length`` tokens (cut from the right, as TRL's ``truncate_dataset``)."""
        prompt = self.prompt_ids[:max_length]
        return Example(prompt, self.completion_ids[:max_length - len(prompt)])


def tokenize(demonstration: Demonstration, tokenizer: Any) -> Example:
    """The :class:`Example` of ``demonstration``: prompt and completion tokenised apart, no special tokens added, the
    EOS appended to the completion unless it ends with it (module docstring)."""
    prompt, completion = demonstration.texts(tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if not completion_ids:
        raise DemonstrationError(f"{demonstration.where}: the completion has no tokens: a demonstration needs something "
                                 "to learn")
    eos = tokenizer.eos_token_id
    return Example(tuple(prompt_ids), tuple(completion_ids) + (() if completion_ids[-1] == eos else (eos,)))


@dataclass(frozen=True)
class Fitted:
    """:func:`fit_examples`' result: the examples to train on and how many were cut or left out."""

    examples: list[Example]
    n_truncated: int
    n_left_out: int


def fit_examples(examples: Sequence[Example], max_length: int | None, completion_only_loss: bool) -> Fitted:
    """``examples`` cut to ``max_length`` tokens (:meth:`Example.truncated`; None: not cut), less those left with
    nothing to predict (a prompt of ``max_length`` tokens or more with ``completion_only_loss``, a single token)."""
    long = [max_length is not None and len(e) > max_length for e in examples]
    cut = [e.truncated(max_length) if too_long else e for e, too_long in zip(examples, long)]
    kept = [e for e in cut if e.n_targets(completion_only_loss) > 0]
    return Fitted(kept, sum(long), len(cut) - len(kept))


def split_held_out(items: Sequence[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """``(train, held_out)``: ``int(len(items) * eval_fraction)`` items drawn with ``random.Random(seed)`` are held out;
    both keep the order of ``items``."""
    held = set(random.Random(seed).sample(range(len(items)), int(len(items) * eval_fraction)))
    return ([item for i, item in enumerate(items) if i not in held],
            [item for i, item in enumerate(items) if i in held])


def pack(order: Sequence[int], lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Next-fit packing: in ``order``, each example (an index into ``lengths``) joins the current block when the block's
    tokens stay within ``max_length``, else it starts the next block. Returns the blocks' example indices."""
    blocks: list[list[int]] = []
    used = max_length
    for i in order:
        if lengths[i] > max_length:
            raise ValueError(f"example {i} has {lengths[i]} tokens, more than the blocks' {max_length}: cut it first")
        if used + lengths[i] > max_length:
            blocks.append([])
            used = 0
        blocks[-1].append(i)
        used += lengths[i]
    return blocks
