"""Unlabelled pairs: the JSONL that ``collect_preferences(..., labeler=None)`` writes.

One line is ``{"pair_id": int, "prompt": str, "response_a": str, "response_b": str}``; a malformed line
raises :class:`~rlhf_gym.preferences.PreferenceDataError` naming the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..preferences import PreferenceDataError


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt, waiting for a person's judgement."""

    pair_id: int
    prompt: str
    response_a: str
    response_b: str


def parse_pair(record: Any, where: str) -> Pair:
    """Check one decoded line; raise :class:`PreferenceDataError` naming ``where``."""
    if not isinstance(record, dict):
        raise PreferenceDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for column in ("pair_id", "prompt", "response_a", "response_b"):
        if column not in record:
            raise PreferenceDataError(f"{where}: missing column {column!r}")
    pair_id = record["pair_id"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, int) or pair_id < 0:
        raise PreferenceDataError(f"{where}: column 'pair_id' must be a non-negative integer, got {pair_id!r}")
    for column in ("prompt", "response_a", "response_b"):
        value = record[column]
        if not isinstance(value, str):
            raise PreferenceDataError(f"{where}: column {column!r} must be a string, got {type(value).__name__}")
        if column != "prompt" and not value.strip():
            raise PreferenceDataError(f"{where}: column {column!r} is empty")
    return Pair(pair_id, record["prompt"], record["response_a"], record["response_b"])


def load_pairs(path: str | Path) -> list[Pair]:
    """Read and validate a pairs file; pair ids must be unique and the file must hold at least one pair.

    :raises FileNotFoundError: if the file does not exist.
    :raises PreferenceDataError: on the first malformed line (file and line number in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    pairs: list[Pair] = []
    first_line: dict[int, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                raise PreferenceDataError(f"{where}: invalid UTF-8 ({error.reason} at byte {error.start})") from None
            except json.JSONDecodeError as error:
                raise PreferenceDataError(f"{where}: invalid JSON ({error.msg})") from None
            pair = parse_pair(record, where)
            if pair.pair_id in first_line:
                first = first_line[pair.pair_id]
                raise PreferenceDataError(f"{where}: duplicate pair_id {pair.pair_id} (first on line {first})")
            first_line[pair.pair_id] = number
            pairs.append(pair)
    if not pairs:
        raise PreferenceDataError(f"{path}: no pairs in the file")
    return pairs
