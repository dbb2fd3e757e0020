"""RLOO and GRPO: advantages and losses by hand, the rollout they share with TokenPPO, save/load, learning."""

import math

import numpy as np
import pytest
import torch

from rlhf_gym.agents import GRPO, RLOO, RLHFVecEnv, TokenPPO
from rlhf_gym.agents.buffer import SequenceSamples
from rlhf_gym.agents.grpo import grpo_advantages, k3_kl
from rlhf_gym.agents.rloo import rloo_advantages
from rlhf_gym.errors import ConfigError
from rlhf_gym.scoring import reference_logprobs
from tests.helpers import NoCallback


def word_count(prompts, responses):
    return [0.1 * len(r.split()) for r in responses]


def env(task, num_envs=8, group_size=4, **kwargs):
    return RLHFVecEnv(num_envs=num_envs, group_size=group_size, task=task, max_new_tokens=6, **kwargs)


# ------------------------------------------------------------------------------------------ advantages
def test_rloo_advantage_is_reward_minus_the_mean_of_the_others():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0])
    # group 1: the others' means are 11/3, 10/3, 9/3, 6/3; group 2: 4/3, 4/3, 4/3, 0
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 3, 6 - 2, -4 / 3, -4 / 3, -4 / 3, 4]
    np.testing.assert_allclose(rloo_advantages(rewards, 4), expected, rtol=1e-6)
    # each advantage is k/(k-1) times the reward minus its group's mean, so a group's advantages sum to zero
    np.testing.assert_allclose(rloo_advantages(rewards, 4).view(2, 4).sum(1), [0, 0], atol=1e-6)


def test_grpo_advantage_is_normalised_within_the_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # the unbiased std of group 1 (mean 3), as torch.std and TRL take it
    expected = [-2 / (std + 1e-4), -1 / (std + 1e-4), 0, 3 / (std + 1e-4), 0, 0, 0, 0]  # a tied group gives 0
    np.testing.assert_allclose(grpo_advantages(rewards, 4, "group"), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grpo_advantages(rewards, 4, "none"), [-2, -1, 0, 3, 0, 0, 0, 0], atol=1e-6)
    batch_std = float(rewards.std())
    np.testing.assert_allclose(grpo_advantages(rewards, 4, "batch"), np.array([-2, -1, 0, 3, 0, 0, 0, 0]) / (batch_std + 1e-4),
                               rtol=1e-6, atol=1e-7)


