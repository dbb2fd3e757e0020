from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rlhf_gym.tasks.reviews.grammar import vocabulary
from rlhf_gym.tasks.reviews.tokenizer import build_tokenizer


def test_word_level_round_trip(tmp_path):
    tokenizer = build_tokenizer()
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
    tokenizer = build_tokenizer()
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}) == 3
    assert len(tokenizer) == len(vocabulary()) + 3
    assert tokenizer("spaceship")["input_ids"] == [tokenizer.unk_token_id]
