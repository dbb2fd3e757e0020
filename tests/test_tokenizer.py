import json

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks.reviews.grammar import vocabulary
from rlhf_gym.tasks.reviews.task import WORLD as REVIEWS
from rlhf_gym.tokenizers import check_same_tokenizer


def test_word_level_round_trip(tmp_path):
    tokenizer = REVIEWS.tokenizer()
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    text = "the food was not very good , but i really loved the pizza !"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.split())
    assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text)["input_ids"] == ids
    assert loaded.decode([*ids, loaded.eos_token_id], skip_special_tokens=True) == text


def test_special_tokens_are_distinct():
    tokenizer = REVIEWS.tokenizer()
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}) == 3
    assert len(tokenizer) == len(vocabulary()) + 3
    assert tokenizer("spaceship")["input_ids"] == [tokenizer.unk_token_id]


def test_check_same_tokenizer_compares_ids_not_sizes():
    tokenizer = REVIEWS.tokenizer()
    check_same_tokenizer(REVIEWS.tokenizer(), tokenizer, "the policy", "the reference")
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]
    swapped = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), pad_token="<pad>",
                                      eos_token="<eos>", unk_token="<unk>")
    assert len(swapped) == len(tokenizer)
    with pytest.raises(ConfigError, match=r"the tokenizer of the policy differs from the reference .*2 tokens differ"):
        check_same_tokenizer(swapped, tokenizer, "the policy", "the reference")
    no_pad = REVIEWS.tokenizer()
    no_pad.pad_token = "<eos>"  # same vocabulary, padding with another token
    with pytest.raises(ConfigError, match=r"in its pad_token: '<eos>' \(id 1\) vs '<pad>' \(id 0\)"):
        check_same_tokenizer(no_pad, tokenizer, "the policy", "the reference")
