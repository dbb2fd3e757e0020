"""TransformerPolicy: log-probs against plain HF, KV-cached sampling against one full forward."""

import pytest
import torch
from helpers import NoCallback
from transformers import AutoModelForCausalLM

from rlhf_gym.agents import TokenPPO, TransformerPolicy
from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.envs import RLHFEnv


@pytest.fixture(scope="module")
def agent(task):
    env = RLHFVecEnv(num_envs=6, task=task, max_new_tokens=10, beta=0.1)
    return TokenPPO("TransformerPolicy", env, n_epochs=1, batch_size=3, seed=0, device="cpu")


def test_sequence_logprobs_equal_plain_hf_forward(agent, task, tokenizer):
    hf = AutoModelForCausalLM.from_pretrained(task.policy_dir).eval()
    prompts = ["the food was", "i"]
    responses = ["great , and i loved the chef .", "did not like the view ."]
    from rlhf_gym.generation import left_pad
    queries, qmask = left_pad([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)
    resp = [tokenizer(r)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    width = max(map(len, resp))
    tokens = torch.full((2, width), tokenizer.pad_token_id)
    rmask = torch.zeros((2, width), dtype=torch.bool)
    for i, r in enumerate(resp):
        tokens[i, : len(r)], rmask[i, : len(r)] = torch.tensor(r), True
    with torch.no_grad():
        logprobs, entropy, values = agent.policy.evaluate_sequences(queries, qmask, tokens, rmask)
        for i, (p, r) in enumerate(zip(prompts, resp)):
            ids = tokenizer(p)["input_ids"]
            logp = torch.log_softmax(hf(torch.tensor([ids + r])).logits[0], -1)
            expected = torch.stack([logp[len(ids) - 1 + t, tok] for t, tok in enumerate(r)])
            torch.testing.assert_close(logprobs[i, : len(r)], expected, atol=1e-5, rtol=0)
    assert (entropy[rmask] > 0).all()
    assert torch.count_nonzero(values) == 0  # zero-initialised value head


def test_kv_cached_rollout_matches_full_forward_and_first_ratio_is_one(agent):
    agent.learn(1, progress_bar=False)  # one rollout and one update
    buffer = agent.rollout_buffer
    agent.collect_rollouts(agent.env, NoCallback(), buffer, agent.n_steps)
    with torch.no_grad():
        logprobs, _, values = agent.policy.evaluate_sequences(buffer.queries, buffer.query_mask, buffer.responses,
                                                              buffer.response_mask)
    mask = buffer.response_mask
    assert mask.any() and (values[mask] != 0).any()
    torch.testing.assert_close(logprobs[mask], buffer.logprobs[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(values[mask], buffer.values[mask], atol=1e-5, rtol=0)
    ratio = torch.exp(logprobs[mask] - buffer.logprobs[mask])
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)
    assert not any(m.training and getattr(m, "p", 0) > 0 for m in agent.policy.modules() if isinstance(m, torch.nn.Dropout))


def test_predict_on_env_observations(agent, task):
    env = RLHFEnv(task=task, max_new_tokens=10)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    logits, _ = agent.policy._last_position({k: torch.as_tensor(v)[None] for k, v in obs.items()})
    assert int(action) == int(logits.argmax())
    assert env.action_space.contains(int(action))


def test_separate_critic_and_reward_model_initialisation(task):
    env = RLHFVecEnv(num_envs=2, task=task, max_new_tokens=4)
    space_args = (env.observation_space, env.action_space, lambda _: 1e-4)
    path = str(task.policy_dir)
    separate = TransformerPolicy(*space_args, model_name_or_path=path, share_trunk=False)
    assert separate.critic_trunk is not None
    for name, value in separate.critic_trunk.state_dict().items():  # a copy of the actor's initial trunk
        torch.testing.assert_close(value, separate.lm.base_model.state_dict()[name])
    assert separate.critic_trunk.wte.weight.data_ptr() != separate.lm.base_model.wte.weight.data_ptr()
    from_rm = TransformerPolicy(*space_args, model_name_or_path=path, share_trunk=False, value_init="reward_model",
                                reward_model_path=str(task.reward_dir))
    assert torch.count_nonzero(from_rm.value_head.weight) > 0
    with pytest.raises(ValueError, match="needs share_trunk=False"):
        TransformerPolicy(*space_args, model_name_or_path=path, value_init="reward_model",
                          reward_model_path=str(task.reward_dir))
    with pytest.raises(ValueError, match="needs model_name_or_path"):
        TransformerPolicy(*space_args)
    with pytest.raises(FileNotFoundError, match="cannot load the policy model"):
        TransformerPolicy(*space_args, model_name_or_path="/nonexistent/policy")



def test_the_output_head_runs_on_the_response_positions_only_or_falls_back(agent):
    """``logits_to_keep`` (the head on the last T + 1 positions) and the fallback for an LM without it (a full head,
    sliced) give the same log-probs; entropies carry a graph only when the loss needs it."""
    queries, qmask = torch.tensor([[0, 5, 6], [7, 8, 9]]), torch.tensor([[0, 1, 1], [1, 1, 1]])
    tokens, rmask = torch.tensor([[10, 11, 1], [12, 1, 0]]), torch.tensor([[True, True, True], [True, True, False]])
    policy = agent.policy
    logprobs, entropy, values = policy.evaluate_sequences(queries, qmask, tokens, rmask)
    detached = policy.evaluate_sequences(queries, qmask, tokens, rmask, entropy_grad=False)[1]
    assert logprobs.grad_fn is not None and entropy.grad_fn is not None and detached.grad_fn is None
    torch.testing.assert_close(detached, entropy.detach())
    policy._lm_keeps_logits = False
    try:
        fallback = policy.evaluate_sequences(queries, qmask, tokens, rmask)
    finally:
        policy._lm_keeps_logits = True
    for got, want in zip(fallback, (logprobs, entropy, values)):
        torch.testing.assert_close(got, want)


def test_length_buckets_give_the_one_pass_results_and_gradients(agent):
    """Responses of 1 to 12 tokens (with prompts of 2 and 4): bucketed forward passes, each cut to its bucket's longest
    response, compute what one padded pass computes, and so the same gradient."""
    from rlhf_gym.agents.buckets import length_buckets

    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 12, 2, 11, 3, 12, 2, 1])
    responses = torch.randint(3, 200, (8, 12), generator=generator)
    rmask = torch.arange(12)[None, :] < lengths[:, None]
    queries = torch.randint(3, 200, (8, 4), generator=generator)
    qmask = torch.ones(8, 4, dtype=torch.long)
    qmask[::2, :2] = 0  # every other prompt has 2 tokens, left-padded
    assert len(length_buckets(lengths, 4)) > 1
    policy = agent.policy
    results = []
    for buckets in (4, 1):
        policy.max_length_buckets = buckets
        policy.zero_grad()
        logprobs, entropy, values = policy.evaluate_sequences(queries, qmask, responses, rmask)
        ((logprobs + entropy + values) * rmask).sum().backward()
        results.append(([t * rmask for t in (logprobs, entropy, values)],
                        [p.grad.clone() for p in policy.parameters() if p.grad is not None]))
    policy.max_length_buckets = 1
    for got, want in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_length_buckets_split_only_where_it_pays():
    from rlhf_gym.agents.buckets import length_buckets

    assert len(length_buckets(torch.full((16,), 24), 3)) == 1  # equal lengths: nothing to save
    lengths = torch.tensor([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 20, 22, 22])
    buckets = length_buckets(lengths, 3)
    # one pass: 16 x (3 + 22) = 400 tokens; halves: 8 x (3 + 11) + 8 x 25 = 312 (-22 %); no further cut saves 20 %
    assert [b.tolist() for b in buckets] == [list(range(8)), list(range(8, 16))]
    assert len(length_buckets(lengths, 3, max_buckets=1)) == 1
    # 4 x 100 = 400 tokens -> 2 x 1 + 2 x 100 = 202 -> 2 x 1 + 1 x 1 + 1 x 100 = 103: the long row alone
    assert [b.tolist() for b in length_buckets(torch.tensor([1, 1, 1, 100]), 0)] == [[0, 1], [2], [3]]
