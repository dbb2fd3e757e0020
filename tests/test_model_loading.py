"""Loading models and tokenizers: the wrong kind of model, a tokenizer with other ids, missing paths, absent devices."""

import copy
import json
import shutil

import gymnasium as gym
import huggingface_hub
import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer, GPT2LMHeadModel

import rlhf_gym  # noqa: F401  (registers the ids)
from rlhf_gym.agents.policy import load_causal_lm
from rlhf_gym.envs import RLHFEnv
from helpers import cli_error
from rlhf_gym.cli import run_command
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.generation import generate_texts
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.tokenizers import check_same_tokenizer
from rlhf_gym.utils import load_model


def swapped_tokenizer_dir(task, tokenizer, directory):
    """The task's policy with a tokenizer of the same size in which the ids of two words are exchanged."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]
    shutil.copytree(task.policy_dir, directory)
    Tokenizer.from_str(json.dumps(data)).save(str(directory / "tokenizer.json"))
    return directory


# ------------------------------------------------------------------------------ the wrong kind of model
def test_a_policy_directory_is_refused_as_a_reward_model(task):
    expected = rf"{task.policy_dir}.* is a GPT2LMHeadModel \(a policy\), not a sequence classifier \(a reward model\)"
    with pytest.raises(ConfigError, match=expected):
        RewardModel.from_pretrained(task.policy_dir)
    with pytest.raises(ConfigError, match=expected):
        RLHFEnv(task=task, reward_model=str(task.policy_dir))  # what train_agent's --reward-model builds


def test_a_reward_model_is_refused_as_a_policy(task, tmp_path, capsys):
    expected = rf"{task.reward_dir}.* is a GPT2ForSequenceClassification \(a reward model\), not a causal language model"
    with pytest.raises(ConfigError, match=expected):
        RLHFEnv(task=task, ref_model=str(task.reward_dir))
    with pytest.raises(ConfigError, match=expected):
        load_causal_lm(str(task.reward_dir))  # TokenPPO's explicit policy
    line = cli_error(capsys, "collect", ["--policy", task.reward_dir, "--out", tmp_path / "p.jsonl", "--n-pairs", 2])
    assert "--policy" in line and str(task.reward_dir) in line and "GPT2ForSequenceClassification" in line
    assert not (tmp_path / "p.jsonl").exists()
    line = cli_error(capsys, "evaluate", ["--agent", task.reward_dir, "--out", tmp_path / "eval.json"])
    assert "--agent" in line and "GPT2ForSequenceClassification" in line


def test_a_reward_model_may_start_from_a_causal_lm_only_when_asked(task, tmp_path):
    model = load_model(task.policy_dir, "reward_model", "--model", from_base=True)  # train_rm --model: a new score head
    assert type(model).__name__ == "GPT2ForSequenceClassification" and model.config.num_labels == 1
    # a checkpoint that claims to be a reward model but lacks its score head would start from random weights
    torch.manual_seed(0)
    GPT2LMHeadModel(gpt2_config(task.load_tokenizer(), 8, 1, 2)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2ForSequenceClassification"]}))
    with pytest.raises(ConfigError, match=rf"{tmp_path}.* lacks weights .*score\.weight.* randomly initialised"):
        load_model(tmp_path, "reward_model", "the reward model")


# ------------------------------------------------------------------------------ tokenizers with other ids
def test_a_tokenizer_with_the_same_size_but_other_ids_is_refused_by_the_env(task, tokenizer, tmp_path):
    directory = swapped_tokenizer_dir(task, tokenizer, tmp_path / "swapped")
    swapped = AutoTokenizer.from_pretrained(directory)
    assert len(swapped) == len(tokenizer) and swapped.get_vocab() != tokenizer.get_vocab()
    message = r"the tokenizer of the tokenizer= argument differs from the reference model's"
    with pytest.raises(ConfigError, match=message + r" .*'bad'"):
        RLHFEnv(task=task, tokenizer=swapped)  # the task's reference policy with another tokenizer
    with pytest.raises(ConfigError, match=message):
        RLHFEnv(task=task, ref_model=str(task.policy_dir), tokenizer=swapped)


def test_the_special_tokens_are_compared_too(tokenizer):
    other = copy.deepcopy(tokenizer)
    other.eos_token = "<unk>"  # same vocabulary, another end-of-sequence token
    assert other.get_vocab() == tokenizer.get_vocab()
    with pytest.raises(ConfigError, match=r"eos_token.*'<unk>'.*'<eos>'"):
        check_same_tokenizer(other, tokenizer, "the policy", "the reference")
    check_same_tokenizer(copy.deepcopy(tokenizer), tokenizer, "the policy", "the reference")


def test_evaluate_refuses_an_agent_whose_tokenizer_has_other_ids(task, tokenizer, tmp_path, capsys):
    directory = swapped_tokenizer_dir(task, tokenizer, tmp_path / "swapped")
    line = cli_error(capsys, "evaluate", ["--agent", directory, "--out", tmp_path / "eval.json"])
    assert "tokenizer of --agent" in line and "differs" in line


# ------------------------------------------------------------------------------ missing paths, absent devices
def test_a_missing_model_path_and_an_absent_device_are_one_clear_error(task, monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda' is not available on this machine .*use cpu or auto"):
            gym.make("RLHF-v0", device="cuda")
    with pytest.raises(MissingFileError, match=r"cannot load the reference model from 'does/not/exist': no such file"):
        gym.make("RLHF-v0", ref_model="does/not/exist")
    with pytest.raises(MissingFileError, match=r"cannot load a reward model from 'does/not/exist': no such file"):
        gym.make("RLHF-v0", reward_model="does/not/exist")
    # a relative path that could also be a hub id: the message says it is no local directory either
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingFileError, match=r"'does_not/exist': no such local file or directory, and not loadable "
                                               r"from the Hugging Face hub"):
        gym.make("RLHF-v0", ref_model="does_not/exist")


# ------------------------------------------------------------------------------ the reward model's context
def test_the_reward_model_truncates_to_its_own_context_keeping_the_end(reward_model):
    long = " ".join(["the food was good ."] * 20)  # 100 words: more than the shipped reward model's 64 positions
    assert reward_model.max_length == reward_model.model.config.n_positions == 64
    kept = " ".join(f"{long} great !".split()[-64:])  # the reviews tokenizer has one token per word
    assert reward_model.score([long], ["great !"])[0] == pytest.approx(reward_model.score([kept], [""])[0], abs=1e-5)
    with pytest.raises(ConfigError, match=r"max_length=128 exceeds the reward model's context of 64 positions"):
        RewardModel(reward_model.model, reward_model.tokenizer, max_length=128)


def test_train_rm_accepts_comparisons_longer_than_the_context(tmp_path, capsys):
    long = " ".join(["the food was good ."] * 20)
    records = [{"prompt": long, "chosen": f"great {'!' * i}", "rejected": "bad ."} for i in range(4)]
    (tmp_path / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run_command("train-rm", ["--data", str(tmp_path / "prefs.jsonl"), "--out-dir", str(tmp_path / "rm"),
                             "--epochs", "1", "--eval-fraction", "0.5"])
    assert (tmp_path / "rm" / "config.json").exists()


def test_generation_refuses_a_prompt_longer_than_the_policys_context(ref_model, tokenizer):
    long = " ".join(["the food was"] * 20)  # 60 tokens: with 24 new tokens, more than the policy's 64 positions
    with pytest.raises(ConfigError, match=r"prompt 1 has 60 tokens; with max_new_tokens=24 it needs 84 of the policy's 64"):
        generate_texts(ref_model, tokenizer, ["the food", long], max_new_tokens=24)
    assert len(generate_texts(ref_model, tokenizer, ["the food", long], max_new_tokens=4)) == 2
