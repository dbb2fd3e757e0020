"""The batched env: make_vec, equivalence with the single env, autoreset, the SB3 bridge."""

import gymnasium as gym
import numpy as np
import torch
import pytest
from stable_baselines3.common.vec_env import VecCheckNan

import rlhf_gym  # noqa: F401
from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.envs import RLHFEnv, RLHFVectorEnv
from rlhf_gym.errors import ConfigError


def proxy(prompts, responses):
    return [len(r.split()) * 0.1 for r in responses]


def kwargs(task, ref_model, tokenizer, **extra):
    return dict(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=proxy, beta=0.2, **extra)


def test_make_vec_uses_the_vector_entry_point(task):
    envs = gym.make_vec("RLHF-v0", num_envs=3, task=task)
    assert isinstance(envs, RLHFVectorEnv) and envs.num_envs == 3
    obs, _ = envs.reset(seed=0)
    assert envs.observation_space.contains(obs)
    obs2, _ = envs.reset(seed=0)
    assert all(np.array_equal(obs[k], obs2[k]) for k in obs)
    assert obs["input_ids"] is not obs2["input_ids"]


@pytest.mark.parametrize("placement", ["terminal", "per_token"])
def test_single_and_batched_envs_agree(task, ref_model, tokenizer, placement):
    """Same prompts, tokens and reported log-probs: identical rewards and infos."""
    rng = np.random.default_rng(0)
    n, horizon = 4, 6
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    tokens = rng.integers(3, vocab, size=(n, horizon))
    tokens[0, 2] = eos
    tokens[2, 4] = eos  # rows 1 and 3 are truncated at the budget
    logprobs = -rng.random((n, horizon))
    batched = RLHFVectorEnv(num_envs=n, autoreset_mode="disabled", max_new_tokens=horizon,
                            **kwargs(task, ref_model, tokenizer, kl_placement=placement))
    batched.reset(seed=0, options={"prompt_indices": [5, 6, 7, 8]})
    batched_rewards = np.zeros((n, horizon))
    batched_infos = {}
    for t in range(horizon):
        batched.report_logprobs(logprobs[:, t])
        _, rewards, _, _, info = batched.step(tokens[:, t])
        batched_rewards[:, t] = rewards
        for row in np.flatnonzero(info.get("_kl", [])):
            batched_infos[row] = {k: info[k][row] for k in info if not k.startswith("_")}
    for row, prompt_index in enumerate([5, 6, 7, 8]):
        single = RLHFEnv(max_new_tokens=horizon, **kwargs(task, ref_model, tokenizer, kl_placement=placement))
        single.reset(options={"prompt_index": prompt_index})
        rewards = []
        for t in range(horizon):
            single.report_logprobs(logprobs[row, t])
            _, reward, terminated, truncated, info = single.step(tokens[row, t])
            rewards.append(reward)
            if terminated or truncated:
                break
        np.testing.assert_allclose(rewards, batched_rewards[row, : len(rewards)], atol=1e-5)
        assert not batched_rewards[row, len(rewards):].any()
        for key, value in info.items():
            if isinstance(value, float):
                assert batched_infos[row][key] == pytest.approx(value, abs=1e-5), key
            elif isinstance(value, np.ndarray):
                np.testing.assert_allclose(batched_infos[row][key], value, atol=1e-5, err_msg=key)
            else:
                assert batched_infos[row][key] == value, key


def test_next_step_autoreset_restarts_finished_rows(task, ref_model, tokenizer):
    envs = RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer))
    envs.reset(seed=0)
    eos, great = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("great")
    _, _, terminated, _, info = envs.step([eos, great])
    assert terminated.tolist() == [True, False] and info["_kl"].tolist() == [True, False]
    obs, rewards, terminated, _, info = envs.step([great, great])  # row 0 restarts: its action is ignored
    assert rewards[0] == 0.0 and not terminated[0] and "_kl" not in info
    assert obs["attention_mask"][0].sum() == len(envs.prompt_ids[envs._episodes.prompt_index[0]])


def test_disabled_autoreset_waits_for_reset_mask(task, ref_model, tokenizer):
    envs = RLHFVectorEnv(num_envs=2, autoreset_mode="disabled", **kwargs(task, ref_model, tokenizer))
    envs.reset(seed=0)
    eos, great = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("great")
    envs.step([eos, great])
    obs, rewards, terminated, _truncated, _ = envs.step([great, great])
    assert rewards[0] == 0.0 and not terminated[0] and obs["attention_mask"][0].sum() == envs._episodes.prompt_lens[0] + 1
    envs.reset(options={"reset_mask": np.array([True, False])})
    assert envs._episodes.response_lens.tolist() == [0, 2]


def test_bad_batched_input(task, ref_model, tokenizer):
    envs = RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer))
    with pytest.raises(RuntimeError, match="before reset"):
        envs.step([0, 0])
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions must be an integer array of shape \(2,\)"):
        envs.step([0, 0, 0])
    with pytest.raises(ValueError, match="action 9999 of row 1 is outside"):
        envs.step([0, 9999])
    with pytest.raises(ValueError, match="autoreset_mode"):
        RLHFVectorEnv(num_envs=2, autoreset_mode="same_step", task=task)


