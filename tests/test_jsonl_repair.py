"""The JSONL layer's edges: repairing a torn tail before resuming, blank and CRLF lines, what skipping counts,
errors of other kinds, the lines it writes."""

import errno
import json
import os
import tracemalloc
import warnings

import pytest

from rlhf_gym import jsonl
from rlhf_gym.errors import MissingFileError
from rlhf_gym.jsonl import JSONLError, append_jsonl, as_object, read_jsonl, repair_truncated_tail, to_line, write_jsonl


def test_repair_leaves_missing_and_empty_files_alone(tmp_path):
    missing = tmp_path / "missing.jsonl"
    repair_truncated_tail(missing)
    assert not missing.exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    repair_truncated_tail(empty)
    assert empty.read_bytes() == b""


def test_repair_cuts_only_the_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3, "te')
    repair_truncated_tail(path)
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n'
    lone = tmp_path / "lone.jsonl"
    lone.write_bytes(b'{"n": 1, "te')  # the first line itself was torn: nothing is left
    repair_truncated_tail(lone)
    assert lone.read_bytes() == b""
    one_byte = tmp_path / "one.jsonl"
    one_byte.write_bytes(b"{")
    repair_truncated_tail(one_byte)
    assert one_byte.read_bytes() == b""


def test_resume_appends_after_a_torn_tail_without_losing_a_complete_line(tmp_path):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"n": 1}, {"n": 2}])
    with path.open("ab") as handle:  # a writer killed in the middle of line 3
        handle.write(b'{"n": 3, "te')
    append_jsonl(path, [{"n": 3}, {"n": 4}])
    assert list(read_jsonl(path)) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    append_jsonl(path, [])  # nothing to add: the file is unchanged
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": 4}\n'


def test_blank_and_crlf_lines_and_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\r\n   \n\t\r\n{"a": 2}\n{"a": 3}')  # no final newline: the last line still counts
    seen = []
    assert list(read_jsonl(path, lambda record, where: seen.append(where) or record["a"])) == [1, 2, 3]
    assert seen == [f"{path}:1", f"{path}:4", f"{path}:5"]


def test_skipping_counts_into_the_callers_stats_and_other_errors_pass_through(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\nnope\n{"a": 2}\nnope\n')
    stats = {"other": 5}
    assert list(read_jsonl(path, skip_bad_lines=True, stats=stats)) == [{"a": 1}, {"a": 2}]
    assert stats == {"other": 5, "skipped": 2}

    def broken(record, where):
        raise KeyError("a bug, not bad data")

    with pytest.raises(KeyError):
        list(read_jsonl(path, broken, skip_bad_lines=True))
    with pytest.raises(JSONLError, match=r"data\.jsonl:2: invalid JSON"):
        list(read_jsonl(path))


class RowError(JSONLError):
    """A caller's error class."""


@pytest.mark.parametrize("line, message", [
    (b"\xff\xfe", r"invalid UTF-8 \(invalid start byte at byte 0\)"),
    (b"{nope", r"invalid JSON \("),
    (b"3", "expected a JSON object, got int"),
    (b"null", "expected a JSON object, got NoneType"),
])
def test_malformed_lines_raise_the_callers_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n' + line + b"\n")
    with pytest.raises(RowError, match=rf"^{path}:2: {message}"):
        list(read_jsonl(path, error=RowError))
    stats = {}
    assert list(read_jsonl(path, error=RowError, skip_bad_lines=True, stats=stats)) == [{"a": 1}]
    assert stats == {"skipped": 1}


def test_missing_file_error_names_the_default_kind(tmp_path):
    with pytest.raises(MissingFileError, match=r"^JSONL file not found: .*absent\.jsonl$"):
        next(read_jsonl(tmp_path / "absent.jsonl"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(MissingFileError, match="not found"):
        next(read_jsonl(tmp_path / "folder"))


def test_lines_written():
    assert to_line({"text": "café", "n": [1, 2]}) == '{"text": "café", "n": [1, 2]}\n'
    record = {"x": 1}
    assert as_object(record, "f:1") is record


def test_write_empty_and_round_trip(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    path.parent.mkdir()
    write_jsonl(path, [])
    assert path.read_bytes() == b""
    write_jsonl(path, [{"é": "✓"}, {"n": 2}])
    assert path.read_bytes() == '{"é": "✓"}\n{"n": 2}\n'.encode()


def test_append_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "out.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ResourceWarning or buffering warning either
        append_jsonl(path, [{"é": 1}])
    assert path.read_bytes() == '{"é": 1}\n'.encode()


@pytest.mark.parametrize("failure, strerror", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError("the disk went away"), "the disk went away"),
])
def test_a_failed_append_keeps_the_whole_records_before_it_and_names_the_file(tmp_path, monkeypatch, failure, strerror):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"n": 0}])
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(data)
        if len(calls) < 3:  # records 1 and 2 go in
            return real_write(fd, data)
        real_write(fd, data[:3])  # record 3: half a line, then the disk fails
        raise failure

    monkeypatch.setattr(jsonl.os, "write", write)
    with pytest.raises(OSError) as caught:
        append_jsonl(path, [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}])
    assert caught.value.filename == str(path) and caught.value.strerror == strerror
    assert caught.value.errno == failure.errno
    assert path.read_text() == '{"n": 0}\n{"n": 1}\n{"n": 2}\n'  # the torn line is cut at once


def test_line_length_limit_boundary(tmp_path):
    path = tmp_path / "rows.jsonl"
    line = '{"a": "xx"}'  # 11 bytes
    path.write_text(f"{line}\n{line}")
    assert len(list(read_jsonl(path, max_line_bytes=11))) == 2
    with pytest.raises(JSONLError, match=r"rows\.jsonl:1: line longer than 10 bytes"):
        list(read_jsonl(path, max_line_bytes=10))


def test_when_even_the_cut_fails_the_next_append_repairs_the_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"n": 0}])
    real_write = os.write

    def torn_write(fd, data):
        real_write(fd, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    def refused_truncate(fd, size):
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(jsonl.os, "write", torn_write)
        patch.setattr(jsonl.os, "ftruncate", refused_truncate)
        with pytest.raises(OSError, match="No space left on device"):  # the first error, not the cut's
            append_jsonl(path, [{"n": 1}])
    assert path.read_text() == '{"n": 0}\n{"n'
    append_jsonl(path, [{"n": 2}])
    assert list(read_jsonl(path)) == [{"n": 0}, {"n": 2}]


def test_json_that_python_refuses_is_a_bad_line_with_a_short_message(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"a": ' + "1" * 5000 + "}\n")
    with pytest.raises(ValueError) as refused:
        json.loads(path.read_text())
    reason = str(refused.value)
    assert len(reason) > 80
    with pytest.raises(JSONLError) as caught:
        list(read_jsonl(path))
    assert str(caught.value) == f"{path}:1: unreadable JSON ({reason[:80]})"


def test_a_line_over_the_limit_is_skipped_without_holding_it_in_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"a": "' + "x" * 20_000_000 + '"}\n{"a": 1}\n')
    tracemalloc.start()
    try:
        records = list(read_jsonl(path, max_line_bytes=1000, skip_bad_lines=True))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records == [{"a": 1}]
    assert peak < 5_000_000  # read in chunks of 1 MB, never the 20 MB line whole
