import random

import pytest
import torch

from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.reward_model import RewardModel, bradley_terry_loss
from rlhf_gym.reward_training import RewardTrainingConfig, evaluate_reward_model, train_reward_model
from rlhf_gym.tasks.reviews.tokenizer import build_tokenizer
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
    return gpt2_reward_model(build_tokenizer(), width=32, layers=1, heads=2)


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
