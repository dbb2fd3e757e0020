"""An exported policy's text reads like the task's text: ``pipeline`` keeps the space between the prompt and the
continuation, and the exported tokenizer encodes and decodes as the env's does."""

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast, pipeline

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.tokenizers import save_tokenizer_for_export


@pytest.fixture(scope="module")
def exported(task, tokenizer, tmp_path_factory):
    """A TokenPPO agent's export (the untrained agent: the task's SFT policy and the env's tokenizer)."""
    env = RLHFVecEnv(num_envs=2, task=task, max_new_tokens=4)
    agent = TokenPPO("TransformerPolicy", env, n_epochs=1, batch_size=2, seed=0, device="cpu")
    directory = tmp_path_factory.mktemp("export") / "policy"
    agent.export_pretrained(directory)
    assert agent.batched_env.tokenizer.backend_tokenizer.decoder is None  # the env's tokenizer is left as it was
    return directory


def env_text(tokenizer, ids: list[int]) -> str:
    """A response's text as the env decodes it (``rlhf_gym.envs.episodes.EpisodeBatch.texts``)."""
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def sampled_sequences(tokenizer, n: int = 200, seed: int = 0) -> list[list[int]]:
    """``n`` random id sequences of 1 to 12 tokens over the whole vocabulary (special tokens included)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 13, (n,), generator=generator).tolist()
    return [torch.randint(0, len(tokenizer), (k,), generator=generator).tolist() for k in lengths]


def test_pipeline_puts_a_space_between_the_prompt_and_the_continuation(exported, task, tokenizer):
    generator = pipeline("text-generation", model=str(exported), tokenizer=str(exported), device="cpu")
    vocab = tokenizer.get_vocab()
    for prompt in ["the pizza was", *task.eval_prompts[:3]]:
        text = generator(prompt, max_new_tokens=6, do_sample=False)[0]["generated_text"]
        ids = generator(prompt, max_new_tokens=6, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
        continuation = env_text(tokenizer, ids[len(tokenizer(prompt)["input_ids"]):])
        assert continuation, prompt  # the SFT policy says something
        assert text == f"{prompt} {continuation}"
        assert all(word in vocab for word in text.split()), text  # no two words glued into one


def test_exported_tokenizer_encodes_and_decodes_as_the_env(exported, tokenizer):
    loaded = AutoTokenizer.from_pretrained(exported)
    assert loaded.get_vocab() == tokenizer.get_vocab() and loaded.eos_token_id == tokenizer.eos_token_id
    for ids in sampled_sequences(tokenizer):
        text = loaded.decode(ids)
        assert loaded(text)["input_ids"] == ids  # round trip, special tokens included
        assert text == " " + " ".join(tokenizer.convert_ids_to_tokens(ids))  # one space before each token
        assert loaded.decode(ids, skip_special_tokens=True).strip() == env_text(tokenizer, ids)
        original = tokenizer.decode(ids)
        assert loaded(original)["input_ids"] == tokenizer(original)["input_ids"]
        # a continuation decoded on its own appends to its prefix's text (what ``pipeline`` does)
        cut = len(ids) // 2
        assert loaded.decode(ids[:cut]) + loaded.decode(ids[cut:]) == text


def test_a_tokenizer_with_its_own_decoder_is_saved_as_it_is(tmp_path):
    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "the": 1, "##s": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    save_tokenizer_for_export(tokenizer, tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["decoder"]["type"] == "WordPiece"
    assert AutoTokenizer.from_pretrained(tmp_path).decode([1, 2, 1]) == "thes the"
