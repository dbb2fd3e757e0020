"""Bring your own model: a locally built Llama on a byte-level BPE tokenizer, on the tasks' text interface."""

import math
import random

import gymnasium as gym
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from rlhf_gym.agents.evaluate import Args as EvaluateArgs
from rlhf_gym.agents.evaluate import main as evaluate
from rlhf_gym.commands.make_model import Args as MakeModelArgs
from rlhf_gym.commands.make_model import main as make_model
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.local_models import train_byte_level_bpe
from rlhf_gym.tasks import load_task, world_of

RESPONSE = "espresso , beer , lemonade , tea ."


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("byo") / "llama_bpe"
    make_model(MakeModelArgs(task="lists", out_dir=str(out), vocab_size=320, n_texts=2000, width=32, layers=1))
    return out


def test_make_model_saves_a_llama_on_a_byte_level_bpe(llama_dir):
    model = AutoModelForCausalLM.from_pretrained(llama_dir)
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    assert isinstance(model, LlamaForCausalLM) and model.config.num_key_value_heads == 2
    assert len(tokenizer) == model.config.vocab_size == 320
    ids = tokenizer(" " + RESPONSE, add_special_tokens=False)["input_ids"]
    # a subword tokenizer: more tokens than words, and the text comes back as it was written
    assert len(ids) > len(RESPONSE.split())
    assert tokenizer.decode([*ids, tokenizer.eos_token_id], skip_special_tokens=True).strip() == RESPONSE
    # no special token is added on encoding; the chat template writes BOS and the turns
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                         tokenize=False)
    assert chat == "<s><|user|> hi <|assistant|> yo</s> "


def test_make_model_refuses_to_overwrite(llama_dir):
    with pytest.raises(ConfigError, match="not empty; pass --overwrite"):
        MakeModelArgs(out_dir=str(llama_dir))
    with pytest.raises(ConfigError, match="--vocab-size 100: a byte-level BPE needs at least 262"):
        train_byte_level_bpe(["a b c"], 100)


def step_through(env, prompt_index: int, token_ids: list[int]) -> dict:
    """Reset ``env`` to one prompt, act ``token_ids`` (ending in EOS), and return the final info."""
    env.reset(seed=0, options={"prompt_index": prompt_index})
    for action in token_ids:
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info
    raise AssertionError("the episode did not end")


