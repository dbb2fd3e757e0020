import errno
import json
import os
import random
from pathlib import Path

import pytest
import torch
from helpers import cli_error

from rlhf_gym import reward_training
from rlhf_gym.cli import run_command
from rlhf_gym.errors import ConfigError, MissingFileError, TrainingDivergedError
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.reward_model import RewardModel, bradley_terry_loss
from rlhf_gym.reward_training import (RewardTrainingConfig, evaluate_reward_model, save_reward_model, split_records,
                                      train_reward_model)
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS
from rlhf_gym.utils import resolve_device


def test_bradley_terry_loss_and_gradient_by_hand():
    r_w = torch.tensor([2.0, 0.0, -1.0], requires_grad=True)
    r_l = torch.tensor([1.0, 0.0, 1.0], requires_grad=True)
    loss = bradley_terry_loss(r_w, r_l)
    delta = torch.tensor([1.0, 0.0, -2.0])
    expected = torch.log1p(torch.exp(-delta)).mean()  # -log sigmoid(d) = log(1 + e^-d)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    # d/d r_w of -log sigmoid(delta) / n = -(1 - sigmoid(delta)) / n; the loser gets the opposite.
    expected_grad = -(1 - torch.sigmoid(delta)) / 3
    assert torch.allclose(r_w.grad, expected_grad, atol=1e-6)
    assert torch.allclose(r_l.grad, -expected_grad, atol=1e-6)
    assert r_w.grad[0].abs() < r_w.grad[2].abs()  # an agreeing pair pushes less than a disagreeing one


def test_margin_shifts_the_gap():
    r = torch.tensor([1.0])
    loss = bradley_terry_loss(r, torch.tensor([0.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def tiny_reward_model(seed=0):
    torch.manual_seed(seed)
    return gpt2_reward_model(REVIEWS.tokenizer(), width=32, layers=1, heads=2)


def synthetic_comparisons(n, seed):
    """The chosen response is positive, the rejected negative: learnable from one word."""
    rng = random.Random(seed)
    good, bad = ["great", "lovely", "superb", "tasty"], ["awful", "bland", "rude", "dirty"]
    return [{"prompt": "the food was", "chosen": f"{rng.choice(good)} .", "rejected": f"{rng.choice(bad)} ."}
            for _ in range(n)]


def test_training_beats_chance_with_a_fixed_seed():
    model = tiny_reward_model()
    records = synthetic_comparisons(200, seed=0)
    config = RewardTrainingConfig(epochs=3, batch_size=16, learning_rate=3e-3)
    metrics = train_reward_model(model, records, config, progress=False)
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert evaluate_reward_model(model, synthetic_comparisons(100, seed=1))["accuracy"] >= 0.9
    assert len(metrics["data_sha256"]) == 64


def test_score_is_batched_and_consistent():
    model = tiny_reward_model()
    prompts, responses = ["the food was"] * 5, ["great .", "awful .", "big .", "great .", "not bad , and i loved the chef ."]
    full = model.score(prompts, responses)
    parts = [model.score(prompts[i:i + 1], responses[i:i + 1])[0] for i in range(5)]
    assert full.shape == (5,)
    assert full == pytest.approx(parts, abs=1e-5)
    assert full[0] == pytest.approx(full[3])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        model.score(prompts[:2], responses[:1])


def test_tokenizer_without_pad_token_uses_eos():
    model = tiny_reward_model()
    tokenizer = model.tokenizer
    tokenizer.pad_token = None
    rebuilt = RewardModel(model.model, tokenizer)
    assert rebuilt.tokenizer.pad_token == rebuilt.tokenizer.eos_token
    assert rebuilt.score(["the food was"] * 2, ["great .", "not great at all ."]).shape == (2,)


def test_missing_reward_model_directory(tmp_path):
    with pytest.raises(MissingFileError, match=r"cannot load a reward model from '.*missing': no such file or directory"):
        RewardModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "config.json").write_text("{}")
    with pytest.raises(MissingFileError, match=r"cannot load a reward model from '.*not_a_model': "):
        RewardModel.from_pretrained(tmp_path / "not_a_model")


@pytest.mark.parametrize("device, message", [("gpu", "unknown device 'gpu'"), ("cuda:7", "'cuda:7' is not available")])
def test_bad_device_is_a_config_error(device, message):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(ConfigError, match=message):
        resolve_device(device)
    assert resolve_device("cpu") == torch.device("cpu")


def pair_identity(record):
    return record["prompt"], frozenset((record["chosen"], record["rejected"]))


def test_split_keeps_each_pair_on_one_side_and_drops_exact_duplicates():
    """Duplicated lines and several labellers' votes on one pair must not leak into the held-out side (issue 17)."""
    unique = [{**r, "pair_id": i} for i, r in enumerate(synthetic_comparisons(60, seed=0))]
    overlap = []  # three labellers on each of ten pairs, one of them swapped
    for r in unique[:10]:
        overlap += [{**r, "labeler": "ana"}, {**r, "labeler": "bo"},
                    {**r, "chosen": r["rejected"], "rejected": r["chosen"], "labeler": "cy"}]
    records = unique + unique[:30] + overlap  # the first 30 appended twice, as two collectors or `cat` would
    train, held_out, n_duplicates = split_records(records, eval_fraction=0.3, seed=0)
    assert n_duplicates == 30
    assert not {pair_identity(r) for r in train} & {pair_identity(r) for r in held_out}
    assert len(train) + len(held_out) == len(records) - 30
    assert sorted(map(str, train + held_out)) == sorted(map(str, unique + overlap))
    assert 0.2 <= len({pair_identity(r) for r in held_out}) / len({pair_identity(r) for r in records}) <= 0.4
    metrics = train_reward_model(tiny_reward_model(), records, RewardTrainingConfig(epochs=1, eval_fraction=0.3),
                                 progress=False)
    assert metrics["n_duplicates"] == 30 and metrics["n_train"] + metrics["n_eval"] == len(records) - 30


def test_training_stops_when_the_loss_is_not_finite():
    model = tiny_reward_model()
    before = [p.detach().clone() for p in model.model.parameters()]
    records = synthetic_comparisons(40, seed=0)
    records[5]["margin"] = float("nan")  # handed in directly, past the loader's check
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan at reward-model epoch 1, step \d"):
        train_reward_model(model, records, RewardTrainingConfig(epochs=1, batch_size=40), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.model.parameters()))


def test_save_refuses_non_finite_parameters(tmp_path):
    model = tiny_reward_model()
    with torch.no_grad():
        model.model.score.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDivergedError, match=r"score\.weight"):
        save_reward_model(model, tmp_path / "rm", {})
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_the_previous_model_in_place(tmp_path, monkeypatch):
    good = tiny_reward_model(seed=0)
    save_reward_model(good, tmp_path / "rm", {"run": 1})
    files = {p.name: p.read_bytes() for p in (tmp_path / "rm").iterdir()}

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(reward_training, "atomic_write_json", disk_full)
    with pytest.raises(OSError, match="No space left on device") as error:
        save_reward_model(tiny_reward_model(seed=1), tmp_path / "rm", {"run": 2})
    assert str(tmp_path / "rm") in str(error.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "rm").iterdir()} == files
    assert [p.name for p in tmp_path.iterdir()] == ["rm"]  # no staging directory left behind
    assert RewardModel.from_pretrained(tmp_path / "rm").score(["the food was"], ["great ."]) == pytest.approx(
        good.score(["the food was"], ["great ."]), abs=1e-6)