def test_sb3_bridge_resets_rows_and_reports_episodes(task, ref_model, tokenizer):
    venv = VecCheckNan(RLHFVecEnv(num_envs=3, **kwargs(task, ref_model, tokenizer)), raise_exception=True)
    venv.seed(0)
    obs = venv.reset()
    assert obs["input_ids"].shape == (3, venv.observation_space["input_ids"].shape[0])
    eos, great = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("great")
    obs, rewards, dones, infos = venv.step(np.array([great, eos, great]))
    assert dones.tolist() == [False, True, False]
    assert "terminal_observation" in infos[1] and infos[1]["episode"]["l"] == 1
    assert infos[1]["episode"]["r"] == pytest.approx(rewards[1]) and "kl" in infos[1]
    assert obs["attention_mask"][1].sum() == venv.unwrapped.batched_env._episodes.prompt_lens[1]  # already restarted


def test_batched_actions_must_be_integers_of_shape_num_envs(task, ref_model, tokenizer):
    envs = RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer))
    envs.reset(seed=0)
    for actions in ([5.9, 1.0], [[5], [6]], ["5", "6"], None, [True, False]):
        with pytest.raises(ConfigError, match=r"actions must be an integer array of shape \(2,\)"):
            envs.step(actions)
    assert envs._episodes.response_lens.tolist() == [0, 0]
    envs.step(np.array([5, 6], dtype=np.int32))
    assert envs._episodes.response_lens.tolist() == [1, 1]


def test_batched_report_logprobs_refuses_impossible_values(task, ref_model, tokenizer):
    envs = RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer))
    envs.reset(seed=0)
    for values, message in (([-0.5, float("inf")], "row 1: inf"), ([float("-inf"), -1.0], "row 0: -inf"),
                            ([5.0, -1.0], "row 0: 5.0")):
        with pytest.raises(ConfigError, match=rf"report_logprobs: {message}; a log-probability is a finite number <= 0"):
            envs.report_logprobs(values)
    envs.report_logprobs([float("nan"), -0.5], rows=[False, True])  # row 0 reports nothing (a finished row, say)


def test_a_nan_log_prob_is_refused_and_rows_say_which_rows_report(task, ref_model, tokenizer):
    """rlhf-gym 0.8 read a NaN as "no report" and paid the fallback: a policy whose logits went NaN got a KL of
    hundreds of nats and a reward of about -31 instead of an error. A row without a report is now left out of rows=."""
    envs = RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer))
    envs.reset(seed=0)
    with pytest.raises(ConfigError, match=r"report_logprobs: row 0: nan; a log-probability is a finite number <= 0"):
        envs.report_logprobs([float("nan"), -0.5])
    with pytest.raises(ConfigError, match="rows must be a bool mask of 2 rows"):
        envs.report_logprobs([-0.1, -0.5], rows=[1, 0])
    envs.report_logprobs(torch.tensor([-0.1, -0.5]), rows=torch.tensor([False, True]))
    _, _, _, _, _ = envs.step(np.array([5, 6], dtype=np.int32))
    policy = envs._episodes.policy_logprobs[:, 0]
    assert np.isnan(policy[0]) and policy[1] == pytest.approx(-0.5)  # row 0 takes the fallback, row 1 its report


def run_batch(env, tokens, logprobs, rows_per_call=None):
    """Step ``tokens`` [N, T] through ``env`` with their log-probs; the rewards [N, T], the final infos by row, and
    the number of scoring calls (counted by wrapping the env's scoring)."""
    calls = []
    finish = env._episodes.finish
    env._episodes.finish = lambda rows: calls.append(len(rows)) or finish(rows)
    env.reset(seed=0, options={"prompt_indices": list(range(5, 5 + env.num_envs))})
    rewards, infos = np.zeros(tokens.shape), {}
    for t in range(tokens.shape[1]):
        env.report_logprobs(logprobs[:, t])
        _, step_rewards, _, _, info = env.step(tokens[:, t])
        rewards[:, t] = step_rewards
        for row in np.flatnonzero(info.get("_kl", [])):
            infos[row] = {k: info[k][row] for k in info if not k.startswith("_")}
    return rewards, infos, calls


def test_deferred_scoring_pays_every_row_in_one_pass_when_the_last_row_ends(task, ref_model, tokenizer):
    rng = np.random.default_rng(1)
    n, horizon = 4, 6
    tokens = rng.integers(3, len(tokenizer), size=(n, horizon))
    tokens[0, 1] = tokens[2, 3] = tokenizer.eos_token_id  # rows 0 and 2 end early, rows 1 and 3 at the budget
    logprobs = -rng.random((n, horizon))
    envs = [RLHFVectorEnv(num_envs=n, autoreset_mode="disabled", max_new_tokens=horizon, **kwargs(task, ref_model, tokenizer))
            for _ in range(2)]
    envs[1].defer_scoring()
    (on_finish, infos, calls), (deferred, deferred_infos, deferred_calls) = (run_batch(e, tokens, logprobs) for e in envs)
    assert calls == [1, 1, 2] and deferred_calls == [4]  # rows end at steps 2, 4 and 6: three passes, or one
    # the same rewards, paid at each row's end, or all at the last step
    np.testing.assert_allclose(deferred[:, :-1], 0.0)
    np.testing.assert_allclose(deferred[:, -1], on_finish.sum(1), atol=1e-6)
    assert on_finish[0, 1] != 0 and on_finish[0, 2:].sum() == 0
    for row in range(n):
        assert deferred_infos[row]["response_length"] == infos[row]["response_length"]
        assert deferred_infos[row]["kl"] == pytest.approx(infos[row]["kl"], abs=1e-5)


