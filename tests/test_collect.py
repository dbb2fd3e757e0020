import json

import pytest

from rlhf_gym.collect import collect_preferences
from rlhf_gym.labelers import SimulatedAnnotator, TerminalLabeler
from rlhf_gym.preferences import load_preferences
from rlhf_gym.tasks.reviews.gold import gold_reward


def test_resume_continues_without_duplicates(tmp_path, task, ref_model, tokenizer):
    prompts = task.train_prompts[:40]
    out = tmp_path / "prefs.jsonl"
    labeler = SimulatedAnnotator(gold_reward, seed=0)
    collect_preferences(ref_model, tokenizer, prompts, labeler, out, n_pairs=10, batch_size=8, progress=False)
    first = out.read_text().splitlines()
    assert 1 <= len(first) <= 10
    # a kill mid-line leaves half a record: the resumed run cuts it and redoes that pair
    with out.open("a") as handle:
        handle.write('{"pair_id": 99, "prompt": "cut')
    collect_preferences(ref_model, tokenizer, prompts, labeler, out, n_pairs=20, batch_size=8, progress=False)
    lines = out.read_text().splitlines()
    assert lines[: len(first)] == first
    ids = [json.loads(line)["pair_id"] for line in lines]
    assert len(ids) == len(set(ids)) and max(ids) < 20
    assert len(load_preferences(out)) == len(lines)
    # a rerun with the same budget adds nothing
    assert collect_preferences(ref_model, tokenizer, prompts, labeler, out, n_pairs=20, batch_size=8, progress=False) == 0


def test_unlabelled_pairs_mode(tmp_path, task, ref_model, tokenizer):
    out = tmp_path / "pairs.jsonl"
    collect_preferences(ref_model, tokenizer, task.train_prompts[:6], None, out, n_pairs=6, progress=False)
    record = json.loads(out.read_text().splitlines()[0])
    assert {"pair_id", "prompt", "response_a", "response_b"} <= set(record) and "chosen" not in record


def test_simulated_annotator_follows_bradley_terry():
    annotator = SimulatedAnnotator(lambda p, r: {"good": 1.0, "bad": 0.0}[r], temperature=1.0, flip_rate=0.0, seed=0)
    share = sum(annotator("x", "good", "bad") == "a" for _ in range(4000)) / 4000
    assert share == pytest.approx(1 / (1 + 2.718281828 ** -1), abs=0.03)
    flipped = SimulatedAnnotator(lambda p, r: {"good": 50.0, "bad": 0.0}[r], temperature=0.01, flip_rate=0.25, seed=0)
    assert sum(flipped("x", "good", "bad") == "b" for _ in range(4000)) / 4000 == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="flip_rate"):
        SimulatedAnnotator(gold_reward, flip_rate=1.5)


def test_terminal_labeler_reads_keys_and_reprompts():
    answers = iter(["x", "2", "t", "s", "1"])
    shown = []
    labeler = TerminalLabeler(read=lambda _: next(answers), write=shown.append)
    assert [labeler("p", "a", "b") for _ in range(4)] == ["b", "tie", "skip", "a"]
    assert any("please answer" in line for line in shown)
