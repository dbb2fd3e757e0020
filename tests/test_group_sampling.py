"""Group sampling in the batched env (k rows share a prompt, groups reset together) and the reference log-probs
that the env's scoring pass exposes per token."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlhf_gym  # noqa: F401
from rlhf_gym.envs import RLHFVectorEnv
from rlhf_gym.errors import ConfigError


def proxy(prompts, responses):
    return [len(r.split()) * 0.1 for r in responses]


def make(task, ref_model, tokenizer, num_envs=6, group_size=3, **extra):
    return RLHFVectorEnv(num_envs=num_envs, group_size=group_size, task=task, ref_model=ref_model, tokenizer=tokenizer,
                         reward_model=proxy, **extra)


def test_reset_puts_one_prompt_on_each_group(task, ref_model, tokenizer):
    envs = make(task, ref_model, tokenizer, num_envs=12, group_size=4)
    seen = set()
    for seed in range(3):
        _, info = envs.reset(seed=seed)
        groups = info["prompt_index"].reshape(3, 4)
        assert (groups == groups[:, :1]).all(), groups
        seen.update(groups[:, 0].tolist())
    assert len(seen) > 3  # groups draw their prompts independently


def test_make_vec_passes_group_size(task):
    envs = gym.make_vec("RLHF-v0", num_envs=4, vectorization_mode="vector_entry_point", group_size=2)
    _, info = envs.reset(seed=0)
    assert envs.unwrapped.group_size == 2
    assert info["prompt_index"][0] == info["prompt_index"][1] and info["prompt_index"][2] == info["prompt_index"][3]


def test_group_size_must_divide_num_envs(task, ref_model, tokenizer):
    with pytest.raises(ConfigError, match="divides num_envs"):
        make(task, ref_model, tokenizer, num_envs=6, group_size=4)
    with pytest.raises(ConfigError, match="group_size"):
        make(task, ref_model, tokenizer, num_envs=6, group_size=0)


def test_reset_mask_must_cover_whole_groups(task, ref_model, tokenizer):
    envs = make(task, ref_model, tokenizer, autoreset_mode="disabled")
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="whole groups"):
        envs.reset(options={"reset_mask": np.array([True, False, False, False, False, False])})
    with pytest.raises(ValueError, match="whole groups"):  # three rows, but straddling two groups
        envs.reset(options={"reset_mask": np.array([False, True, True, True, False, False])})
    _, info = envs.reset(options={"reset_mask": np.array([False, False, False, True, True, True])})
    assert len(set(info["prompt_index"][3:].tolist())) == 1


def test_next_step_autoreset_waits_for_the_whole_group(task, ref_model, tokenizer):
    envs = make(task, ref_model, tokenizer, num_envs=4, group_size=2)
    envs.reset(seed=0)
    eos, great = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("great")
    first_prompts = envs._episodes.prompt_index.copy()
    _, _, terminated, _, _ = envs.step([eos, great, great, great])
    assert terminated.tolist() == [True, False, False, False]
    # row 0 has finished but row 1 of its group has not: row 0 waits (no reward, no restart, its action ignored)
    _, rewards, terminated, _, _ = envs.step([great, great, great, great])
    assert rewards[0] == 0.0 and not terminated[0] and envs._episodes.done[0]
    assert int(envs._episodes.response_lens[0]) == 1
    _, _, terminated, _, _ = envs.step([great, eos, great, great])  # the group's last row finishes
    assert terminated.tolist() == [False, True, False, False]
    envs.step([great, great, great, great])  # now the group restarts, both rows on one new prompt
    assert envs._episodes.response_lens[:2].tolist() == [0, 0] and not envs._episodes.done[:2].any()
    assert envs._episodes.prompt_index[0] == envs._episodes.prompt_index[1]
    assert envs._episodes.prompt_index[2:].tolist() == first_prompts[2:].tolist()  # the other group goes on


def test_scoring_exposes_the_reference_log_prob_of_every_token(task, ref_model, tokenizer):
    envs = make(task, ref_model, tokenizer, num_envs=2, group_size=1, autoreset_mode="disabled")
    envs.reset(seed=0)
    words = ["the", "food", "was", "great"]
    tokens = [tokenizer.convert_tokens_to_ids(w) for w in words] + [tokenizer.eos_token_id]
    for token in tokens:
        _, _, _, _, info = envs.step([token, token])
    ref = info["ref_token_logprobs"][0]
    assert ref.shape == (len(tokens),) and info["response_length"][0] == len(tokens)
    assert ref.sum() == pytest.approx(info["ref_logprob"][0], abs=1e-4)
    # independently: one forward of the reference over prompt + response, log-softmax at each predicting position
    prompt = envs.prompt_ids[envs._episodes.prompt_index[0]]
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logp = torch.log_softmax(ref_model(input_ids=ids).logits[0].float(), -1)
    expected = [logp[len(prompt) - 1 + t, token].item() for t, token in enumerate(tokens)]
    np.testing.assert_allclose(ref, expected, atol=1e-4)
