"""The judgement store: SQLite as the record, mirrored to the Stage 1 preference JSONL.

The database (``<out>.sqlite`` beside the JSONL; WAL journal, ``synchronous=FULL``) holds the pairs, the
pair each labeler is looking at (an *assignment*) and the judgements. Every change is one transaction,
and every judgement or undo rewrites the JSONL atomically before it commits, so a judgement that was
acknowledged is on disk in both; opening the store re-exports the JSONL, which repairs a kill between
the two writes. A write that fails (disk full, read-only) is rolled back and raises :class:`StoreWriteError`:
what was stored before is kept. The database is locked exclusively while the store is open: one server per output.

A labeler is handed the lowest pair id that they have not judged and that fewer than ``overlap`` others
hold (a judgement other than skip, or an assignment younger than ``lease_seconds``), so a pair reaches
at most ``overlap`` labelers and a skipped or abandoned pair goes to someone else.
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, RLHFGymError
from ..jsonl import write_jsonl
from ..preferences import preference_record
from .agreement import agreement
from .pairs import MAX_PAIR_ID, Pair

Choice = Literal["left", "right", "tie", "skip"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    pair_id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    labeler TEXT PRIMARY KEY,
    pair_id INTEGER NOT NULL REFERENCES pairs (pair_id),
    shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    assigned_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_by_pair ON assignments (pair_id);
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id INTEGER NOT NULL REFERENCES pairs (pair_id),
    labeler TEXT NOT NULL,
    judgement TEXT NOT NULL CHECK (judgement IN ('a', 'b', 'tie', 'skip')),
    shown_left TEXT NOT NULL CHECK (shown_left IN ('a', 'b')),
    time REAL NOT NULL,
    UNIQUE (pair_id, labeler)
);
"""

# Pair p is open to :labeler: not judged by them, and fewer than :overlap slots held by others.
OPEN_TO = """
    NOT EXISTS (SELECT 1 FROM judgements j WHERE j.pair_id = p.pair_id AND j.labeler = :labeler)
    AND (SELECT COUNT(*) FROM judgements j WHERE j.pair_id = p.pair_id AND j.judgement != 'skip')
      + (SELECT COUNT(*) FROM assignments s
         WHERE s.pair_id = p.pair_id AND s.labeler != :labeler AND s.assigned_at > :cutoff) < :overlap
"""


# SQLite's messages for a write the disk refused (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN);
# the messages, not the codes, because ``sqlite3.Error.sqlite_errorcode`` needs Python 3.11.
SQLITE_DISK_FULL = "database or disk is full"
SQLITE_WRITE_FAILURES = (SQLITE_DISK_FULL, "disk I/O error", "attempt to write a readonly database",
                         "unable to open database file")


class StoreError(RLHFGymError, RuntimeError):
    """The store cannot be opened (in use, not a database, its pairs differ from the pairs file, an output it cannot
    write) or written; the message names the file.

    A user error (the command line reports it as one line), and still a ``RuntimeError`` as before.
    """


class StoreWriteError(StoreError):
    """Writing the JSONL or the database failed (disk full, read-only...): the change was rolled back, and what was
    stored before is kept. ``disk_full`` says whether the disk (or quota) is full."""

    def __init__(self, message: str, disk_full: bool):
        super().__init__(message)
        self.disk_full = disk_full


class LabelError(Exception):
    """A request the store refuses; nothing was written."""


class UnknownPair(LabelError):
    """No pair has this id."""


class Conflict(LabelError):
    """The pair is not the one shown to this labeler, was judged already, or has enough judgements."""


@dataclass(frozen=True)
class Assignment:
    """A pair as one labeler sees it: ``shown_left`` says which response (``"a"`` or ``"b"``) is on the left."""

    pair_id: int
    prompt: str
    left: str
    right: str
    shown_left: str


