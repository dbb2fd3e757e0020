"""Online DPO: the loss by hand, pairs kept whole in minibatches, pairs sampled from the current policy, the judges,
save/resume and a learning signal."""

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.agents.buffer import SequenceRolloutBuffer, SequenceSamples
from rlhf_gym.agents.online_dpo import OnlineDPO, OnlineDPOConfig, online_dpo_loss, pair_preferences
from rlhf_gym.errors import ConfigError
from tests.helpers import NoCallback


def word_count(prompts, responses):
    return [0.1 * len(r.split()) for r in responses]


def env(task, num_envs=8, **kwargs):
    return RLHFVecEnv(num_envs=num_envs, group_size=2, task=task, max_new_tokens=6, **kwargs)


def collect(agent):
    """One rollout of a new agent (no update)."""
    agent._setup_learn(10_000, None)
    agent.collect_rollouts(agent.env, NoCallback(), agent.rollout_buffer, agent.n_steps)
    return agent.rollout_buffer


# ------------------------------------------------------------------------------------------------ the loss
def test_loss_by_hand_on_two_pairs_and_a_tie():
    policy = torch.tensor([[-2.0, -3.0], [-1.0, -1.5], [-4.0, -4.0]], requires_grad=True)
    ref = torch.tensor([[-2.5, -2.5], [-1.0, -1.0], [-4.0, -4.0]])
    preference = torch.tensor([1.0, -1.0, 0.0])  # pair 0: the first won; pair 1: the second; pair 2: a tie
    losses, decided = online_dpo_loss(policy, ref, preference, beta=0.5)
    # pair 0: h = (-2 + 2.5) - (-3 + 2.5) = 1.0;  pair 1, second over first: h = (-1.5 + 1) - (-1 + 1) = -0.5
    expected = [-math.log(1 / (1 + math.exp(-0.5 * 1.0))), -math.log(1 / (1 + math.exp(-0.5 * -0.5))), 0.0]
    np.testing.assert_allclose(losses.detach(), expected, rtol=1e-6)
    assert decided.tolist() == [True, True, False]
    losses.sum().backward()
    # the winner's log-prob goes up (negative gradient of the loss), the loser's down; a tie gets no gradient
    assert policy.grad[0, 0] < 0 < policy.grad[0, 1] and policy.grad[1, 1] < 0 < policy.grad[1, 0]
    assert (policy.grad[2] == 0).all()


def test_pair_preferences_and_advantages_carry_the_verdict(task):
    assert pair_preferences(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 1.0, 2.0])).tolist() == [1, -1, 0]
    agent = OnlineDPO("TransformerPolicy", env(task, reward_model=word_count), device="cpu")
    advantages = agent.group_advantages(torch.tensor([0.3, 0.1, 0.2, 0.9, 0.5, 0.5, 1.0, 0.0]))
    assert advantages.tolist() == [1, -1, -1, 1, 0, 0, 1, -1]


def test_policy_loss_reads_pairs_in_row_order_and_averages_over_decided_pairs(task):
    agent = OnlineDPO("TransformerPolicy", env(task, reward_model=word_count), beta=0.5, device="cpu")
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    logprobs = torch.tensor([[-1.0, -1.0], [-3.0, 9.0], [-1.0, -1.0], [-1.0, -1.0]], requires_grad=True)  # 9: padding
    ref = torch.tensor([[-1.5, -1.5], [-2.0, 0.0], [-1.0, -1.0], [-1.0, -1.0]])
    advantages = torch.tensor([-1.0, 1.0, 0.0, 0.0])  # pair 0: the second won; pair 1: a tie
    zeros = torch.zeros(4, 2)
    batch = SequenceSamples(torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1, dtype=torch.long), zeros.long(), mask,
                            zeros, zeros, advantages[:, None] * mask, zeros, None, ref)
    loss, stats = agent.policy_loss(batch, logprobs, 0.2)
    # pair 0: log-ratios first (-2) - (-3) = 1, second (-3) - (-2) = -1; the second won: h = -1 - 1 = -2
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(1.0))))  # one decided pair: no division by 2
    assert stats["decided_pairs"] == 0.5 and stats["rewards_accuracy"] == 0.0
    loss.backward()
    assert logprobs.grad[1, 1] == 0  # the padding is out of the sequence log-prob


