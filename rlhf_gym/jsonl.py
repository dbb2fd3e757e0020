"""JSON Lines files: read with errors that name the file and line, append durably, rewrite atomically.

Every JSONL file of the project (preferences, unlabelled pairs, prompts, learning curves) goes through
these functions, so a bad line is reported the same way everywhere and nothing written is lost.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, TypeVar

from .errors import ConfigError, DataError, MissingFileError
from .files import atomic_write_text

T = TypeVar("T")


class JSONLError(DataError):
    """A malformed line of a JSONL file; the message starts with ``file:line``."""


def as_object(record: dict, where: str) -> dict:
    """The default check of :func:`read_jsonl`: every object is accepted as it is."""
    return record


def read_jsonl(path: str | Path, parse: Callable[[dict, str], T] = as_object, *, skip_bad_lines: bool = False,
               stats: dict | None = None, error: type[JSONLError] = JSONLError, what: str = "JSONL file",
               max_line_bytes: int | None = None) -> Iterator[T]:
    """Yield ``parse(object, "file:line")`` for every non-blank line of ``path``, in order.

    A line that is not UTF-8 (a NUL byte included), not JSON, or not a JSON object raises ``error`` with a
    message that starts with ``file:line``; ``parse`` checks the object further and raises ``error`` the same way.

    :param skip_bad_lines: skip malformed lines instead of raising; their count goes to ``stats["skipped"]``.
    :param error: the exception raised (a subclass of :class:`JSONLError`, e.g. the caller's data error).
    :param what: names the file in the ``FileNotFoundError`` (``"<what> not found: <path>"``).
    :param max_line_bytes: a longer line (newline not counted) is a malformed line, found without holding more
        than this many bytes of it in memory; None: no limit.
    :raises MissingFileError: (a ``FileNotFoundError``) if the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    with path.open("rb") as handle:
        for number, raw in enumerate(_lines(handle, max_line_bytes), start=1):
            if raw is not None and not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                if raw is None:
                    raise error(f"{where}: line longer than {max_line_bytes} bytes")
                yield parse(_decode_line(raw, where, error), where)
            except error:
                if not skip_bad_lines:
                    raise
                stats["skipped"] += 1


def _lines(handle: IO[bytes], max_bytes: int | None, chunk: int = 1 << 20) -> Iterator[bytes | None]:
    """The lines of ``handle``; None for a line over ``max_bytes``, which is skipped ``chunk`` bytes at a time."""
    if max_bytes is None:
        yield from handle
        return
    while line := handle.readline(max_bytes + 1):  # the content plus its newline, or one byte too many
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield line
            continue
        while (rest := handle.readline(chunk)) and not rest.endswith(b"\n"):
            pass
        yield None


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
    except ValueError as cause:  # valid JSON Python refuses to read, e.g. an integer of more than 4300 digits
        raise error(f"{where}: unreadable JSON ({str(cause)[:80]})") from None
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
    """Append records, one line each, written and fsynced in turn: a killed run keeps every line written before.

    A failed write (disk full...) cuts the line it left half written, so the file holds whole records only, and
    raises the ``OSError`` with ``path`` as its ``filename``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_truncated_tail(path)
    with path.open("ab", buffering=0) as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        for record in records:
            data = to_line(record).encode("utf-8")
            try:
                while data:  # os.write may write part of it
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError as cause:
                with suppress(OSError):  # if the disk refuses even this, the next resume repairs the torn line
                    os.ftruncate(fd, size)
                if cause.filename is not None:
                    raise
                raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from cause
            size = os.fstat(fd).st_size


@contextmanager
def exclusive_writer(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block: one writer at a time.

    The lock is released when the block ends or the process dies (``flock``), so a killed writer never leaves
    the file locked.

    :param what: who holds the lock, for the message (e.g. ``"another collector"``).
    :raises ConfigError: naming ``path`` if another process (or another open of it) holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as cause:
            if cause.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise ConfigError(f"{path}: {what} is writing it; wait until it is done or choose another file") from None
        yield  # closing the handle releases the lock


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Replace the whole file with ``records`` atomically (temporary file, fsync, rename): old file or new, never half."""
    atomic_write_text(path, "".join(to_line(record) for record in records))
