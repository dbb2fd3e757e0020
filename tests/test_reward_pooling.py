"""A reward model's pooling: the score read at the last token, or summed over every token of the text."""

import pytest
import torch
from test_reward_model import shipped_comparisons, synthetic_comparisons

from rlhf_gym.cli import run_command
from rlhf_gym.errors import ConfigError
from rlhf_gym.gpt2 import gpt2_reward_model
from rlhf_gym.reward_model import RewardModel, join_text
from rlhf_gym.reward_training import RewardTrainingConfig, evaluate_reward_model, train_reward_model
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS

PROMPTS = ["the food was"] * 3
RESPONSES = ["great .", "awful and rude .", "not bad , and i loved the chef ."]


def tiny_model(pooling, seed=0):
    torch.manual_seed(seed)
    return gpt2_reward_model(REVIEWS.tokenizer(), width=32, layers=1, heads=2, pooling=pooling)


def test_sum_pooling_is_the_score_head_summed_over_the_responses_tokens():
    model = tiny_model("sum")
    scores = model.score(PROMPTS, RESPONSES)
    for prompt, response, score in zip(PROMPTS, RESPONSES, scores):
        ids = model.tokenizer(join_text(prompt, response), return_tensors="pt", add_special_tokens=False)["input_ids"]
        n_prompt = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"])  # word-level: the text's first ids
        with torch.no_grad():
            hidden = model.model.transformer(ids).last_hidden_state[0]  # [tokens, width], no padding
            by_hand = sum(float(model.model.score.weight[0] @ h) for h in hidden[n_prompt:])  # the head has no bias
        assert score == pytest.approx(by_hand, abs=1e-4)
    # each text alone (no padding) scores as in the padded batch: padding positions add nothing
    assert scores == pytest.approx([model.score(PROMPTS[i:i + 1], RESPONSES[i:i + 1])[0] for i in range(3)], abs=1e-5)
    assert model.score(PROMPTS[:1], [""])[0] == 0.0  # no response tokens, nothing summed


def test_mean_pooling_is_the_sum_over_the_number_of_response_tokens():
    summed, averaged = tiny_model("sum"), tiny_model("mean")  # the same seed: the same weights
    n_tokens = [len(r.split()) for r in RESPONSES]  # word-level: a token per word
    assert averaged.score(PROMPTS, RESPONSES) == pytest.approx(summed.score(PROMPTS, RESPONSES) / n_tokens, abs=1e-5)
    assert averaged.score(PROMPTS[:1], [""])[0] == 0.0


def summed_head(model, ids, last_n):
    """The score head summed over the last ``last_n`` positions of ``ids`` read alone."""
    with torch.no_grad():
        hidden = model.model.transformer(torch.tensor([ids])).last_hidden_state[0]
        return float(model.model.score(hidden[len(ids) - last_n:]).sum())


def test_sum_pooling_keeps_the_responses_end_when_the_text_is_cut_on_the_left():
    model = tiny_model("sum")
    cut = RewardModel(model.model, model.tokenizer, max_length=5, pooling="sum")
    short, long = RESPONSES[0], RESPONSES[2]  # 2 and 9 tokens after the 3-token prompt
    ids = [model.tokenizer(join_text(PROMPTS[0], r), add_special_tokens=False)["input_ids"] for r in (short, long)]
    assert [len(i) for i in ids] == [5, 12]
    scores = cut.score(PROMPTS[:2], [short, long])
    assert scores[0] == pytest.approx(summed_head(model, ids[0], last_n=2), abs=1e-4)  # fits: the prompt left out
    assert scores[1] == pytest.approx(summed_head(model, ids[1][-5:], last_n=5), abs=1e-4)  # cut: 5 response tokens