def test_options_are_checked(task):
    with pytest.raises(ConfigError, match="--group-size 4"):
        OnlineDPOConfig(group_size=4)
    with pytest.raises(ConfigError, match="--batch-size 15"):
        OnlineDPOConfig(batch_size=15)
    with pytest.raises(ConfigError, match="--judge"):
        OnlineDPOConfig(judge="gpt")
    with pytest.raises(ConfigError, match="group_size=2 but the env samples groups of 4"):
        OnlineDPO("TransformerPolicy", RLHFVecEnv(num_envs=8, group_size=4, task=task, max_new_tokens=6), device="cpu")
    with pytest.raises(ConfigError, match="a batch of 3 responses per process is odd"):
        OnlineDPO("TransformerPolicy", env(task, reward_model=word_count), batch_size=3, device="cpu")
    with pytest.raises(ConfigError, match="beta must be > 0"):
        OnlineDPO("TransformerPolicy", env(task, reward_model=word_count), beta=0.0, device="cpu")


# -------------------------------------------------------------------------------------------- minibatches
def test_grouped_minibatches_keep_each_pair_whole_and_in_row_order():
    buffer = SequenceRolloutBuffer(3, spaces.Box(0, 9, (3,)), spaces.Discrete(10), device="cpu", n_envs=8)
    buffer.start(torch.arange(8)[:, None], torch.ones(8, 1, dtype=torch.long))  # row i's prompt is the token i
    buffer.response_mask[:, 0] = True
    buffer.advantages = buffer.returns = torch.zeros(8, 3)
    rows = [batch.queries[:, 0].tolist() for batch in buffer.get(4, torch.Generator().manual_seed(3), False, group_size=2)]
    assert sorted(row for minibatch in rows for row in minibatch) == list(range(8))
    for minibatch in rows:
        for first, second in zip(minibatch[::2], minibatch[1::2]):
            assert first % 2 == 0 and second == first + 1


# ------------------------------------------------------------------------------------------ rollouts
def test_pairs_come_from_the_current_policy_and_the_judge_is_asked_once_per_pair(task, tmp_path):
    agent = OnlineDPO("TransformerPolicy", env(task, reward_model=word_count), learning_rate=3e-3, batch_size=8, seed=0,
                      device="cpu")
    agent.learn(total_responses=16)  # two updates: the policy is no longer the reference
    agent.save(tmp_path / "after_two.zip")
    agent.learn(total_responses=24, reset_num_timesteps=False)  # the buffer keeps the third rollout (then one update)
    buffer = agent.rollout_buffer
    saved = OnlineDPO.load(tmp_path / "after_two.zip", env=env(task, reward_model=word_count), device="cpu")
    with torch.no_grad():  # the sampling pass's log-probs are the saved (current) policy's, not the reference's
        current, _, _ = saved.policy.evaluate_sequences(buffer.queries, buffer.query_mask, buffer.responses,
                                                        buffer.response_mask)
    mask = buffer.response_mask
    torch.testing.assert_close(buffer.logprobs[mask], current[mask], atol=1e-4, rtol=0)
    assert (buffer.logprobs[mask] - buffer.ref_logprobs[mask]).abs().max() > 1e-2
    # each pair is one prompt's two responses, and the verdict follows the reward model (longer wins here)
    assert all(torch.equal(buffer.queries[2 * g], buffer.queries[2 * g + 1]) for g in range(4))
    lengths = torch.tensor([len(i["response_text"].split()) for i in agent.last_rollout_infos], dtype=torch.float)
    torch.testing.assert_close(buffer.advantages[:, 0], agent.group_advantages(lengths))


class CountingJudge:
    name = "counting"

    def __init__(self):
        self.calls, self.seeds = [], []

    def seed_pair(self, pair_id):
        self.seeds.append(pair_id)

    def __call__(self, prompt, a, b):
        self.calls.append((prompt, a, b))
        return "a" if len(a) >= len(b) else "b"


