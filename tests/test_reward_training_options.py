"""Reward-model training options change the loss as documented, by hand:
``L = -mean(log sigmoid(r_w - r_l - margin)) + c * mean((r_w + r_l)^2)``.

With a learning rate of 0 the model does not move, so the first epoch's training loss (one batch of all the
comparisons) is the loss of the fixed model, computed here from its scores.
"""

import json

import numpy as np
import pytest
import torch

from rlhf_gym.errors import DataError
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.reward_training import (RewardTrainingConfig, data_hash, evaluate_reward_model, save_reward_model,
                                      split_records, train_reward_model)
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS

WORDS = ["great", "awful", "big", "rude", "tasty", "bland", "clean", "dirty"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    reward_model = gpt2_reward_model(REVIEWS.tokenizer(), width=32, layers=1, heads=2)
    with torch.no_grad():
        reward_model.model.score.weight.mul_(20.0)  # scores of order 1, so that every term counts
    return reward_model


def comparisons(margins=None):
    records = [{"prompt": "the food was", "chosen": f"{WORDS[i]} .", "rejected": f"{WORDS[(i + 3) % 8]} and {WORDS[i]} ."}
               for i in range(8)]
    for record, margin in zip(records, margins or []):
        if margin is not None:
            record["margin"] = margin
    return records


def first_epoch_loss(model, records, **options):
    config = RewardTrainingConfig(epochs=1, batch_size=len(records), learning_rate=0.0, eval_fraction=0.0, **options)
    metrics = train_reward_model(model, records, config, progress=False)
    assert metrics["n_train"] == len(records)
    return metrics["history"][0]["train_loss"]


def scores(model, records):
    prompts = [r["prompt"] for r in records]
    chosen = model.score(prompts, [r["chosen"] for r in records]).astype(np.float64)
    rejected = model.score(prompts, [r["rejected"] for r in records]).astype(np.float64)
    return chosen, rejected


def softplus(x):
    return np.log1p(np.exp(x))


MARGINS = [1.0, 0.5, None, 2.0, 0.0, None, 1.5, 3.0]  # two comparisons without one: margin 0


def test_scores_are_spread(model):
    chosen, rejected = scores(model, comparisons())
    assert np.abs(chosen - rejected).max() > 0.3 and np.abs(chosen + rejected).max() > 0.3


def test_plain_bradley_terry_loss(model):
    chosen, rejected = scores(model, comparisons())
    expected = softplus(-(chosen - rejected)).mean()  # -log sigmoid(d) = log(1 + e^-d)
    assert first_epoch_loss(model, comparisons()) == pytest.approx(expected, abs=1e-5)


def test_margin_is_subtracted_from_the_gap(model):
    records = comparisons(MARGINS)
    chosen, rejected = scores(model, records)
    margin = np.array([m or 0.0 for m in MARGINS])
    expected = softplus(-(chosen - rejected - margin)).mean()
    assert first_epoch_loss(model, records) == pytest.approx(expected, abs=1e-5)
    assert expected > softplus(-(chosen - rejected)).mean() + 0.1  # a positive margin asks for a wider gap
    assert first_epoch_loss(model, records, use_margin=False) == pytest.approx(first_epoch_loss(model, comparisons()),
                                                                             abs=1e-6)
    everywhere = comparisons([0.75] * 8)  # every comparison has a margin
    expected = softplus(-(chosen - rejected - 0.75)).mean()
    assert first_epoch_loss(model, everywhere) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("coef", [0.5, 2.0])
def test_reward_centering_adds_the_squared_sum(model, coef):
    records = comparisons(MARGINS)
    chosen, rejected = scores(model, records)
    margin = np.array([m or 0.0 for m in MARGINS])
    expected = softplus(-(chosen - rejected - margin)).mean() + coef * ((chosen + rejected) ** 2).mean()
    assert first_epoch_loss(model, records, center_rewards_coef=coef) == pytest.approx(expected, abs=1e-4)


def test_training_accuracy_and_held_out_evaluation(model):
    records = comparisons()
    chosen, rejected = scores(model, records)
    config = RewardTrainingConfig(epochs=2, batch_size=3, learning_rate=0.0, eval_fraction=0.0)
    metrics = train_reward_model(model, records, config, progress=False)
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert metrics["history"][1]["train_accuracy"] == pytest.approx(np.mean(chosen > rejected))
    evaluation = evaluate_reward_model(model, records, batch_size=3)
    assert evaluation["accuracy"] == pytest.approx(np.mean(chosen > rejected))
    assert evaluation["loss"] == pytest.approx(softplus(-(chosen - rejected)).mean(), abs=1e-5)
    assert np.isnan(metrics["eval_accuracy"]) and metrics["n_eval"] == 0  # nothing held out
    assert all(np.isnan(v) for v in evaluate_reward_model(model, []).values())


def test_training_moves_the_model_towards_the_labels():
    torch.manual_seed(0)
    reward_model = gpt2_reward_model(REVIEWS.tokenizer(), width=32, layers=1, heads=2)
    records = comparisons()
    config = RewardTrainingConfig(epochs=3, batch_size=4, learning_rate=3e-3, eval_fraction=0.25, seed=1)
    metrics = train_reward_model(reward_model, records, config, progress=False)
    assert (metrics["n_train"], metrics["n_eval"]) == (6, 2)
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["config"]["learning_rate"] == 3e-3 and metrics["data_sha256"] == data_hash(records)


def test_split_is_a_seeded_partition():
    records = [{"prompt": "p", "chosen": str(i), "rejected": "x"} for i in range(20)]
    train, held_out = split_records(records, 0.25, seed=3)[:2]
    assert len(held_out) == 5 and len(train) == 15
    assert sorted(r["chosen"] for r in train + held_out) == sorted(r["chosen"] for r in records)
    assert split_records(records, 0.25, seed=3)[:2] == (train, held_out)
    assert split_records(records, 0.25, seed=4)[:2] != (train, held_out)
    assert len(split_records(records, 0.1, seed=3)[1]) == 2  # round(20 * 0.1)
    train, held_out = split_records(records[:3], 0.9, seed=0)[:2]
    assert (len(train), len(held_out)) == (1, 2)  # round(2.7) = 3 held out would leave nothing to train on


def test_data_hash_covers_prompt_chosen_and_rejected_in_order():
    records = comparisons()
    digest = data_hash(records)
    assert len(digest) == 64 and digest == data_hash([dict(r) for r in records])
    for key in ("prompt", "chosen", "rejected"):
        changed = [dict(r) for r in records]
        changed[3][key] += "!"
        assert data_hash(changed) != digest, key
    assert data_hash(records[::-1]) != digest
    assert data_hash([{**r, "margin": 1.0} for r in records]) == digest  # only the comparison itself


def test_too_few_comparisons(model):
    with pytest.raises(DataError, match="need at least 2 comparisons to train a reward model, got 1"):
        train_reward_model(model, comparisons()[:1], RewardTrainingConfig(), progress=False)


def test_saved_model_carries_its_metrics_and_scores_the_same(model, tmp_path):
    metrics = {"eval_accuracy": 0.75, "history": [{"epoch": 1}], "data_sha256": "ab" * 32}
    save_reward_model(model, tmp_path / "rm", metrics)
    assert json.loads((tmp_path / "rm" / "reward_metadata.json").read_text()) == metrics
    reloaded = type(model).from_pretrained(tmp_path / "rm")
    records = comparisons()
    np.testing.assert_allclose(scores(reloaded, records), scores(model, records), atol=1e-5)


def test_a_tie_in_scores_is_not_a_correct_ranking(model):
    # chosen == rejected: equal scores, so the pair is not ranked correctly (accuracy counts r_w > r_l strictly)
    ties = [{"prompt": "the food was", "chosen": f"{w} .", "rejected": f"{w} ."} for w in WORDS[:4]]
    real = comparisons()[:4]  # training refuses data made of ties only (below)
    config = RewardTrainingConfig(epochs=1, batch_size=8, learning_rate=0.0, eval_fraction=0.0)
    with pytest.warns(UserWarning, match="4 of 8 comparisons have chosen == rejected"):
        metrics = train_reward_model(model, ties + real, config, progress=False)
    chosen, rejected = scores(model, real)
    assert metrics["history"][0]["train_accuracy"] == pytest.approx((chosen > rejected).sum() / 8)
    assert evaluate_reward_model(model, ties)["accuracy"] == 0.0


def test_comparisons_whose_chosen_is_rejected_warn_and_cannot_be_all(model):
    """chosen == rejected carries no preference: r_w - r_l = 0 whatever the model (the same check as DPO's)."""
    records = comparisons()
    records[2] = {**records[2], "rejected": records[2]["chosen"]}
    with pytest.warns(UserWarning, match=r"records: 1 of 8 comparisons have chosen == rejected"):
        first_epoch_loss(model, records)
    with pytest.raises(DataError, match=r"records: all 8 comparisons have chosen == rejected"):
        first_epoch_loss(model, [{**r, "rejected": r["chosen"]} for r in comparisons()])


def test_standardising_a_reward_model_s_scale_gives_its_samples_std_1_and_keeps_their_order():
    from rlhf_gym.errors import ConfigError
    from rlhf_gym.tasks.building import standardise_reward_scale

    torch.manual_seed(1)
    reward_model = gpt2_reward_model(REVIEWS.tokenizer(), width=32, layers=1, heads=2)
    prompts = ["the food was"] * 8
    responses = [f"{WORDS[i]} and {WORDS[(i * 3) % 8]} ." for i in range(8)]
    before = reward_model.score(prompts, responses)
    std = standardise_reward_scale(reward_model, prompts, responses)
    after = reward_model.score(prompts, responses)
    assert std == pytest.approx(before.std(), rel=1e-6)
    assert after.std() == pytest.approx(1.0, rel=1e-4) and np.allclose(after, before / std, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="a constant reward, nothing to standardise"):
        standardise_reward_scale(reward_model, prompts[:1] * 2, responses[:1] * 2)
