"""Files that survive a crash: atomic writes (a temporary file, fsync, rename) and JSON records read with a clear error.

No torch or transformers here: commands read and write their records through this module, so that their ``--help``
and their light paths stay fast.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError, MissingFileError


def _read_umask() -> int:
    """The process's umask: read once, at import (setting it to read it back would leave a window in which another
    thread's new files get no mask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


PROCESS_UMASK = _read_umask()


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process's umask: what ``open`` (files, 0o666) or ``mkdir`` (directories, 0o777) would give,
    for the temporary files and directories of atomic writes, which ``tempfile`` creates owner-only."""
    return mode & ~PROCESS_UMASK


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a crash never leaves half a file; the file
    gets the permissions a plain write would (:func:`umask_mode`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    """:func:`atomic_write_text` of ``data`` as indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def write_errors_name(path: str | Path) -> Iterator[None]:
    """Run a block that writes ``path`` (a file or a directory); a failed write leaves it as an ``OSError`` naming
    ``path``, which the command line prints as one ``error:`` line.

    Libraries report the same failure in their own way: safetensors raises ``SafetensorError("... I/O error: No space
    left on device (os error 28)")``, and an ``OSError`` from a library may name a temporary file or nothing. The errno
    is kept where the message carries one (``os error N``), else it is ``EIO``.
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    except Exception as error:
        if type(error).__name__ != "SafetensorError":  # matched by name: importing safetensors here would cost --help
            raise
        code = re.search(r"os error (\d+)", str(error))
        number = int(code.group(1)) if code else errno.EIO
        raise OSError(number, os.strerror(number), str(path)) from error


def read_json(path: str | Path, required: tuple[str, ...] = (), what: str = "a JSON object") -> dict:
    """The JSON object in ``path``; a :class:`DataError` naming ``path`` if it is not JSON or lacks a ``required`` key.

    :param what: what the file should be, for the message (e.g. ``"a run summary"``).
    :raises MissingFileError: if ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # not JSON or not UTF-8
        raise DataError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or any(key not in data for key in required):
        raise DataError(f"{path}: not {what} (expected a JSON object with {', '.join(required) or 'keys'})")
    return data


def create_run_directory(out_dir: str | Path, name: str) -> Path:
    """Create ``out_dir/name`` atomically (``mkdir`` fails if it exists); a run started in the same second with the
    same name gets ``name-2``, ``name-3``, ..., so two runs never share a directory."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    candidate, attempt = out_dir / name, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            attempt += 1
            candidate = out_dir / f"{name}-{attempt}"


@contextmanager
def staged_directory(directory: str | Path, marker: str | None, what: str) -> Iterator[Path]:
    """A new directory next to ``directory`` to write into; it replaces ``directory`` when the block succeeds.

    On any error the new directory is removed and ``directory`` stays as it was: a failed save (disk full...)
    never leaves half a model in place of a good one. Between the two renames of the swap, a crash leaves
    both versions as hidden directories next to ``directory``. An ``OSError`` raised in the block names
    ``directory``. The new directory gets the permissions a plain ``mkdir`` would (:func:`umask_mode`).

    :param marker: the file (a path inside ``directory``) that marks a directory this may replace, e.g. a reward
        model's ``reward_metadata.json``; None: whatever ``directory`` holds is replaced.
    :param what: what such a directory holds, for the error ("saved reward model").
    :raises NotADirectoryError: if ``directory`` is a file.
    :raises ConfigError: if ``directory`` holds files but no ``marker`` (it is not replaced).
    """
    directory = Path(directory).resolve()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    if marker is not None and directory.is_dir() and any(directory.iterdir()) and not (directory / marker).is_file():
        raise ConfigError(f"{directory} is not empty and holds no {what} ({marker}); "
                          "choose a new or empty output directory")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
        staging.chmod(umask_mode(0o777))  # mkdtemp makes it owner-only
    except OSError as cause:  # e.g. a read-only parent: name the directory, not the temporary one
        raise OSError(cause.errno, cause.strerror or str(cause), str(directory)) from cause
    try:
        yield staging
        if directory.exists():
            previous = staging.with_name(staging.name + ".old")
            os.rename(directory, previous)
            try:
                os.rename(staging, directory)
            except OSError:
                os.rename(previous, directory)
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.rename(staging, directory)
    except OSError as cause:
        shutil.rmtree(staging, ignore_errors=True)
        if cause.filename is not None and not str(cause.filename).startswith(str(staging)):
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(directory)) from cause
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
