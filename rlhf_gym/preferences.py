"""Preference data: JSONL files (or Hugging Face datasets) of ``{"prompt", "chosen", "rejected", ...}``.

One line is one comparison ``(x, y_w, y_l)``. Optional fields: ``margin`` (a finite number, used by the
Bradley–Terry loss as ``-log sigmoid(r_w - r_l - margin)``), ``label`` (``"preferred"`` by default;
``"tie"`` and ``"skip"`` records are kept in the file but left out of training), ``labeler``, ``time``,
``pair_id`` and whatever metadata a labeler adds. A line (or a dataset row) longer than
:data:`MAX_RECORD_BYTES` is refused as malformed.

KTO learns from *unpaired* examples ``{"prompt", "completion", "label": true|false}`` (TRL's unpaired format: a
desirable or an undesirable completion); :func:`unpair_preferences` turns comparisons into them.

The text columns may also be conversations, lists of ``{"role", "content"}`` messages (TRL's conversational format,
:mod:`rlhf_gym.conversation`): they are checked when read, and rendered to flat text with a tokenizer's chat template by
the reader given one (``load_preferences(..., tokenizer=)``, :func:`with_rendering`); a reader without one refuses them.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from .conversation import check_all_or_none, check_messages, render_record
from .errors import ConfigError, DataError, MissingFileError
from .jsonl import JSONLError, read_jsonl
from .labelers import Judgement

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", "label")
NON_PREFERENCE_LABELS = ("tie", "skip")
MAX_RECORD_BYTES = 1_000_000
"""The longest preference record read, in bytes of its JSON line: a reward model reads a few hundred tokens of
each text at most, and a longer line is refused before it is held in memory whole (file:line)."""


class PreferenceDataError(JSONLError):
    """A preference record is malformed; the message names the file and line."""


def check_text_columns(record: dict, columns: Sequence[str], where: str, may_be_blank: Sequence[str] = ("prompt",),
                       messages: bool = False) -> None:
    """Each column present and a string, each but those in ``may_be_blank`` non-blank; :class:`PreferenceDataError`
    naming ``where``.

    :param messages: a column may be a conversation instead (a list of ``{"role", "content"}`` messages, checked by
        :func:`rlhf_gym.conversation.check_messages`), all of them or none (:func:`rlhf_gym.conversation.check_all_or_none`).
    """
    for column in columns:
        if column not in record:
            raise PreferenceDataError(f"{where}: missing column {column!r}")
        value = record[column]
        if messages and isinstance(value, list):
            check_messages(value, f"{where}: column {column!r}", PreferenceDataError)
            if column not in may_be_blank and not any(m["content"].strip() for m in value):
                raise PreferenceDataError(f"{where}: column {column!r} is empty (every message's content is blank)")
            continue
        if not isinstance(value, str):
            expected = "a string or a list of messages" if messages else "a string"
            raise PreferenceDataError(f"{where}: column {column!r} must be {expected}, got {type(value).__name__}")
        if column not in may_be_blank and not value.strip():
            raise PreferenceDataError(f"{where}: column {column!r} is empty")
    if messages:
        check_all_or_none(record, where, PreferenceDataError)


def validate_record(record: dict, where: str, allow_empty_responses: bool = False) -> dict:
    """Check one record's columns and types; raise :class:`PreferenceDataError` naming ``where``.

    :param allow_empty_responses: accept a blank ``chosen`` or ``rejected``. The DPO family does: a policy that emits
        EOS at once writes "" (the env strips the decoded text), and its log-prob is that of the EOS token. Reward-model
        data does not: a blank response is more likely a broken export than a judgement.
    """
    check_text_columns(record, REQUIRED_COLUMNS, where, REQUIRED_COLUMNS if allow_empty_responses else ("prompt",),
                       messages=True)
    margin = record.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise PreferenceDataError(f"{where}: column 'margin' must be a number, got {type(margin).__name__}")
    if margin is not None and not math.isfinite(margin):  # NaN or inf would turn every trained weight into NaN
        raise PreferenceDataError(f"{where}: column 'margin' must be a finite number, got {margin}")
    return record


def validate_unpaired_record(record: dict, where: str) -> dict:
    """Check an unpaired example ``{"prompt", "completion", "label": bool}``, or, when it has a ``chosen`` or a
    ``rejected`` column, a comparison (:func:`validate_record`, empty responses allowed); raise
    :class:`PreferenceDataError` naming ``where`` and the column."""
    if "chosen" in record or "rejected" in record:
        return validate_record(record, where, allow_empty_responses=True)
    check_text_columns(record, UNPAIRED_COLUMNS[:2], where, may_be_blank=UNPAIRED_COLUMNS[:2], messages=True)  # "": EOS
    if "label" not in record:
        raise PreferenceDataError(f"{where}: missing column 'label'")
    if not isinstance(record["label"], bool):
        raise PreferenceDataError(f"{where}: column 'label' must be true (desirable) or false (undesirable), got "
                                  f"{type(record['label']).__name__} {record['label']!r}")
    return record


def unpair_preferences(records: Sequence[dict]) -> list[dict]:
    """Unpaired examples from comparisons, as TRL's ``unpair_preference_dataset``: a comparison becomes two examples,
    its ``chosen`` as a desirable completion (``label`` True) then its ``rejected`` as an undesirable one (False), with
    its other columns; an unpaired example is kept as it is. Ties and skips are left out (they name no better one)."""
    examples = []
    for record in records:
        if "completion" in record:
            examples.append(record)
        elif record.get("label") not in NON_PREFERENCE_LABELS:
            rest = {k: v for k, v in record.items() if k not in ("chosen", "rejected", "label")}
            examples += [{**rest, "completion": record["chosen"], "label": True},
                         {**rest, "completion": record["rejected"], "label": False}]
    return examples


def _validate_row(record: dict, where: str, validate: Callable[[dict, str], dict]) -> dict:
    """``validate`` a dataset row, which has no line length to check: its JSON size instead."""
    if len(json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")) > MAX_RECORD_BYTES:
        raise PreferenceDataError(f"{where}: record longer than {MAX_RECORD_BYTES} bytes")
    return validate(record, where)


def check_identical_responses(records: Sequence[dict], where: str) -> None:
    """Warn about comparisons whose ``chosen`` equals ``rejected`` (one response judged against itself), naming how many
    of how many; :class:`DataError` naming ``where`` when every comparison is like that.

    They carry no preference: whatever the model, both sides get the same score (a reward model's ``r_w - r_l``, DPO's
    ``h``, is 0), so they only dilute the loss and lower the accuracy.
    """
    same = sum(r["chosen"] == r["rejected"] for r in records)
    if same and same == len(records):
        raise DataError(f"{where}: all {same} comparisons have chosen == rejected: they carry no preference to learn from")
    if same:
        warnings.warn(f"{where}: {same} of {len(records)} comparisons have chosen == rejected; they carry no preference "
                      "(both sides score the same under any model)", stacklevel=3)


def preference_record(prompt: str, response_a: str, response_b: str, judgement: Judgement, /, **metadata: Any) -> dict:
    """One comparison from a judgement of ``response_a`` against ``response_b``, with ``metadata`` after the columns.

    ``chosen`` is the preferred response; a tie or a skip keeps ``a`` as ``chosen`` and carries ``label``.
    """
    chosen, rejected = (response_b, response_a) if judgement == "b" else (response_a, response_b)
    record = {"prompt": prompt, "chosen": chosen, "rejected": rejected, **metadata}
    if judgement in NON_PREFERENCE_LABELS:
        record["label"] = judgement
    return record


def with_rendering(validate: Callable[[dict, str], dict], tokenizer: Any) -> Callable[[dict, str], dict]:
    """``validate``, then the record's conversations rendered with ``tokenizer``'s chat template
    (:func:`rlhf_gym.conversation.render_record`); a conversational record without a tokenizer (None) or its template is
    a :class:`ConfigError` naming the record, which ``skip_bad_lines`` does not skip."""
    def check(record: dict, where: str) -> dict:
        return render_record(validate(record, where), tokenizer, where)

    return check


def load_preferences(source: Any, skip_bad_lines: bool = False, include_non_preferences: bool = False,
                     allow_empty_responses: bool = False, tokenizer: Any = None) -> list[dict]:
    """Load comparisons from a JSONL path, a Hugging Face ``datasets.Dataset`` with the three columns, or the directory
    of a dataset saved with ``save_to_disk``.

    Records labelled ``tie`` or ``skip`` are left out unless ``include_non_preferences``; a blank ``chosen`` or
    ``rejected`` is refused unless ``allow_empty_responses`` (see :func:`validate_record`). Conversational records are
    rendered to flat text with ``tokenizer``'s chat template (:func:`with_rendering`), and refused without one.
    """
    validate = with_rendering(partial(validate_record, allow_empty_responses=allow_empty_responses), tokenizer)
    records = read_records(source, validate, REQUIRED_COLUMNS, skip_bad_lines)
    if include_non_preferences:
        return records
    return [r for r in records if r.get("label") not in NON_PREFERENCE_LABELS]


def read_records(source: Any, validate: Callable[[dict, str], dict], columns: Sequence[str] = REQUIRED_COLUMNS,
                 skip_bad_lines: bool = False) -> list[dict]:
    """The records of a JSONL path, a ``datasets.Dataset`` with ``columns``, or the directory of a dataset saved with
    ``save_to_disk``, each checked by ``validate(record, where)`` (``where``: ``file:line`` or ``dataset row i``)."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        source = load_saved_dataset(Path(source))
    if isinstance(source, (str, Path)):
        stats: dict = {}
        records = list(read_jsonl(source, validate, skip_bad_lines=skip_bad_lines, stats=stats,
                                  error=PreferenceDataError, what="preference file", max_line_bytes=MAX_RECORD_BYTES))
        if stats["skipped"]:
            print(f"[rlhf_gym] skipped {stats['skipped']} malformed line(s) in {source}")
        return records
    if hasattr(source, "column_names"):
        missing = [c for c in columns if c not in source.column_names]
        if missing:
            raise PreferenceDataError(f"dataset is missing column(s) {missing}; it has {source.column_names}")
        return [_validate_row(dict(row), f"dataset row {i}", validate) for i, row in enumerate(source)]
    raise TypeError(f"expected a JSONL path or a datasets.Dataset, got {type(source).__name__}")


def load_saved_dataset(path: Path) -> Any:
    """The ``datasets`` dataset saved in directory ``path`` (``Dataset.save_to_disk``)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"{path} is a directory: reading a saved dataset needs the datasets package "
                          "(pip install 'rlhf-gym[datasets]')") from None
    try:
        dataset = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise MissingFileError(f"{path}: a directory but not a saved datasets dataset ({error})") from None
    if isinstance(dataset, datasets.DatasetDict):
        raise DataError(f"{path}: a DatasetDict with splits {list(dataset)}; give the directory of one split")
    return dataset