def write_preferences(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_train_rm_refuses_a_non_finite_margin_naming_the_line(tmp_path, capsys):
    records = synthetic_comparisons(20, seed=0)
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records[:3]) + '{"prompt": "a", "chosen": "b .", '
                    '"rejected": "c .", "margin": NaN}\n')
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm"])
    assert f"{data}:4: column 'margin' must be a finite number" in message
    assert not (tmp_path / "rm").exists()


def test_train_rm_refuses_comparisons_that_all_have_chosen_equal_to_rejected(tmp_path, capsys):
    records = [{"prompt": "the food was", "chosen": f"{w} .", "rejected": f"{w} ."} for w in ("great", "awful", "tasty")]
    data = write_preferences(tmp_path / "prefs.jsonl", records)
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm"])
    assert message.startswith(f"error: {data}: all 3 comparisons have chosen == rejected")
    assert not (tmp_path / "rm").exists()


@pytest.mark.parametrize("option, value", [("--learning-rate", "nan"), ("--learning-rate", "inf"),
                                           ("--center-rewards-coef", "-1"), ("--center-rewards-coef", "nan"),
                                           ("--eval-fraction", "nan"), ("--epochs", "0"), ("--batch-size", "-2")])
def test_train_rm_refuses_bad_numbers_naming_the_option(tmp_path, capsys, option, value):
    data = write_preferences(tmp_path / "prefs.jsonl", synthetic_comparisons(20, seed=0))
    with pytest.raises(SystemExit) as exit_info:
        run_command("train-rm", ["--data", str(data), "--out-dir", str(tmp_path / "rm"), option, value])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


