"""SequenceRolloutBuffer and GAE: values computed by hand, the SB3 buffer contract, minibatch trimming."""

import torch
from gymnasium import spaces

from rlhf_gym.agents import SequenceRolloutBuffer, SequenceSamples, compute_gae
from rlhf_gym.agents.buffer import masked_whiten


def test_gae_by_hand_with_masking_after_eos():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0], [1.0, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)  # row 0 ends at t=2, row 1 at t=1
    gamma, lam = 0.9, 0.5
    advantages, returns = compute_gae(rewards, values, mask, gamma, lam)
    # row 0: delta2 = 1 - 0.4 = 0.6; delta1 = 0 + 0.9*0.4 - 0.2 = 0.16; delta0 = 0.9*0.2 - 0.5 = -0.32
    a2 = 0.6
    a1 = 0.16 + gamma * lam * a2
    a0 = -0.32 + gamma * lam * a1
    # row 1: delta1 = 2 - 0.5 = 1.5; delta0 = 0.9*0.5 - 1 = -0.55
    b1 = 1.5
    b0 = -0.55 + gamma * lam * b1
    expected = torch.tensor([[a0, a1, a2, 0.0], [b0, b1, 0.0, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, (expected + values) * mask)


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(masked_whiten(x, mask), torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4, rtol=0)


def filled_buffer(with_action_masks=False):
    """Three responses of lengths 1, 3 and 2 in a budget of 4 tokens (vocabulary 5)."""
    obs_space = spaces.Dict({"input_ids": spaces.Box(0, 4, (6,), dtype=int)})
    buffer = SequenceRolloutBuffer(4, obs_space, spaces.Discrete(5), device="cpu", gamma=1.0, gae_lambda=1.0, n_envs=3,
                                   with_action_masks=with_action_masks)
    buffer.start(torch.tensor([[0, 1], [2, 3], [1, 1]]), torch.ones(3, 2, dtype=torch.long))
    lengths = torch.tensor([1, 3, 2])
    for t in range(3):  # the rollout stops when every row has finished
        alive = t < lengths
        rewards = torch.where(t == lengths - 1, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
        buffer.add(torch.full((3,), t + 1), alive, torch.full((3,), -0.5), torch.full((3,), 0.25), rewards,
                   torch.ones(3, 5, dtype=torch.bool) if with_action_masks else None)
    return buffer


def test_add_stores_token_steps_and_masks_finished_rows():
    buffer = filled_buffer()
    assert buffer.pos == 3 and not buffer.full and buffer.size() == 3
    assert buffer.response_mask.tolist() == [[True, False, False, False], [True, True, True, False],
                                             [True, True, False, False]]
    assert buffer.responses[1, :3].tolist() == [1, 2, 3]
    # finished rows store 0 log-prob and 0 value
    assert buffer.logprobs[0].tolist() == [-0.5, 0.0, 0.0, 0.0] and buffer.values[0].tolist() == [0.25, 0.0, 0.0, 0.0]
    buffer.compute_returns_and_advantage()
    # gamma = lambda = 1: the return of every live token is the response's final reward
    torch.testing.assert_close(buffer.returns, torch.tensor([[1.0, 0, 0, 0], [2.0, 2, 2, 0], [3.0, 3, 0, 0]]))


def test_get_yields_whole_responses_trimmed_to_the_longest_live_one():
    buffer = filled_buffer(with_action_masks=True)
    buffer.compute_returns_and_advantage()
    batches = list(buffer.get(2, torch.Generator().manual_seed(0), normalize_advantage=True))
    assert [b.responses.shape[0] for b in batches] == [2, 1]
    for batch in batches:
        assert isinstance(batch, SequenceSamples)
        width = int(batch.response_mask.sum(1).max())
        assert batch.responses.shape[1] == width and batch.action_masks.shape == (batch.responses.shape[0], width, 5)
    whitened = torch.cat([b.advantages[b.response_mask] for b in batches])
    assert abs(float(whitened.mean())) < 1e-5  # whitened over the whole rollout's live tokens
    samples = buffer._get_samples([1])  # SB3's sampling hook: one response, raw advantages
    torch.testing.assert_close(samples.advantages, buffer.advantages[[1], :3])


def test_reset_clears_the_rollout():
    buffer = filled_buffer()
    buffer.reset()
    assert buffer.pos == 0 and not buffer.response_mask.any() and buffer.queries is None
