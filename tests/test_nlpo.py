"""NLPO: top-p masks by hand, the refreshed masking model, MaskablePPO and masked TokenPPO on RLHF-v0."""

import copy

import numpy as np
import pytest
import torch
from helpers import NoCallback
from sb3_contrib import MaskablePPO

from rlhf_gym.agents import MaskableTransformerPolicy, TokenPPO
from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.envs import RLHFEnv
from rlhf_gym.masking import apply_mask, top_p_mask


def test_top_p_mask_by_hand():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    # sorted: 0.5, 0.3, 0.15, 0.05; mass before each: 0, 0.5, 0.8, 0.95 -> keep while < 0.8
    assert top_p_mask(logits, 0.8).tolist() == [[False, True, False, True]]
    assert top_p_mask(logits, 0.81).tolist() == [[False, True, True, True]]
    assert top_p_mask(logits, 0.8, min_tokens=3).tolist() == [[False, True, True, True]]
    assert top_p_mask(logits, 0.99, top_k=1).tolist() == [[False, True, False, False]]
    assert top_p_mask(logits, 0.5, always_allowed=[0]).tolist() == [[True, True, False, False]]
    masked = torch.softmax(apply_mask(logits, top_p_mask(logits, 0.8)), -1)
    torch.testing.assert_close(masked, torch.tensor([[0.0, 0.625, 0.0, 0.375]]))


def expected_mask(model, env):
    state = env._episodes
    length = int(state.prompt_lens[0] + state.response_lens[0])
    ids = torch.as_tensor(state.contexts[:, :length])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, -1]
    return top_p_mask(logits, 0.5, always_allowed=[env.stop_token_id])[0].numpy()


def test_refreshed_mask_model_generates_the_masks(task, ref_model):
    env = RLHFEnv(task=task, mask_top_p=0.5)
    env.reset(seed=0)
    before = env.action_masks()
    np.testing.assert_array_equal(before, expected_mask(ref_model, env))
    policy = copy.deepcopy(ref_model)
    with torch.no_grad():
        policy.lm_head.weight.mul_(-1.0)  # a very different policy
    env.refresh_mask_model(policy)
    after = env.action_masks()
    np.testing.assert_array_equal(after, expected_mask(policy, env))
    assert not np.array_equal(before, after)
    frozen = RLHFEnv(task=task, mask_top_p=0.5, mask_model="reference")
    with pytest.raises(RuntimeError, match="not a refreshable copy"):
        frozen.refresh_mask_model(policy)


def test_maskable_ppo_trains_with_the_transformer_policy(task):
    env = RLHFEnv(task=task, mask_top_p=0.9, max_new_tokens=6)
    model = MaskablePPO(MaskableTransformerPolicy, env, n_steps=16, batch_size=8, n_epochs=1, seed=0, device="cpu",
                        policy_kwargs={"model_name_or_path": str(task.policy_dir)})
    model.learn(32)
    obs, _ = env.reset(seed=1)
    masks = env.action_masks()
    action, _ = model.predict(obs, action_masks=masks, deterministic=True)
    assert masks[int(action)]


def test_token_ppo_samples_inside_the_masks_and_refreshes_them(task):
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, mask_top_p=0.8)
    agent = TokenPPO("TransformerPolicy", env, use_action_masks=True, mask_refresh_every=1, batch_size=4, n_epochs=1,
                     seed=0, device="cpu", learning_rate=1e-3)
    agent.learn(8 * 10, progress_bar=False)  # one rollout and one update: the policy has moved
    buffer = agent.rollout_buffer
    agent.collect_rollouts(agent.env, NoCallback(), buffer, agent.n_steps)  # refreshes the masking model first
    masking = env.batched_env._setup.mask.model
    for name, value in agent.policy.lm.state_dict().items():
        torch.testing.assert_close(masking.state_dict()[name], value)
    taken = buffer.action_masks.gather(-1, buffer.responses[:, :, None]).squeeze(-1)
    assert taken[buffer.response_mask].all()
    assert (buffer.action_masks.sum(-1)[buffer.response_mask] < env.action_space.n).any()
    with torch.no_grad():
        logprobs, _, _ = agent.policy.evaluate_sequences(buffer.queries, buffer.query_mask, buffer.responses,
                                                         buffer.response_mask, buffer.action_masks)
    mask = buffer.response_mask
    torch.testing.assert_close(logprobs[mask], buffer.logprobs[mask], atol=1e-5, rtol=0)

