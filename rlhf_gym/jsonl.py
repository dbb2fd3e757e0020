"""JSON Lines files: read with errors that name the file and line, append durably, rewrite atomically.

Every JSONL file of the project (preferences, unlabelled pairs, prompts, learning curves) goes through
these functions, so a bad line is reported the same way everywhere and nothing written is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import DataError, MissingFileError
from .utils import atomic_write_text

T = TypeVar("T")


class JSONLError(DataError):
    """A malformed line of a JSONL file; the message starts with ``file:line``."""


def as_object(record: dict, where: str) -> dict:
    """The default check of :func:`read_jsonl`: every object is accepted as it is."""
    return record


def read_jsonl(path: str | Path, parse: Callable[[dict, str], T] = as_object, *, skip_bad_lines: bool = False,
               stats: dict | None = None, error: type[JSONLError] = JSONLError, what: str = "JSONL file") -> Iterator[T]:
    """Yield ``parse(object, "file:line")`` for every non-blank line of ``path``, in order.

    A line that is not UTF-8, not JSON, or not a JSON object raises ``error`` with a message that starts with
    ``file:line``; ``parse`` checks the object further and raises ``error`` the same way.

    :param skip_bad_lines: skip malformed lines instead of raising; their count goes to ``stats["skipped"]``.
    :param error: the exception raised (a subclass of :class:`JSONLError`, e.g. the caller's data error).
    :param what: names the file in the ``FileNotFoundError`` (``"<what> not found: <path>"``).
    :raises MissingFileError: (a ``FileNotFoundError``) if the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield parse(_decode_line(raw, where, error), where)
            except error:
                if not skip_bad_lines:
                    raise
                stats["skipped"] += 1


def _decode_line(raw: bytes, where: str, error: type[JSONLError] = JSONLError) -> dict:
    """One line as a JSON object; ``error`` naming ``where`` if it is not UTF-8, not JSON or not an object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as cause:
        raise error(f"{where}: invalid UTF-8 ({cause.reason} at byte {cause.start})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as cause:
        raise error(f"{where}: invalid JSON ({cause.msg})") from None
    if not isinstance(record, dict):
        raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def to_line(record: Any) -> str:
    """``record`` as one JSONL line (UTF-8 text kept as is), newline included."""
    return json.dumps(record, ensure_ascii=False) + "\n"


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


def append_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Append records, one line each, flushed and fsynced: a killed run keeps every line written before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_truncated_tail(path)
    with path.open("ab") as handle:
        for record in records:
            handle.write(to_line(record).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Replace the whole file with ``records`` atomically (temporary file, fsync, rename): old file or new, never half."""
    atomic_write_text(path, "".join(to_line(record) for record in records))