class LabelStore:
    """Hands out pairs to labelers and records their judgements durably.

    :param out_path: the preference JSONL to write; the database is ``<out_path>.sqlite``.
    :param pairs: the pairs to judge (added to those already in the database).
    :param overlap: how many different labelers judge each pair.
    :param seed: seed of the left/right order (a function of seed, pair id and labeler).
    :param lease_seconds: how long a pair handed to a labeler stays reserved for them.
    """

    def __init__(self, out_path: str | Path, pairs: list[Pair], overlap: int = 1, seed: int = 0,
                 lease_seconds: float = 600.0):
        if overlap < 1:
            raise ConfigError(f"overlap must be >= 1, got {overlap}")
        self.out_path = Path(out_path)
        self.db_path = self.out_path.with_name(self.out_path.name + ".sqlite")
        check_output(self.out_path, self.db_path)
        self.overlap, self.seed, self.lease_seconds = overlap, seed, lease_seconds
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {self.db_path}: {error}") from None
        try:
            self._db.execute("PRAGMA locking_mode = EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(SCHEMA)
            with self._write() as db:
                self._add_pairs(db, pairs)
                self._export(db)
        except StoreWriteError:
            self._db.close()
            raise
        except sqlite3.OperationalError as error:
            self._db.close()
            if "locked" in str(error):
                raise StoreError(f"{self.db_path} is in use by another label server") from None
            raise StoreError(f"cannot open {self.db_path}: {error}") from None
        except (sqlite3.DatabaseError, StoreError) as error:
            self._db.close()
            raise StoreError(f"cannot open {self.db_path}: {error}") from None

    def close(self) -> None:
        """Release the database (idempotent)."""
        with self._lock:
            if not self._closed:
                self._db.close()
                self._closed = True

    def side(self, pair_id: int, labeler: str) -> str:
        """Which response (``"a"`` or ``"b"``) this labeler sees on the left: seeded, fair coin."""
        return "a" if random.Random(f"{self.seed}:{pair_id}:{labeler}").random() < 0.5 else "b"

    def next_pair(self, labeler: str) -> Assignment | None:
        """The pair to show ``labeler``: the one they hold if still open to them, else the first open one."""
        with self._write() as db:
            now = time.time()
            held = db.execute("SELECT pair_id, shown_left FROM assignments WHERE labeler = ?", (labeler,)).fetchone()
            if held is not None and self._is_open(db, held[0], labeler, now):
                pair_id, shown_left = held
            else:
                found = db.execute(f"SELECT p.pair_id FROM pairs p WHERE {OPEN_TO} ORDER BY p.pair_id LIMIT 1",
                                   self._params(labeler, now)).fetchone()
                if found is None:
                    db.execute("DELETE FROM assignments WHERE labeler = ?", (labeler,))
                    return None
                pair_id, shown_left = found[0], self.side(found[0], labeler)
            db.execute("INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?)", (labeler, pair_id, shown_left, now))
            prompt, a, b = db.execute("SELECT prompt, response_a, response_b FROM pairs WHERE pair_id = ?",
                                      (pair_id,)).fetchone()
        left, right = (a, b) if shown_left == "a" else (b, a)
        return Assignment(pair_id, prompt, left, right, shown_left)

    def judge(self, labeler: str, pair_id: int, choice: Choice) -> None:
        """Record ``labeler``'s judgement of the pair they are shown; :class:`LabelError` if refused."""
        with self._write() as db:
            if not 0 <= pair_id <= MAX_PAIR_ID or db.execute("SELECT 1 FROM pairs WHERE pair_id = ?",
                                                             (pair_id,)).fetchone() is None:
                raise UnknownPair(f"no pair with id {pair_id}")
            if db.execute("SELECT 1 FROM judgements WHERE pair_id = ? AND labeler = ?", (pair_id, labeler)).fetchone():
                raise Conflict(f"{labeler} has already judged pair {pair_id}")
            held = db.execute("SELECT shown_left FROM assignments WHERE labeler = ? AND pair_id = ?",
                              (labeler, pair_id)).fetchone()
            if held is None:
                raise Conflict(f"pair {pair_id} is not the pair shown to {labeler}; load the next pair")
            now = time.time()
            if choice != "skip" and not self._is_open(db, pair_id, labeler, now):
                raise Conflict(f"pair {pair_id} has {self.overlap} judgement(s) already; load the next pair")
            db.execute("INSERT INTO judgements (pair_id, labeler, judgement, shown_left, time) VALUES (?, ?, ?, ?, ?)",
                       (pair_id, labeler, judgement_of(choice, held[0]), held[0], now))
            db.execute("DELETE FROM assignments WHERE labeler = ?", (labeler,))
            self._export(db)

    def undo(self, labeler: str) -> int | None:
        """Delete ``labeler``'s latest judgement and show that pair again; its id, or ``None`` if there is none."""
        with self._write() as db:
            last = db.execute("SELECT id, pair_id, shown_left FROM judgements WHERE labeler = ? "
                              "ORDER BY id DESC LIMIT 1", (labeler,)).fetchone()
            if last is None:
                return None
            row_id, pair_id, shown_left = last
            db.execute("DELETE FROM judgements WHERE id = ?", (row_id,))
            db.execute("DELETE FROM assignments WHERE labeler = ?", (labeler,))
            now = time.time()
            if self._is_open(db, pair_id, labeler, now):  # an undone skip may have been filled by others since
                db.execute("INSERT INTO assignments VALUES (?, ?, ?, ?)", (labeler, pair_id, shown_left, now))
            self._export(db)
        return pair_id

    def progress(self, labeler: str) -> dict:
        """``{"judged": judgements by labeler, "remaining": pairs still open to them}``."""
        with self._lock:
            judged = self._db.execute("SELECT COUNT(*) FROM judgements WHERE labeler = ?", (labeler,)).fetchone()[0]
            remaining = self._db.execute(f"SELECT COUNT(*) FROM pairs p WHERE {OPEN_TO}",
                                         self._params(labeler, time.time())).fetchone()[0]
        return {"judged": judged, "remaining": remaining}

    def stats(self) -> dict:
        """Counts per labeler, pairs judged / complete / remaining, and inter-annotator agreement."""
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
            rows = self._db.execute("SELECT pair_id, labeler, judgement FROM judgements").fetchall()
        labelers: dict[str, dict[str, int]] = {}
        by_pair: dict[int, dict[str, str]] = defaultdict(dict)
        for pair_id, labeler, judgement in rows:
            counts = labelers.setdefault(labeler, {"judged": 0, "preferred": 0, "tie": 0, "skip": 0})
            counts["judged"] += 1
            counts["preferred" if judgement in ("a", "b") else judgement] += 1
            if judgement != "skip":
                by_pair[pair_id][labeler] = judgement
        complete = sum(1 for labels in by_pair.values() if len(labels) >= self.overlap)
        return {"pairs_total": total, "overlap": self.overlap, "judgements_total": len(rows),
                "pairs_judged": len(by_pair), "pairs_complete": complete, "pairs_remaining": total - complete,
                "labelers": dict(sorted(labelers.items())), "agreement": agreement(by_pair)}

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised with every other call on this store.

        If SQLite fails to write (disk full...), the transaction is rolled back, the JSONL (rewritten before the
        commit) is rewritten from the database again, and :class:`StoreWriteError` names the database.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                if self._db.in_transaction:  # SQLite rolls back by itself after some failures (a full disk)
                    self._db.execute("ROLLBACK")
                if isinstance(error, sqlite3.OperationalError) and str(error) in SQLITE_WRITE_FAILURES:
                    try:
                        self._export(self._db)
                    except StoreWriteError:
                        pass  # the JSONL may keep the refused change until the next write or restart re-exports it
                    raise StoreWriteError(f"cannot write {self.db_path}: {error}",
                                          disk_full=str(error) == SQLITE_DISK_FULL) from error
                raise

    def _params(self, labeler: str, now: float) -> dict:
        return {"labeler": labeler, "cutoff": now - self.lease_seconds, "overlap": self.overlap}

    def _is_open(self, db: sqlite3.Connection, pair_id: int, labeler: str, now: float) -> bool:
        params = {**self._params(labeler, now), "pair_id": pair_id}
        found = db.execute(f"SELECT 1 FROM pairs p WHERE p.pair_id = :pair_id AND {OPEN_TO}", params).fetchone()
        return found is not None

    def _add_pairs(self, db: sqlite3.Connection, pairs: list[Pair]) -> None:
        for pair in pairs:
            text = (pair.prompt, pair.response_a, pair.response_b)
            stored = db.execute("SELECT prompt, response_a, response_b FROM pairs WHERE pair_id = ?",
                                (pair.pair_id,)).fetchone()
            if stored is None:
                db.execute("INSERT INTO pairs VALUES (?, ?, ?, ?)", (pair.pair_id, *text))
            elif stored != text:
                raise StoreError(f"pair_id {pair.pair_id} of the pairs file differs from the pair with that id "
                                 f"stored earlier; use a new output file for a new pairs file")

    def _export(self, db: sqlite3.Connection) -> None:
        """Rewrite the JSONL from the judgements (atomically: temporary file, fsync, rename); the old file is kept if
        that fails (:class:`StoreWriteError`)."""
        rows = db.execute("""SELECT j.pair_id, j.labeler, j.judgement, j.shown_left, j.time, p.prompt, p.response_a,
                                    p.response_b FROM judgements j JOIN pairs p USING (pair_id) ORDER BY j.id""")
        try:
            write_jsonl(self.out_path, (preference_record(prompt, a, b, judgement, pair_id=pair_id, labeler=labeler,
                                                          time=judged_at, shown_left=shown_left, judgement=judgement)
                                        for pair_id, labeler, judgement, shown_left, judged_at, prompt, a, b in rows))
        except OSError as error:
            raise StoreWriteError(f"cannot write {self.out_path}: {error.strerror or error}",
                                  disk_full=error.errno in (errno.ENOSPC, errno.EDQUOT)) from error


def check_output(out_path: Path, db_path: Path) -> None:
    """Refuse (:class:`StoreError` naming the path) an output that is not a writable file of the label server's,
    before anything is created; make its directory."""
    if out_path.is_dir():
        raise StoreError(f"{out_path} is a directory, not a file to write")
    if out_path.exists() and not db_path.exists():
        raise StoreError(f"{out_path} exists but was not written by the label server "
                         f"(no {db_path.name} beside it); choose another output file")
    existing = next(folder for folder in (out_path.parent, *out_path.parent.parents) if folder.exists())
    if not existing.is_dir():
        raise StoreError(f"cannot write {out_path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise StoreError(f"cannot write {out_path}: {existing} is not writable")
    for path in (out_path, db_path):
        if path.exists() and not os.access(path, os.W_OK):
            raise StoreError(f"cannot write {path}: the file is read-only")
    out_path.parent.mkdir(parents=True, exist_ok=True)


def judgement_of(choice: Choice, shown_left: str) -> str:
    """The judgement (``"a"``, ``"b"``, ``"tie"``, ``"skip"``) that a click on ``choice`` means."""
    if choice == "left":
        return shown_left
    if choice == "right":
        return "b" if shown_left == "a" else "a"
    return choice
