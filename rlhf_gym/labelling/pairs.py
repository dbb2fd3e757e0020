"""Unlabelled pairs: the JSONL that ``collect_preferences(..., labeler=None)`` writes.

One line is ``{"pair_id": int, "prompt": str, "response_a": str, "response_b": str}``; a malformed line
raises :class:`~rlhf_gym.preferences.PreferenceDataError` naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..jsonl import read_jsonl
from ..preferences import PreferenceDataError, check_text_columns


MAX_PAIR_ID = 2**63 - 1
"""The largest pair id: SQLite's largest integer."""


@dataclass(frozen=True)
class Pair:
    """Two responses to one prompt, waiting for a person's judgement."""

    pair_id: int
    prompt: str
    response_a: str
    response_b: str


def parse_pair(record: dict, where: str) -> Pair:
    """Check one decoded line; raise :class:`PreferenceDataError` naming ``where``."""
    for column in ("pair_id", "prompt", "response_a", "response_b"):
        if column not in record:
            raise PreferenceDataError(f"{where}: missing column {column!r}")
    pair_id = record["pair_id"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, int) or not 0 <= pair_id <= MAX_PAIR_ID:
        raise PreferenceDataError(f"{where}: column 'pair_id' must be a non-negative integer up to {MAX_PAIR_ID}, "
                                  f"got {pair_id!r}")
    check_text_columns(record, ("prompt", "response_a", "response_b"), where)
    return Pair(pair_id, record["prompt"], record["response_a"], record["response_b"])


def load_pairs(path: str | Path) -> list[Pair]:
    """Read and validate a pairs file; pair ids must be unique and the file must hold at least one pair.

    :raises FileNotFoundError: if the file does not exist.
    :raises PreferenceDataError: on the first malformed line (file and line number in the message).
    """
    first_line: dict[int, str] = {}

    def parse_unique(record: dict, where: str) -> Pair:
        pair = parse_pair(record, where)
        if pair.pair_id in first_line:
            raise PreferenceDataError(f"{where}: duplicate pair_id {pair.pair_id} (first on line {first_line[pair.pair_id]})")
        first_line[pair.pair_id] = where.rsplit(":", 1)[1]
        return pair

    pairs = list(read_jsonl(path, parse_unique, error=PreferenceDataError, what="pairs file"))
    if not pairs:
        raise PreferenceDataError(f"{path}: no pairs in the file")
    return pairs