def test_train_rm_output_and_input_errors_name_the_path(tmp_path, capsys, monkeypatch):
    data = write_preferences(tmp_path / "prefs.jsonl", synthetic_comparisons(20, seed=0))
    a_file = tmp_path / "taken"
    a_file.write_text("not a directory")
    assert cli_error(capsys, "train-rm", ["--data", data, "--out-dir", a_file]) == f"error: Not a directory: {a_file}"
    assert a_file.read_text() == "not a directory"
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps(synthetic_comparisons(1, seed=0)[0]) + "\n"
                    + json.dumps({"prompt": "x", "chosen": "great " * 2_000_000, "rejected": "bad ."}) + "\n")
    message = cli_error(capsys, "train-rm", ["--data", huge, "--out-dir", tmp_path / "rm"])
    assert f"{huge}:2: line longer than" in message
    real_open = Path.open

    def unreadable(self, *args, **kwargs):
        if self == data:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", unreadable)
    assert cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm"]) == f"error: Permission denied: {data}"


def test_train_rm_disk_full_keeps_the_previous_model(tmp_path, capsys, monkeypatch):
    data = write_preferences(tmp_path / "prefs.jsonl", synthetic_comparisons(20, seed=0))
    out = tmp_path / "rm"
    run_command("train-rm", ["--data", str(data), "--out-dir", str(out), "--epochs", "1"])
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    def disk_full(self, directory, *args, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(RewardModel, "save_pretrained", disk_full)
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", out, "--epochs", "1"])
    assert message.startswith("error: No space left on device") and str(out) in message
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.jsonl", "rm"]


def test_train_rm_never_replaces_a_directory_that_holds_no_reward_model(tmp_path, capsys):
    data = write_preferences(tmp_path / "prefs.jsonl", synthetic_comparisons(20, seed=0))
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", home, "--epochs", "1"])
    assert str(home) in message and "holds no saved reward model" in message
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]


def shipped_comparisons(task: str, n: int, path: Path) -> Path:
    """The first ``n`` comparisons of a task's shipped data, as a JSONL file at ``path``."""
    from rlhf_gym.tasks import world_of

    lines = (world_of(task).task().artifacts_dir / "preferences.jsonl").read_text().splitlines()[:n]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_rm_reads_the_datas_task_and_takes_a_size(tmp_path, capsys):
    """rlhf-gym 0.8 built every default model on the reviews tokenizer: on another task's data nearly every content
    word was <unk>. The default model now takes the tokenizer of the task whose words the data uses, and a size."""
    from transformers import AutoConfig, AutoTokenizer

    from rlhf_gym.tasks import world_of

    data = shipped_comparisons("lists", 40, tmp_path / "lists.jsonl")
    run_command("train-rm", ["--data", str(data), "--out-dir", str(tmp_path / "rm"), "--epochs", "1", "--width", "32",
                             "--layers", "1"])
    assert "reward model on the lists task's tokenizer (0.0% of the words unknown)" in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(tmp_path / "rm").get_vocab() == world_of("lists").tokenizer().get_vocab()
    config = AutoConfig.from_pretrained(tmp_path / "rm")
    assert (config.n_embd, config.n_layer) == (32, 1)


def test_train_rm_refuses_data_its_tokenizer_cannot_read(tmp_path, capsys):
    data = shipped_comparisons("lists", 40, tmp_path / "lists.jsonl")
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm", "--task", "reviews"])
    assert "of its words are unknown to the reviews task's tokenizer" in message and "--model" in message
    assert not (tmp_path / "rm").exists()
    with pytest.raises(SystemExit) as exit_info:  # the default model's options do not go with --model
        run_command("train-rm", ["--data", str(data), "--model", str(tmp_path), "--width", "32"])
    assert exit_info.value.code == 2 and "--width: options of the default model" in capsys.readouterr().err


def safetensors_disk_full(*args, **kwargs):
    """What safetensors raises when the disk fills while it writes a model (measured on a full tmpfs)."""
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_train_rm_reports_safetensors_full_disk_as_one_line(tmp_path, capsys, monkeypatch):
    """safetensors reports a full disk with its own error class, which 0.9.0 printed as a traceback."""
    import transformers.modeling_utils

    data = write_preferences(tmp_path / "prefs.jsonl", synthetic_comparisons(20, seed=0))
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", safetensors_disk_full)
    out = tmp_path / "rm"
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", out, "--epochs", "1"])
    assert message == f"error: No space left on device: {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs.jsonl"]  # no half model, no staging directory