def test_the_annotator_judge_is_called_once_per_pair_with_that_pairs_texts_and_number(task):
    agent = OnlineDPO("TransformerPolicy", env(task), judge="annotator", seed=0, device="cpu")
    judge = agent._pair_judge = CountingJudge()
    buffer = collect(agent)
    infos = agent.last_rollout_infos
    assert judge.calls == [(infos[2 * g]["prompt"], infos[2 * g]["response_text"], infos[2 * g + 1]["response_text"])
                           for g in range(4)]
    assert judge.seeds == [0, 1, 2, 3] and agent.judged_pairs == 4
    first_won = torch.tensor([len(a) >= len(b) for _, a, b in judge.calls], dtype=torch.float) * 2 - 1
    torch.testing.assert_close(buffer.advantages[::2, 0], first_won)


def test_the_annotator_judge_is_the_one_who_labelled_the_tasks_comparisons(task):
    from rlhf_gym.labelers import AnnotatorPool, SimulatedAnnotator
    from rlhf_gym.tasks import load_task

    judge = OnlineDPO("TransformerPolicy", env(task), judge="annotator", device="cpu").annotator()
    # the reviews task's build: one unbiased annotator at temperature 0.5 with 10 % flips
    assert isinstance(judge, SimulatedAnnotator) and (judge.temperature, judge.flip_rate) == (0.5, 0.1)
    assert judge.seed == 20_000  # seed 0's stream, apart from the build's (0)
    assert OnlineDPO("TransformerPolicy", env(task), judge="annotator", seed=3, device="cpu").annotator().seed == 20_003
    lists = load_task("lists")
    pool = OnlineDPO("TransformerPolicy", RLHFVecEnv(num_envs=4, group_size=2, task=lists, max_new_tokens=6),
                     judge="annotator", device="cpu").annotator()
    # the lists task's build: a pool of three members with bias weights 0.05, 0.15, 0.25, temperature 0.25, 5 % flips
    assert isinstance(pool, AnnotatorPool)
    assert [(m.bias_weight, m.temperature, m.flip_rate) for m in pool.members] == [(w, 0.25, 0.05) for w in (0.05, 0.15, 0.25)]


def test_a_person_judges_each_pair_at_the_terminal_and_a_skip_is_a_tie(task):
    from rlhf_gym.labelers import TerminalLabeler

    agent = OnlineDPO("TransformerPolicy", env(task), judge="person", seed=0, device="cpu")
    assert isinstance(agent.pair_judge(), TerminalLabeler)
    answers, shown = iter(["2", "x", "1", "s", "t"]), []  # "x" is asked again
    agent._pair_judge = TerminalLabeler(read=lambda prompt: next(answers), write=shown.append)
    buffer = collect(agent)
    assert sum(text.startswith("\nPROMPT: ") for text in shown) == 4  # one question per pair
    assert buffer.advantages[::2, 0].tolist() == [-1, 1, 0, 0]  # second won, first won, skipped, tie


def test_save_load_resumes_with_the_settings_and_the_judges_count(task, tmp_path):
    agent = OnlineDPO("TransformerPolicy", env(task), beta=0.2, judge="annotator", seed=0, device="cpu")
    agent.learn(total_responses=8)
    agent.save(tmp_path / "agent.zip")
    loaded = OnlineDPO.load(tmp_path / "agent.zip", env=env(task), device="cpu")
    assert (loaded.beta, loaded.judge, loaded.judged_pairs, loaded.num_responses) == (0.2, "annotator", 4, 8)
    for a, b in zip(agent.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(a, b)
    loaded.learn(total_responses=16, reset_num_timesteps=False)  # the next pairs get the next numbers
    assert (loaded.judged_pairs, loaded.n_rollouts) == (8, 2)


@pytest.mark.slow
def test_the_judges_preference_rises_with_a_fixed_seed(task):
    agent = OnlineDPO("TransformerPolicy", RLHFVecEnv(num_envs=32, group_size=2, task=task, max_new_tokens=16,
                                                      reward_model=word_count), batch_size=8, seed=1, device="cpu",
                      learning_rate=2e-3, beta=0.1)
    proxies = []
    for iteration in range(1, 11):
        agent.learn(total_responses=32 * iteration, reset_num_timesteps=False)
        proxies.append(np.mean([i["proxy_reward"] for i in agent.last_rollout_infos]))
    assert np.mean(proxies[-2:]) > np.mean(proxies[:2]) + 0.3, proxies