def test_k3_is_the_kl_estimator_by_hand():
    logprobs, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-2.0, -2.0, -0.1])
    expected = [math.exp(-1) + 1 - 1, 0.0, math.exp(0.4) - 0.4 - 1]
    np.testing.assert_allclose(k3_kl(logprobs, ref), expected, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------ losses
def samples(old_logprobs, advantages, mask, ref_logprobs=None):
    b, t = old_logprobs.shape
    zeros = torch.zeros(b, t)
    return SequenceSamples(torch.zeros(b, 1, dtype=torch.long), torch.ones(b, 1, dtype=torch.long), zeros.long(), mask,
                           old_logprobs, zeros, advantages[:, None] * mask, zeros, None, ref_logprobs)


def test_rloo_loss_is_reinforce_on_policy_and_clips_the_sequence_ratio(task):
    agent = RLOO("TransformerPolicy", env(task, reward_model=word_count), device="cpu")
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    old = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    advantages = torch.tensor([2.0, -1.0])
    logprobs = old.clone().requires_grad_(True)
    loss, stats = agent.policy_loss(samples(old, advantages, mask), logprobs, 0.2)
    assert loss.item() == pytest.approx(-0.5)  # ratio 1: -mean(A)
    loss.backward()
    # REINFORCE: d loss / d log pi(y_t) = -A_i / B for every real token of response i, 0 on padding
    np.testing.assert_allclose(logprobs.grad, [[-1.0, -1.0, 0.0], [0.5, 0.5, 0.5]])
    # the ratio is over the whole sequence: +0.15 on each of two tokens is e^0.3 > 1.2, clipped for A > 0
    logprobs = (old + torch.tensor([[0.15, 0.15, 5.0], [0.0, 0.0, 0.0]])).requires_grad_(True)
    loss, stats = agent.policy_loss(samples(old, advantages, mask), logprobs, 0.2)
    assert loss.item() == pytest.approx((-2.0 * 1.2 + 1.0) / 2, rel=1e-5)  # padding's +5 is not part of the ratio
    assert stats["clip_fraction"] == 0.5
    loss.backward()
    assert logprobs.grad[0].abs().sum() == 0


def test_grpo_loss_adds_the_k3_kl_and_aggregates_by_tokens_or_responses(task):
    grpo = GRPO("TransformerPolicy", env(task, reward_model=word_count), beta=0.5, device="cpu")
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    old = torch.tensor([[-1.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-2.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    advantages = torch.tensor([1.0, -1.0])
    batch = samples(old, advantages, mask, ref)
    k3 = math.exp(-1) + 1 - 1  # response 0's only token: log pi_ref - log pi = -1; response 1 matches the reference
    per_token = [[-1.0 + 0.5 * k3], [1.0, 1.0, 1.0]]
    grpo.rollout_buffer.response_mask[:2, :5] = True  # a rollout of 10 response tokens, of which this minibatch has 4
    loss, stats = grpo.policy_loss(batch, old.clone(), 0.2)
    assert loss.item() == pytest.approx((per_token[0][0] + 3.0) / 10, rel=1e-6)  # "dapo": over the rollout's tokens
    assert stats["kl"] == pytest.approx(k3 / 4, rel=1e-6)
    grpo.loss_type = "grpo"
    loss, _ = grpo.policy_loss(batch, old.clone(), 0.2)
    assert loss.item() == pytest.approx((per_token[0][0] + 1.0) / 2, rel=1e-6)  # mean of the responses' means


# ------------------------------------------------------------------------------------- the shared rollout
def test_grpo_rollout_groups_prompts_and_takes_reference_log_probs_from_the_env(task):
    grpo = GRPO("TransformerPolicy", env(task, reward_model=word_count), seed=0, device="cpu")
    grpo._setup_learn(100, None)
    grpo.collect_rollouts(grpo.env, NoCallback(), grpo.rollout_buffer, grpo.n_steps)
    buffer = grpo.rollout_buffer
    assert torch.equal(buffer.queries[0], buffer.queries[3]) and torch.equal(buffer.queries[4], buffer.queries[7])
    batched = grpo.batched_env
    contexts = [torch.cat([q[m.bool()], r[a]]) for q, m, r, a in zip(buffer.queries, buffer.query_mask, buffer.responses,
                                                                    buffer.response_mask)]
    width = max(len(c) for c in contexts) + 1
    padded = torch.stack([torch.nn.functional.pad(c, (0, width - len(c)), value=batched.pad_token_id) for c in contexts])
    expected = reference_logprobs(batched.ref_model, padded, buffer.query_mask.sum(1), buffer.responses.shape[1])
    mask = buffer.response_mask
    torch.testing.assert_close(buffer.ref_logprobs[mask], expected[mask], atol=1e-4, rtol=0)
    assert (buffer.ref_logprobs[~mask] == 0).all()
    rewards = torch.tensor([0.1 * len(i["response_text"].split()) for i in grpo.last_rollout_infos])
    torch.testing.assert_close(buffer.advantages[:, 0], grpo_advantages(rewards, 4))


def test_rloo_rewards_are_the_env_returns_with_the_kl(task):
    rloo = RLOO("TransformerPolicy", env(task, reward_model=word_count, beta=0.3), seed=0, device="cpu")
    rloo._setup_learn(100, None)
    rloo.collect_rollouts(rloo.env, NoCallback(), rloo.rollout_buffer, rloo.n_steps)
    infos = rloo.last_rollout_infos  # one per row, in row order
    returns = torch.tensor([i["proxy_reward"] - 0.3 * i["kl"] for i in infos])
    torch.testing.assert_close(rloo.rollout_buffer.advantages[:, 0], rloo_advantages(returns, 4), atol=1e-5, rtol=0)


def test_group_size_is_checked(task):
    with pytest.raises(ConfigError, match="at least 2 responses per prompt"):
        RLOO("TransformerPolicy", env(task, group_size=1, reward_model=word_count), device="cpu")
    with pytest.raises(ConfigError, match="group_size=2 but the env samples groups of 4"):
        GRPO("TransformerPolicy", env(task, reward_model=word_count), group_size=2, device="cpu")
    with pytest.raises(ConfigError, match="loss_type"):
        GRPO("TransformerPolicy", env(task, reward_model=word_count), loss_type="mean", device="cpu")


def test_save_load_keeps_the_algorithm_and_its_settings(task, tmp_path):
    grpo = GRPO("TransformerPolicy", env(task, reward_model=word_count), beta=0.2, loss_type="grpo", seed=0, device="cpu")
    grpo.learn(total_responses=8)
    grpo.save(tmp_path / "grpo.zip")
    loaded = GRPO.load(tmp_path / "grpo.zip", env=env(task, reward_model=word_count), device="cpu")
    assert (loaded.kl_coef, loaded.loss_type, loaded.group_size, loaded.num_responses) == (0.2, "grpo", 4, 8)
    for a, b in zip(grpo.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(a, b)
    loaded.learn(total_responses=16, reset_num_timesteps=False)
    assert loaded.n_rollouts == 2


@pytest.mark.slow
@pytest.mark.parametrize("algo", [RLOO, GRPO])
def test_proxy_reward_rises_with_a_fixed_seed(task, algo):
    agent = algo("TransformerPolicy", RLHFVecEnv(num_envs=32, group_size=4, task=task, max_new_tokens=16, beta=0.1),
                 batch_size=8, n_epochs=2, seed=1, device="cpu", learning_rate=2e-3)
    proxies = []
    for iteration in range(1, 11):
        agent.learn(total_responses=32 * iteration, reset_num_timesteps=False)
        proxies.append(np.mean([i["proxy_reward"] for i in agent.last_rollout_infos]))
    # measured with this seed and one torch thread, first two rollouts -> last two: RLOO 0.14 -> 1.30, GRPO -0.03 -> 0.79.
    # At this learning rate a trajectory is chaotic (another thread count rounds differently, and seed 0 then once
    # collapsed at 2 threads): the check compares pairs of rollouts, with room.
    assert np.mean(proxies[-2:]) > np.mean(proxies[:2]) + 0.5, proxies


def test_token_ppo_and_the_critic_free_agents_share_one_rollout():
    assert RLOO.collect_rollouts is TokenPPO.collect_rollouts and GRPO.collect_rollouts is TokenPPO.collect_rollouts
