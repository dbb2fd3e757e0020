"""Preference data: JSONL files (or Hugging Face datasets) of ``{"prompt", "chosen", "rejected", ...}``.

One line is one comparison ``(x, y_w, y_l)``. Optional fields: ``margin`` (a number, used by the
Bradley–Terry loss as ``-log sigmoid(r_w - r_l - margin)``), ``label`` (``"preferred"`` by default;
``"tie"`` and ``"skip"`` records are kept in the file but left out of training), ``labeler``, ``time``,
``pair_id`` and whatever metadata a labeler adds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
NON_PREFERENCE_LABELS = ("tie", "skip")


class PreferenceDataError(ValueError):
    """A preference record is malformed; the message names the file and line."""


def validate_record(record: Any, where: str) -> dict:
    """Check one record's columns and types; raise :class:`PreferenceDataError` naming ``where``."""
    if not isinstance(record, dict):
        raise PreferenceDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for column in REQUIRED_COLUMNS:
        if column not in record:
            raise PreferenceDataError(f"{where}: missing column {column!r}")
        value = record[column]
        if not isinstance(value, str):
            raise PreferenceDataError(f"{where}: column {column!r} must be a string, got {type(value).__name__}")
        if column != "prompt" and not value.strip():
            raise PreferenceDataError(f"{where}: column {column!r} is empty")
    margin = record.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise PreferenceDataError(f"{where}: column 'margin' must be a number, got {type(margin).__name__}")
    return record


def iter_jsonl(path: str | Path, skip_bad_lines: bool = False, stats: dict | None = None) -> Iterator[dict]:
    """Yield the valid records of a preference JSONL file.

    :param skip_bad_lines: skip malformed lines instead of raising; their count goes to ``stats["skipped"]``.
    :raises FileNotFoundError: if the file does not exist.
    :raises PreferenceDataError: on the first malformed line (file and line number in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference file not found: {path}")
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise PreferenceDataError(f"{where}: invalid UTF-8 ({error.reason} at byte {error.start})") from None
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    raise PreferenceDataError(f"{where}: invalid JSON ({error.msg})") from None
                yield validate_record(record, where)
            except PreferenceDataError:
                if not skip_bad_lines:
                    raise
                stats["skipped"] += 1


def load_preferences(source: Any, skip_bad_lines: bool = False, include_non_preferences: bool = False) -> list[dict]:
    """Load comparisons from a JSONL path or a Hugging Face ``datasets.Dataset`` with the three columns.

    Records labelled ``tie`` or ``skip`` are left out unless ``include_non_preferences``.
    """
    if isinstance(source, (str, Path)):
        stats: dict = {}
        records = list(iter_jsonl(source, skip_bad_lines=skip_bad_lines, stats=stats))
        if stats["skipped"]:
            print(f"[rlhf_gym] skipped {stats['skipped']} malformed line(s) in {source}")
    elif hasattr(source, "column_names"):
        missing = [c for c in REQUIRED_COLUMNS if c not in source.column_names]
        if missing:
            raise PreferenceDataError(f"dataset is missing column(s) {missing}; it has {source.column_names}")
        records = [validate_record(dict(row), f"dataset row {i}") for i, row in enumerate(source)]
    else:
        raise TypeError(f"expected a JSONL path or a datasets.Dataset, got {type(source).__name__}")
    if include_non_preferences:
        return records
    return [r for r in records if r.get("label") not in NON_PREFERENCE_LABELS]


def repair_truncated_tail(path: str | Path) -> None:
    """Cut a last line that a killed writer left without its newline, so that appends stay line-aligned."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append records, one line each, flushed and fsynced: a killed run keeps every line written before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_truncated_tail(path)
    with path.open("ab") as handle:
        for record in records:
            handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