def test_same_text_same_gold_and_proxy_from_word_level_and_bpe_policies(llama_dir):
    word_env = gym.make("RLHF-Lists-v0").unwrapped
    bpe_env = gym.make("RLHF-Lists-v0", ref_model=str(llama_dir)).unwrapped
    assert word_env.prompts == bpe_env.prompts  # the task's prompts, re-encoded with the policy's tokenizer
    assert bpe_env.prompt_ids[0] == bpe_env.tokenizer(bpe_env.prompts[0], add_special_tokens=False)["input_ids"]
    results = []
    for env in (word_env, bpe_env):
        tokenizer = env.tokenizer
        ids = tokenizer(" " + RESPONSE, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        results.append(step_through(env, 3, ids))
    word, bpe = results
    assert word["response_text"] == bpe["response_text"] == RESPONSE
    assert word["response_length"] < bpe["response_length"]  # the budget and the KL are in the policy's tokens
    assert word["gold_reward"] == bpe["gold_reward"] == word_env.task.gold_reward(word["prompt"], RESPONSE)
    assert word["proxy_reward"] == bpe["proxy_reward"]
    assert word["well_formed"] and bpe["well_formed"]


def test_response_budget_is_converted_to_the_policy_tokens(llama_dir):
    task = load_task("lists")
    assert task.response_budget(task.load_tokenizer()) == task.max_new_tokens == 24
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    rng = random.Random(0)
    responses = [world_of("lists").sample_text(rng)[1] for _ in range(512)]
    tokens = sum(len(tokenizer(" " + r, add_special_tokens=False)["input_ids"]) for r in responses)
    words = sum(len(r.split()) for r in responses)
    expected = math.ceil(24 * tokens / words)
    assert expected > 24
    assert task.response_budget(tokenizer) == expected
    assert gym.make("RLHF-Lists-v0", ref_model=str(llama_dir)).unwrapped.max_new_tokens == expected
    # a budget given explicitly is in the policy's tokens, as it is
    assert gym.make("RLHF-Lists-v0", ref_model=str(llama_dir), max_new_tokens=30).unwrapped.max_new_tokens == 30


def test_evaluate_any_model_with_and_without_a_reference(llama_dir, tmp_path):
    alone = evaluate(EvaluateArgs(model=str(llama_dir), env_id="RLHF-Lists-v0", n_eval_prompts=8,
                                  out=str(tmp_path / "alone.json")))
    assert alone["metrics"]["kl"] is None and alone["metrics"]["kl_sem"] is None
    assert alone["headline"]["value"] is None and alone["headline"]["over_budget"] is None
    assert alone["metrics"]["gold_reward"] is not None and alone["max_new_tokens"] > 24
    # against itself as the reference the KL of its own samples is 0 (up to the sampling and scoring passes' rounding)
    itself = evaluate(EvaluateArgs(model=str(llama_dir), reference=str(llama_dir), env_id="RLHF-Lists-v0",
                                   n_eval_prompts=8))
    assert abs(itself["metrics"]["kl"]) < 1e-3
    assert itself["metrics"]["gold_reward"] == alone["metrics"]["gold_reward"]  # the same seeded samples


def test_evaluate_model_on_a_suite(llama_dir, capsys):
    result = evaluate(EvaluateArgs(model=str(llama_dir), suite="RLHF-Suite-v0", n_eval_prompts=4))
    assert [row["env_id"] for row in result["rows"]] == ["RLHF-v0", "RLHF-Lists-v0", "RLHF-Facts-v0", "RLHF-Describe-v0"]
    assert all(row["metrics"]["kl"] is None for row in result["rows"])
    assert "| RLHF-Lists-v0 |" in capsys.readouterr().out


def test_evaluate_model_options_are_checked(llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        EvaluateArgs(model=str(llama_dir), agent=str(llama_dir))
    with pytest.raises(ConfigError, match="--reference applies to --model"):
        EvaluateArgs(reference=str(llama_dir))
    with pytest.raises(MissingFileError, match="holds no model"):
        EvaluateArgs(model=str(tmp_path))
    with pytest.raises(ConfigError, match="--best-of-n"):
        EvaluateArgs(model=str(llama_dir), best_of_n=str(tmp_path / "curve.json"))


def test_responses_read_the_same_with_or_without_their_leading_space(llama_dir):
    # data files differ (TRL's convention gives completions a leading space, the task's comparisons none): the reward
    # model reads one text, and DPO's response ids are the ids the env's policy samples after the prompt
    from rlhf_gym.agents.offline import tokenize_response
    from rlhf_gym.reward_model import join_text

    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    prompt = "list four drinks but not tea :"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert join_text(prompt, " " + RESPONSE) == join_text(prompt, RESPONSE) == f"{prompt} {RESPONSE}"
    sampled = tokenizer(" " + RESPONSE, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    for given in (RESPONSE, " " + RESPONSE):
        assert tokenize_response(tokenizer, given, None, prompt, prompt_ids) == sampled
    assert tokenizer.convert_ids_to_tokens(sampled[0]).startswith("Ġ")  # a word after a space, as the policy writes it
    assert tokenize_response(tokenizer, "", None, prompt, prompt_ids) == [tokenizer.eos_token_id]


def test_make_model_checks_its_output_and_heads(llama_dir, tmp_path):
    from rlhf_gym.local_models import key_value_heads

    assert [key_value_heads(h) for h in (1, 2, 4, 5, 6, 8)] == [1, 1, 2, 1, 3, 4]  # divisors of h, at most h / 2
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        MakeModelArgs(out_dir=str(tmp_path / "file"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no model"):
        MakeModelArgs(out_dir=str(tmp_path / "notes"), overwrite=True)


def test_budget_of_a_task_without_a_built_policy_stays_the_task_s(tmp_path):
    task = load_task("lists", artifacts_dir=tmp_path)
    assert task.response_budget(AutoTokenizer.from_pretrained(load_task("lists").policy_dir)) == 24


def test_evaluate_names_the_option_of_a_model_without_a_tokenizer(llama_dir, tmp_path):
    from rlhf_gym.errors import RLHFGymError

    AutoModelForCausalLM.from_pretrained(llama_dir).save_pretrained(tmp_path / "weights_only")
    with pytest.raises(RLHFGymError, match="--model's tokenizer"):
        evaluate(EvaluateArgs(model=str(tmp_path / "weights_only"), reference=str(llama_dir), env_id="RLHF-Lists-v0",
                              n_eval_prompts=4))
    with pytest.raises(RLHFGymError, match=r"^--model: "):
        evaluate(EvaluateArgs(model=str(tmp_path / "weights_only"), env_id="RLHF-Lists-v0", n_eval_prompts=4))
