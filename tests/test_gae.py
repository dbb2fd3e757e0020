"""GAE and advantage whitening inside SequenceRolloutBuffer, by hand: gamma and lambda in their places, padding
(tokens after a response ended) never changes an advantage, a return, or the whitening's mean and std."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlhf_gym.agents import SequenceRolloutBuffer, compute_gae
from rlhf_gym.agents.buffer import masked_mean, masked_whiten

GAMMA, LAMBDA = 0.9, 0.5
LENGTHS = [3, 1, 2]
REWARDS = [[0.1, -0.2, 1.0], [2.0], [0.0, 3.0]]  # dense, as with per-token KL
VALUES = [[0.5, 0.2, 0.4], [1.0], [-0.5, 0.5]]
# A_t = delta_t + gamma * lambda * A_{t+1}, delta_t = r_t + gamma * V_{t+1} - V_t, with V = A = 0 after the last token:
#   row 0: A_2 = 1.0 - 0.4 = 0.6; A_1 = (-0.2 + 0.9 * 0.4 - 0.2) + 0.45 * 0.6 = 0.23;
#          A_0 = (0.1 + 0.9 * 0.2 - 0.5) + 0.45 * 0.23 = -0.1165
#   row 1: A_0 = 2.0 - 1.0 = 1.0
#   row 2: A_1 = 3.0 - 0.5 = 2.5; A_0 = (0.0 + 0.9 * 0.5 + 0.5) + 0.45 * 2.5 = 2.075
ADVANTAGES = [[-0.1165, 0.23, 0.6], [1.0], [2.075, 2.5]]


def step(table, t, pad):
    """Column ``t`` of a ragged table, ``pad`` for the rows that already ended."""
    return torch.tensor([row[t] if t < len(row) else pad for row in table])


def rollout(padding_reward=0.0, padding_value=0.0, budget=4):
    """The rollout above in a buffer; ``padding_*`` are what the rollout passes for rows that already ended."""
    obs_space = spaces.Dict({"input_ids": spaces.Box(0, 99, (4,), dtype=int)})
    buffer = SequenceRolloutBuffer(budget, obs_space, spaces.Discrete(100), device="cpu", gamma=GAMMA, gae_lambda=LAMBDA,
                                   n_envs=3)
    buffer.start(torch.tensor([[1, 2], [0, 3], [4, 5]]), torch.tensor([[1, 1], [0, 1], [1, 1]]))
    for t in range(max(LENGTHS)):
        alive = torch.tensor([t < n for n in LENGTHS])
        tokens = torch.tensor([10 * (row + 1) + t for row in range(3)])  # token 10 * (row + 1) starts row `row`
        buffer.add(tokens, alive, torch.full((3,), -1.0), step(VALUES, t, padding_value), step(REWARDS, t, padding_reward))
    buffer.compute_returns_and_advantage()
    return buffer


def padded(table):
    return torch.tensor([row + [0.0] * (4 - len(row)) for row in table])


def test_gae_and_returns_by_hand():
    buffer = rollout()
    torch.testing.assert_close(buffer.advantages, padded(ADVANTAGES))
    returns = [[a + v for a, v in zip(ra, rv)] for ra, rv in zip(ADVANTAGES, VALUES)]
    torch.testing.assert_close(buffer.returns, padded(returns))


def test_padding_changes_nothing():
    buffer = rollout(padding_reward=7.0, padding_value=9.0, budget=6)
    torch.testing.assert_close(buffer.advantages[:, :4], padded(ADVANTAGES))
    assert not buffer.advantages[:, 4:].any() and not buffer.returns[:, 4:].any()
    assert not buffer.values[~buffer.response_mask].any()  # the values of ended rows are stored as 0


def advantages_by_row(buffer, normalize):
    """The advantages ``get`` yields, one minibatch per response, keyed by the response's row."""
    rows = {}
    for sample in buffer.get(1, torch.Generator().manual_seed(0), normalize_advantage=normalize):
        row = int(sample.responses[0, 0]) // 10 - 1
        assert sample.advantages.shape == (1, LENGTHS[row])  # trimmed to the response
        rows[row] = sample.advantages[0].tolist()
    return rows


@pytest.mark.parametrize("padding_reward", [0.0, 50.0])
def test_whitening_uses_only_the_valid_tokens(padding_reward):
    buffer = rollout(padding_reward=padding_reward, padding_value=-3.0, budget=8)
    live = np.concatenate(ADVANTAGES)
    mean, std = live.mean(), np.sqrt(live.var() + 1e-8)  # population std of the 6 real tokens only
    rows = advantages_by_row(buffer, normalize=True)
    for row, values in rows.items():
        np.testing.assert_allclose(values, (np.array(ADVANTAGES[row]) - mean) / std, atol=1e-5)
    whitened = np.concatenate([rows[r] for r in range(3)])
    assert abs(whitened.mean()) < 1e-6 and whitened.std() == pytest.approx(1.0, abs=1e-5)
    by_default = {int(b.responses[0, 0]) // 10 - 1: b.advantages[0].tolist()
                  for b in buffer.get(1, torch.Generator().manual_seed(0))}
    assert by_default == rows  # whitening is the default
    raw = advantages_by_row(buffer, normalize=False)
    for row in range(3):
        np.testing.assert_allclose(raw[row], ADVANTAGES[row], atol=1e-6)


def test_masked_statistics_edge_cases():
    x = torch.tensor([[2.0, 4.0, 100.0], [6.0, -100.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx(4.0)
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0  # nothing valid: 0, not NaN
    std = np.sqrt(8 / 3)  # population std of 2, 4, 6
    expected = torch.tensor([[-2 / std, 0.0, 0.0], [2 / std, 0.0, 0.0]], dtype=torch.float32)
    torch.testing.assert_close(masked_whiten(x, mask), expected, atol=1e-5, rtol=0)
    single = masked_whiten(torch.tensor([[5.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert single.tolist() == [[0.0, 0.0]]  # one valid token: the eps keeps it finite


def test_a_rollout_without_tokens_yields_one_empty_column():
    obs_space = spaces.Dict({"input_ids": spaces.Box(0, 99, (4,), dtype=int)})
    buffer = SequenceRolloutBuffer(3, obs_space, spaces.Discrete(100), device="cpu", n_envs=2)
    buffer.start(torch.tensor([[1, 2], [3, 4]]), torch.ones(2, 2, dtype=torch.long))
    buffer.compute_returns_and_advantage()
    (sample,) = buffer.get(2)
    assert sample.responses.shape == (2, 1) and not sample.response_mask.any() and not sample.advantages.any()


def test_gae_of_one_token_responses():
    advantages, returns = compute_gae(torch.tensor([[2.0], [1.0]]), torch.tensor([[0.5], [3.0]]),
                                      torch.tensor([[True], [False]]), GAMMA, LAMBDA)
    assert advantages.tolist() == [[1.5], [0.0]] and returns.tolist() == [[2.0], [0.0]]