def test_a_collated_batch_is_the_tokenizers_own_padding_and_left_truncation():
    model = tiny_model("sum")
    cut = RewardModel(model.model, model.tokenizer, max_length=5, pooling="sum")
    texts = [join_text(p, r) for p, r in zip(PROMPTS, RESPONSES)]  # 5, 7 and 12 ids: the last two are cut
    expected = model.tokenizer(texts, padding=True, truncation=True, max_length=5, return_tensors="pt",
                               add_special_tokens=False)
    batch = cut.collate(cut.tokenize(PROMPTS, RESPONSES))
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    # "great ." keeps its 3 prompt ids and 2 response ids; the cut texts keep 5 of their 4 and 9 response ids
    assert batch["response_mask"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    uncut = model.collate(model.tokenize(PROMPTS[:2], RESPONSES[:2]))
    assert uncut["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]  # right padding to the longest
    assert uncut["response_mask"].tolist() == [[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1]]


def test_training_tokenizes_its_comparisons_once_not_at_every_step(monkeypatch):
    calls = []

    def tokenizer_calls(batch_size):
        model = tiny_model("mean")
        tokenizer_call = type(model.tokenizer).__call__
        counted = lambda self, *args, **kwargs: calls.append(1) or tokenizer_call(self, *args, **kwargs)  # noqa: E731
        monkeypatch.setattr(type(model.tokenizer), "__call__", counted)
        calls.clear()
        train_reward_model(model, synthetic_comparisons(64, seed=0), RewardTrainingConfig(epochs=2, batch_size=batch_size),
                           progress=False)
        monkeypatch.undo()
        return len(calls)

    assert tokenizer_calls(batch_size=4) == tokenizer_calls(batch_size=16)  # 4 times as many steps, no more tokenizing


def test_the_tokenizing_benchmark_scores_the_same_both_ways():
    from rlhf_gym.benchmarks.reward_tokenizing import time_training_step

    times = time_training_step(rounds=1, repeats=1)  # raises if the pre-tokenized step scores differently
    assert set(times) == {"in the step", "once"} and min(times.values()) > 0


def test_last_token_pooling_is_the_classifiers_own_reading():
    model = tiny_model("last")
    texts = [join_text(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    batch = model.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected = model.model(**batch).logits.squeeze(-1)
    assert model.pooling == "last"
    assert model.score(PROMPTS, RESPONSES) == pytest.approx(expected.numpy(), abs=1e-6)
    summed = RewardModel(model.model, model.tokenizer, pooling="sum")  # the same weights, read the other way
    assert not summed.score(PROMPTS, RESPONSES) == pytest.approx(expected.numpy(), abs=1e-3)


def test_pooling_survives_save_and_load(tmp_path):
    model = tiny_model("sum")
    model.save_pretrained(tmp_path / "rm")
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.pooling == "sum"
    assert loaded.score(PROMPTS, RESPONSES) == pytest.approx(model.score(PROMPTS, RESPONSES), abs=1e-5)


def test_a_model_saved_without_a_pooling_reads_the_last_token(tmp_path):
    model = tiny_model("last")
    del model.model.config.reward_pooling  # a reward model saved before the option existed
    model.model.save_pretrained(tmp_path / "rm")
    model.tokenizer.save_pretrained(tmp_path / "rm")
    assert RewardModel.from_pretrained(tmp_path / "rm").pooling == "last"


def test_sum_pooling_learns_from_comparisons():
    model = tiny_model("sum")
    config = RewardTrainingConfig(epochs=3, batch_size=16, learning_rate=3e-3)
    metrics = train_reward_model(model, synthetic_comparisons(200, seed=0), config, progress=False)
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert evaluate_reward_model(model, synthetic_comparisons(100, seed=1))["accuracy"] >= 0.9


def test_unknown_pooling_and_a_model_without_a_per_position_head_are_refused():
    model = tiny_model("last")
    with pytest.raises(ConfigError, match="reward pooling must be one of last, sum, mean, got 'max'"):
        RewardModel(model.model, model.tokenizer, pooling="max")
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertForSequenceClassification(BertConfig(vocab_size=len(REVIEWS.tokenizer()), hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=1))
    for pooling in ("sum", "mean"):
        with pytest.raises(ConfigError, match=f"pooling '{pooling}' .* BertForSequenceClassification has no per-position"):
            RewardModel(bert, REVIEWS.tokenizer(), pooling=pooling)


def test_train_rm_pooling_option_is_saved(tmp_path):
    data = shipped_comparisons("lists", 40, tmp_path / "lists.jsonl")
    run_command("train-rm", ["--data", str(data), "--out-dir", str(tmp_path / "rm"), "--epochs", "1", "--width", "32",
                             "--layers", "1", "--pooling", "sum", "--no-gold-check"])
    assert RewardModel.from_pretrained(tmp_path / "rm").pooling == "sum"
