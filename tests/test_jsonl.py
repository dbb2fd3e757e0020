"""The JSONL layer: errors that name the file and line, skipping bad lines, durable appends, atomic rewrites."""

import os

import pytest

from rlhf_gym import jsonl
from rlhf_gym.errors import DataError
from rlhf_gym.jsonl import JSONLError, append_jsonl, read_jsonl, repair_truncated_tail, write_jsonl


class RecordError(JSONLError):
    """A caller's own error class."""


def positive(record, where):
    if record.get("x", 0) <= 0:
        raise RecordError(f"{where}: x must be positive")
    return record["x"]


@pytest.mark.parametrize("line, message", [
    (b'{"x": "\xff"}', r"invalid UTF-8 \(invalid start byte at byte 7\)"),
    (b"{not json", r"invalid JSON \(Expecting property name enclosed in double quotes\)"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'"text"', "expected a JSON object, got str"),
])
def test_errors_name_the_file_and_the_line(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"x": 1}\n\n' + line + b"\n")  # the blank line 2 is skipped but counted
    with pytest.raises(DataError, match=rf"data.jsonl:3: {message}"):
        list(read_jsonl(path))
    with pytest.raises(RecordError, match=rf"data.jsonl:3: {message}"):
        list(read_jsonl(path, error=RecordError))


def test_parse_checks_each_object_and_bad_lines_can_be_skipped_and_counted(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"x": 1}\n{"x": -1}\n{oops\n\n{"x": 2}\n[3]\n')
    with pytest.raises(RecordError, match=r"data\.jsonl:2: x must be positive"):
        list(read_jsonl(path, positive, error=RecordError))
    stats = {}
    assert list(read_jsonl(path, positive, skip_bad_lines=True, stats=stats, error=RecordError)) == [1, 2]
    assert stats == {"skipped": 3}
    assert list(read_jsonl(path, skip_bad_lines=True)) == [{"x": 1}, {"x": -1}, {"x": 2}]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pairs file not found: .*nope.jsonl"):
        list(read_jsonl(tmp_path / "nope.jsonl", what="pairs file"))


def test_append_fsyncs_every_line_and_round_trips(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(jsonl.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "deep" / "out.jsonl"
    records = [{"text": "café ✓"}, {"n": 1, "nested": {"a": [1, 2]}}, {"n": 2}]
    append_jsonl(path, records[:2])
    append_jsonl(path, records[2:])
    assert len(synced) == 3
    assert list(read_jsonl(path)) == records
    assert "café ✓" in path.read_text(encoding="utf-8")  # UTF-8 as is, not \\u escapes


def test_append_cuts_a_line_left_half_written(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"n": 1}\n{"n": 2, "cut')
    append_jsonl(path, [{"n": 3}])
    assert list(read_jsonl(path)) == [{"n": 1}, {"n": 3}]
    repair_truncated_tail(path)  # a complete file is left alone
    assert path.read_text() == '{"n": 1}\n{"n": 3}\n'


def test_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"n": 1}, {"n": 2}])
    write_jsonl(path, ({"n": n} for n in (3,)))
    assert list(read_jsonl(path)) == [{"n": 3}]


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"n": 1}])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl(path, [{"n": 2}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left behind


@pytest.mark.parametrize("line, message", [
    (b"\x00\x00\x00", "invalid JSON"),
    (b'{"x": "a\x00b"}', "invalid JSON"),
    (b"\xff\xfe{", "invalid UTF-8"),
])
def test_nul_bytes_and_other_encodings_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"x": 1}\n' + line + b"\n")
    with pytest.raises(DataError, match=rf"data.jsonl:2: {message}"):
        list(read_jsonl(path))


def test_a_line_over_the_limit_is_refused_without_reading_it_whole(tmp_path, monkeypatch):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"x": 1}\n{"x": "' + b"a" * 5000 + b'"}\n{"x": 2}\n' + b'{"x": "' + b"b" * 1000)
    with pytest.raises(DataError, match=r"data.jsonl:2: line longer than 100 bytes"):
        list(read_jsonl(path, max_line_bytes=100))
    stats = {}
    assert list(read_jsonl(path, max_line_bytes=100, skip_bad_lines=True, stats=stats)) == [{"x": 1}, {"x": 2}]
    assert stats == {"skipped": 2}  # the long line 2 and the long last line without a newline
    assert len(list(read_jsonl(path, skip_bad_lines=True))) == 3  # no limit by default
    exact = tmp_path / "exact.jsonl"
    exact.write_bytes(b'{"x": "' + b"a" * 91 + b'"}\n' + b'{"x": "' + b"a" * 91 + b'"}')  # 100 bytes each
    assert len(list(read_jsonl(exact, max_line_bytes=100))) == 2


def test_append_reports_a_full_disk_naming_the_file_and_keeps_whole_lines(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    append_jsonl(path, [{"n": 1}])
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonl.os, "write", half_then_full)
    with pytest.raises(OSError, match=r"No space left on device") as error:
        append_jsonl(path, [{"n": 2}])
    assert error.value.filename == str(path)
    assert path.read_text() == '{"n": 1}\n'


def test_a_number_python_refuses_to_read_names_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n{"a": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=rf"{path}:2: unreadable JSON \(Exceeds the limit"):
        list(read_jsonl(path))
