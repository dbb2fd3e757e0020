import errno
import json
import os
import threading

import pytest
from helpers import cli_error

import rlhf_gym.collect as collect
from rlhf_gym import jsonl
from rlhf_gym.cli import run_command
from rlhf_gym.collect import collect_preferences
from rlhf_gym.errors import ConfigError
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


def without_times(path):
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in path.read_text().splitlines()]


def test_interrupted_and_resumed_collection_writes_what_an_uninterrupted_one_writes(tmp_path, task, ref_model, tokenizer):
    """Each pair's sampling and label depend only on (seed, pair id), not on where a run stopped (issue 17)."""
    prompts = task.train_prompts[:40]
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    collect_preferences(ref_model, tokenizer, prompts, SimulatedAnnotator(gold_reward, seed=3), whole, n_pairs=24,
                        batch_size=8, seed=3, progress=False)
    for n_pairs in (5, 13, 24):  # stops mid-batch, as a kill or a smaller --n-pairs would
        collect_preferences(ref_model, tokenizer, prompts, SimulatedAnnotator(gold_reward, seed=3), resumed,
                            n_pairs=n_pairs, batch_size=8, seed=3, progress=False)
    assert len(without_times(whole)) >= 20
    assert without_times(resumed) == without_times(whole)


def test_a_second_collector_on_the_same_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "generate_texts", lambda policy, tokenizer, prompts, max_new_tokens, temperature, seed:
                        [f"{prompt} sample {seed}" for prompt in prompts])
    started, release = threading.Event(), threading.Event()

    class SlowLabeler:
        name = "slow"

        def __call__(self, prompt, a, b):
            started.set()
            release.wait(30)
            return "a"

    out = tmp_path / "prefs.jsonl"
    first = threading.Thread(target=collect.collect_preferences,
                             args=(None, None, ["the food was"], SlowLabeler(), out, 4), kwargs={"progress": False})
    first.start()
    try:
        assert started.wait(30)
        with pytest.raises(ConfigError, match=rf"{out}.*another collector is writing it"):
            collect.collect_preferences(None, None, ["the food was"], TerminalLabeler(read=lambda _: "1", write=print),
                                        out, 4, progress=False)
    finally:
        release.set()
        first.join(30)
    ids = [r["pair_id"] for r in map(json.loads, out.read_text().splitlines())]
    assert ids == [0, 1, 2, 3]
    # once the first collector is done, the file is free again
    assert collect.collect_preferences(None, None, ["the food was"], SlowLabeler(), out, 4, progress=False) == 0


def test_disk_full_keeps_every_record_already_collected(tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "generate_texts", lambda policy, tokenizer, prompts, max_new_tokens, temperature, seed:
                        [f"{prompt} sample {seed}" for prompt in prompts])
    out = tmp_path / "prefs.jsonl"
    labeler = TerminalLabeler(read=lambda _: "1", write=lambda _: None)
    collect.collect_preferences(None, None, ["the food was"], labeler, out, 3, progress=False)
    before = out.read_bytes()
    real_write, calls = os.write, []

    def disk_full_on_the_second_line(fd, data):  # half a line reaches the disk, then the disk is full
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, data)
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jsonl.os, "write", disk_full_on_the_second_line)
    with pytest.raises(OSError, match=rf"No space left on device: '?{out}"):
        collect.collect_preferences(None, None, ["the food was"], labeler, out, 6, progress=False)
    assert out.read_bytes().startswith(before)
    assert [r["pair_id"] for r in load_preferences(out)] == [0, 1, 2, 3]  # whole lines only: the half line is gone
    monkeypatch.setattr(jsonl.os, "write", real_write)
    assert collect.collect_preferences(None, None, ["the food was"], labeler, out, 6, progress=False) == 2


def test_collect_refuses_a_foreign_or_unusable_output(tmp_path, capsys):
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"text": "my notes"}\n')
    message = cli_error(capsys, "collect", ["--out", foreign, "--n-pairs", 2])
    assert f"{foreign}:1:" in message and "not a preference file written by the collector" in message
    assert foreign.read_text() == '{"text": "my notes"}\n'
    unlabelled = tmp_path / "pairs.jsonl"
    unlabelled.write_text('{"pair_id": 0, "prompt": "x", "response_a": "a .", "response_b": "b ."}\n')
    message = cli_error(capsys, "collect", ["--out", unlabelled, "--n-pairs", 2])  # labelled records into a pairs file
    assert f"{unlabelled}:1:" in message and "unlabelled pairs" in message
    assert cli_error(capsys, "collect", ["--out", tmp_path, "--n-pairs", 2]) == f"error: Is a directory: {tmp_path}"


@pytest.mark.parametrize("option, value, message", [
    ("--temperature", "-1", "--temperature must be"),
    ("--temperature", "0", "--temperature must be"),
    ("--temperature", "nan", "--temperature must be"),
    ("--temperature", "inf", "--temperature must be"),
    ("--temperature", "1e-45", "--temperature must be"),
    ("--max-new-tokens", "0", "--max-new-tokens must be"),
    ("--n-pairs", "-3", "--n-pairs must be"),
    ("--annotator-temperature", "nan", "--annotator-temperature must be"),
    ("--annotator-flip-rate", "nan", "--annotator-flip-rate must be"),
    ("--seed", "-1", "--seed must be"),
])
def test_collect_refuses_bad_numbers_naming_the_option(tmp_path, capsys, option, value, message):
    out = tmp_path / "prefs.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        run_command("collect", ["--out", str(out), "--n-pairs", "2", option, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_collect_refuses_a_response_budget_beyond_the_policys_context(tmp_path, capsys):
    out = tmp_path / "prefs.jsonl"
    message = cli_error(capsys, "collect", ["--out", out, "--n-pairs", 2, "--max-new-tokens", 100000])
    assert "--max-new-tokens 100000" in message and "64 positions" in message
    assert not out.exists()


def test_collect_warns_about_prompts_made_only_of_unknown_words(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("spaceship rocket\nthe food was\n")
    with pytest.warns(UserWarning, match=r"1 of 2 prompts are only unknown tokens .*'spaceship rocket'"):
        run_command("collect", ["--out", str(tmp_path / "prefs.jsonl"), "--n-pairs", "2", "--prompts", str(prompts),
                                "--max-new-tokens", "4"])


@pytest.mark.parametrize("option, value", [
    ("--n-comparisons", "-1"), ("--n-comparisons", "0"), ("--annotator-temperature", "nan"),
    ("--annotator-temperature", "inf"), ("--annotator-flip-rate", "nan"), ("--seed", "-1"), ("--reward-epochs", "0"),
    ("--max-new-tokens", "100000"),
])
def test_build_task_checks_every_number_before_building(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        run_command("build-task", ["--out-dir", str(tmp_path / "task"), option, value])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
