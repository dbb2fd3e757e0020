import json

import pytest

from rlhf_gym.jsonl import append_jsonl, repair_truncated_tail
from rlhf_gym.preferences import MAX_RECORD_BYTES, PreferenceDataError, load_preferences, preference_record

GOOD = {"prompt": "the food was", "chosen": "great .", "rejected": "awful ."}


def write_lines(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines))


def test_round_trip(tmp_path):
    path = tmp_path / "prefs.jsonl"
    records = [GOOD, {**GOOD, "margin": 0.5, "labeler": "ana"}, {**GOOD, "label": "tie"}]
    append_jsonl(path, records[:1])
    append_jsonl(path, records[1:])
    assert load_preferences(path) == records[:2]
    assert load_preferences(path, include_non_preferences=True) == records


@pytest.mark.parametrize("line, message", [
    (b"{not json", "invalid JSON"),
    (json.dumps({"prompt": "x", "chosen": "a"}).encode(), "missing column 'rejected'"),
    (json.dumps({**GOOD, "chosen": "  "}).encode(), "column 'chosen' is empty"),
    (json.dumps({**GOOD, "rejected": 3}).encode(), "column 'rejected' must be a string"),
    (json.dumps({**GOOD, "margin": "big"}).encode(), "column 'margin' must be a number"),
    (json.dumps([1, 2]).encode(), "expected a JSON object"),
    (b'{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}', "invalid UTF-8"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [json.dumps(GOOD), line + b"\n", json.dumps(GOOD)])
    with pytest.raises(PreferenceDataError, match=rf"bad.jsonl:2: {message}"):
        load_preferences(path)
    assert load_preferences(path, skip_bad_lines=True) == [GOOD, GOOD]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        load_preferences(tmp_path / "nope.jsonl")


def test_hf_dataset():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list([GOOD, {**GOOD, "chosen": "fine ."}])
    assert [r["chosen"] for r in load_preferences(dataset)] == ["great .", "fine ."]
    with pytest.raises(PreferenceDataError, match="missing column"):
        load_preferences(datasets.Dataset.from_list([{"prompt": "x", "chosen": "y"}]))


def test_truncated_tail_is_cut_before_appending(tmp_path):
    path = tmp_path / "prefs.jsonl"
    write_lines(path, [json.dumps(GOOD), b'{"prompt": "half a li'])
    repair_truncated_tail(path)
    append_jsonl(path, [GOOD])
    assert load_preferences(path) == [GOOD, GOOD]


def test_preference_record_from_a_judgement():
    assert preference_record("p", "x", "y", "a", labeler="ana") == {"prompt": "p", "chosen": "x", "rejected": "y",
                                                                     "labeler": "ana"}
    assert preference_record("p", "x", "y", "b")["chosen"] == "y"
    tie = preference_record("p", "x", "y", "tie", pair_id=3, judgement="tie")
    assert list(tie) == ["prompt", "chosen", "rejected", "pair_id", "judgement", "label"] and tie["chosen"] == "x"


@pytest.mark.parametrize("line", [b'{"prompt": "x", "chosen": "a", "rejected": "b", "margin": NaN}',
                                  b'{"prompt": "x", "chosen": "a", "rejected": "b", "margin": Infinity}',
                                  b'{"prompt": "x", "chosen": "a", "rejected": "b", "margin": -Infinity}'])
def test_non_finite_margin_is_refused(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [json.dumps(GOOD), line])
    with pytest.raises(PreferenceDataError, match=r"bad.jsonl:2: column 'margin' must be a finite number"):
        load_preferences(path)


def test_a_huge_record_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "big.jsonl"
    write_lines(path, [json.dumps(GOOD), json.dumps({**GOOD, "chosen": "word " * (MAX_RECORD_BYTES // 5)})])
    with pytest.raises(PreferenceDataError, match=rf"big.jsonl:2: line longer than {MAX_RECORD_BYTES} bytes"):
        load_preferences(path)
    assert load_preferences(path, skip_bad_lines=True) == [GOOD]


def test_a_huge_dataset_field_is_refused():
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list([GOOD, {**GOOD, "prompt": "x" * (MAX_RECORD_BYTES + 1)}])
    with pytest.raises(PreferenceDataError, match=rf"dataset row 1: record longer than {MAX_RECORD_BYTES} bytes"):
        load_preferences(dataset)