def test_deferred_scoring_is_refused_where_it_cannot_hold(task, ref_model, tokenizer):
    with pytest.raises(ConfigError, match="autoreset_mode='disabled'"):
        RLHFVectorEnv(num_envs=2, **kwargs(task, ref_model, tokenizer)).defer_scoring()
    with pytest.raises(ConfigError, match="kl_placement='terminal'"):
        RLHFVectorEnv(num_envs=2, autoreset_mode="disabled",
                      **kwargs(task, ref_model, tokenizer, kl_placement="per_token")).defer_scoring()
    env = RLHFVectorEnv(num_envs=2, autoreset_mode="disabled", max_new_tokens=4, **kwargs(task, ref_model, tokenizer))
    env.defer_scoring()
    env.reset(seed=0)
    env.step(np.array([tokenizer.eos_token_id, 5]))  # row 0 ends and waits to be scored with row 1
    with pytest.raises(ConfigError, match=r"rows \[0\] are waiting to be scored"):
        env.reset(options={"reset_mask": np.array([True, False])})
    env.reset()  # a new batch: every row starts again
    assert env.scoring_deferred and not env._episodes.pending.any()


@pytest.mark.parametrize("num_envs, message", [(2.5, "num_envs must be an integer, got 2.5"),
                                               (True, "num_envs must be an integer, got True"),
                                               (0, "num_envs must be >= 1, got 0"), (-1, "num_envs must be >= 1, got -1")])
def test_num_envs_must_be_a_positive_integer(task, num_envs, message):
    # 2.5 used to be reported as a bad group_size
    with pytest.raises(ConfigError, match=f"^{message}$"):
        gym.make_vec("RLHF-v0", num_envs=num_envs, task=task)


def episode_state(env):
    episodes = env._episodes
    return (episodes.contexts.copy(), episodes.prompt_lens.copy(), episodes.response_lens.copy(), episodes.done.copy(),
            episodes.prompt_index.copy(), str(env.np_random.bit_generator.state))


@pytest.mark.parametrize("options, message", [
    ("reset_mask", r"options must be a dict \(keys 'prompt_indices', 'reset_mask'\), got str"),
    ({"promt_index": 1}, r"unknown reset option 'promt_index'; known: 'prompt_indices', 'reset_mask'"),
    ({"reset_mask": [True, True, True]}, r"reset_mask must be a bool array of shape \(2,\), got bool of shape \(3,\)"),
    ({"reset_mask": [True]}, r"reset_mask must be a bool array of shape \(2,\)"),
    ({"reset_mask": [1, 0]}, r"reset_mask must be a bool array of shape \(2,\), got int64"),  # not row indices
    ({"reset_mask": "ab"}, r"reset_mask must be a bool array of shape \(2,\)"),
    ({"prompt_indices": [1.5, 2]}, r"prompt_indices must be integers, one per reset row, got \[1.5, 2\]"),
    ({"prompt_indices": [True, False]}, "prompt_indices must be integers"),
    ({"prompt_indices": [1, True]}, "prompt_indices must be integers"),
    ({"prompt_indices": "ab"}, "prompt_indices must be integers"),
    ({"prompt_indices": [1]}, r"prompt_indices must give 2 indices in \[0, \d+\), got 1"),
    ({"prompt_indices": [0, 10**6]}, r"prompt_indices must give 2 indices in \[0, \d+\), got 1000000 at position 1"),
])
def test_bad_reset_options_are_refused_and_change_nothing(task, ref_model, tokenizer, options, message):
    """Checked before anything moves: the episodes, the seed and the prompts stay as they were, and the env goes on."""
    envs = RLHFVectorEnv(num_envs=2, autoreset_mode="disabled", **kwargs(task, ref_model, tokenizer))
    great = tokenizer.convert_tokens_to_ids("great")
    envs.reset(seed=0)
    envs.step([great, great])
    before = episode_state(envs)
    with pytest.raises(ConfigError, match=message):
        envs.reset(seed=1, options=options)
    assert all(np.array_equal(a, b) for a, b in zip(before, episode_state(envs)))
    envs.step([great, great])
    assert envs._episodes.response_lens.tolist() == [2, 2]
    envs.reset(options={"reset_mask": np.array([True, False]), "prompt_indices": [3]})
    envs.step([great, great])
    assert envs._episodes.response_lens.tolist() == [1, 3] and envs._episodes.prompt_index[0] == 3
