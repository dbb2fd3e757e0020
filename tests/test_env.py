"""RLHF-v0, the single environment: API, reward by hand, KL, seeding, registration, bad input."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlhf_gym  # noqa: F401  (registers the ids)
from rlhf_gym.envs import RLHFEnv
from rlhf_gym.errors import ConfigError, DataError


def constant_reward(value):
    return lambda prompts, responses: [value] * len(prompts)


@pytest.fixture(scope="module")
def env(task, ref_model, tokenizer):
    return RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(1.5), beta=0.1)


def hf_ref_logprobs(ref_model, tokenizer, prompt, response_ids, temperature=1.0):
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = torch.tensor([ids + response_ids])
    with torch.no_grad():
        logp = torch.log_softmax(ref_model(full).logits[0].float() / temperature, -1)
    return np.array([logp[len(ids) - 1 + t, tok].item() for t, tok in enumerate(response_ids)])


def run_episode(env, tokens, logprobs=None, prompt_index=0):
    env.reset(seed=0, options={"prompt_index": prompt_index})
    rewards = []
    for t, token in enumerate(tokens):
        if logprobs is not None:
            env.unwrapped.report_logprobs(logprobs[t])
        _, reward, terminated, truncated, info = env.step(token)
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info, terminated, truncated
    raise AssertionError("episode did not end")


def review_tokens(tokenizer, text="great ."):
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def test_both_env_checkers_pass(env):
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize("placement", ["terminal", "per_token"])
def test_reward_equals_hand_computation(task, ref_model, tokenizer, estimator, placement):
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(1.5), beta=0.1,
                  kl_estimator=estimator, kl_placement=placement)
    tokens = review_tokens(tokenizer, "not very good .")
    reported = np.array([-0.5, -1.0, -0.25, -2.0, -0.1])
    rewards, info, terminated, _ = run_episode(env, tokens, reported)
    ref = hf_ref_logprobs(ref_model, tokenizer, env.prompts[0], tokens)
    log_ratio = reported - ref
    per_token = log_ratio if estimator == "k1" else np.expm1(-log_ratio) + log_ratio
    assert terminated and info["eos"] and info["kl_source"] == "reported"
    assert info["kl"] == pytest.approx(per_token.sum(), abs=1e-4)
    assert info["ref_logprob"] == pytest.approx(ref.sum(), abs=1e-4)
    assert sum(rewards) == pytest.approx(1.5 - 0.1 * per_token.sum(), abs=1e-4)
    if placement == "terminal":
        assert rewards[:-1] == [0.0] * (len(tokens) - 1)
    else:
        assert rewards[:-1] == pytest.approx(list(-0.1 * per_token[:-1]), abs=1e-4)
    assert info["response_text"] == "not very good ." and info["response_length"] == len(tokens)
    assert info["proxy_reward"] == 1.5 and info["beta"] == 0.1
    assert info["gold_reward"] == pytest.approx(-1.0) and info["well_formed"]


def test_kl_is_zero_when_the_agent_is_the_reference(env, ref_model, tokenizer):
    tokens = review_tokens(tokenizer, "great , and i loved the chef .")
    ref = hf_ref_logprobs(ref_model, tokenizer, env.prompts[3], tokens)
    _, info, _, _ = run_episode(env, tokens, ref, prompt_index=3)
    assert abs(info["kl"]) < 1e-4


def test_fallback_without_reports_is_named(env, ref_model, tokenizer):
    tokens = review_tokens(tokenizer)
    _, info, _, _ = run_episode(env, tokens)
    ref = hf_ref_logprobs(ref_model, tokenizer, env.prompts[0], tokens)
    assert info["kl_source"] == "fallback:deterministic_policy"
    assert info["kl"] == pytest.approx(-ref.sum(), abs=1e-4)  # log pi := 0


def test_truncation_and_no_eos_penalty(task, ref_model, tokenizer):
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(0.0), beta=0.0,
                  max_new_tokens=3, no_eos_penalty=2.0)
    great = tokenizer.convert_tokens_to_ids("great")
    rewards, info, terminated, truncated = run_episode(env, [great] * 3)
    assert truncated and not terminated and not info["eos"]
    assert rewards[-1] == pytest.approx(-2.0) and info["penalty"] == 2.0


def test_seeding_gives_identical_episodes(task, ref_model, tokenizer):
    def episode(seed):
        env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(0.0))
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trace = [obs["input_ids"].tolist()]
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append((obs["input_ids"].tolist(), reward))
            done = terminated or truncated
        return trace

    assert episode(3) == episode(3)
    assert episode(3) != episode(4)


def test_registration_and_make_kwargs(task):
    assert "RLHF-v0" in gym.registry
    env = gym.make("RLHF-v0", task=task, beta=0.3, max_new_tokens=5, render_mode="ansi")
    obs, info = env.reset(seed=1)
    assert env.unwrapped.beta == 0.3 and env.unwrapped.max_new_tokens == 5
    assert env.observation_space.contains(obs)
    assert env.render() == f"{info['prompt']} \u2502 "
    env.step(env.unwrapped.tokenizer.convert_tokens_to_ids("great"))
    assert env.render().endswith("\u2502 great")


def test_adaptive_kl_controller_state_round_trip(task, ref_model, tokenizer):
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(0.0), beta=0.1,
                  kl_target=1.0, kl_horizon=10)
    _, info, _, _ = run_episode(env, review_tokens(tokenizer))  # fallback KL is large: beta must grow
    assert info["beta"] == 0.1 and env.unwrapped.beta == pytest.approx(0.1 * (1 + 0.2 / 10))
    state = env.kl_controller.state_dict()
    other = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(0.0), beta=0.1,
                    kl_target=1.0)
    other.kl_controller.load_state_dict(state)
    assert other.beta == env.beta


# ------------------------------------------------------------------------------------------ bad input
def test_prompt_too_long(task, ref_model, tokenizer):
    prompts = ["the food was", "the food was great . the room was clean . i loved the pool ."]
    with pytest.raises(ValueError, match=r"prompt 1 has 15 tokens, more than max_prompt_tokens=5"):
        RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, prompts=prompts, max_prompt_tokens=5)
    with pytest.warns(UserWarning, match="left-truncated"):
        env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, prompts=prompts, max_prompt_tokens=5,
                      truncate_prompts=True, reward_model=constant_reward(0.0))
    assert env.prompt_ids[1] == tokenizer(prompts[1], add_special_tokens=False)["input_ids"][-5:]
    with pytest.raises(ValueError, match="exceeds the reference model's context"):
        RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, max_new_tokens=500)


def test_vocabulary_mismatch_names_both(task, ref_model):
    from transformers import AutoTokenizer
    big = AutoTokenizer.from_pretrained(task.policy_dir)
    big.add_tokens([f"extra{i}" for i in range(400)])
    message = r"tokenizer .*662 tokens.* does not fit the reference model \(GPT2LMHeadModel, vocabulary 262\)"
    with pytest.raises(ValueError, match=message):
        RLHFEnv(task=task, ref_model=ref_model, tokenizer=big)


def test_bad_action_and_step_after_end(task, ref_model, tokenizer):
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=constant_reward(0.0))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(10_000)
    run_episode(env, review_tokens(tokenizer))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


@pytest.mark.parametrize("scores, message", [
    (lambda p, r: [float("nan")] * len(p), r"returned nan for response 0 \(prompt "),
    (lambda p, r: [float("inf")] * len(p), "returned inf"),
    (lambda p, r: [1.0, 2.0], "returned 2 scores for 1 responses"),
])
def test_bad_reward_function(task, ref_model, tokenizer, scores, message):
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=scores)
    with pytest.raises(DataError, match=message):  # the user's reward function: a user error, not a bug
        run_episode(env, review_tokens(tokenizer))


def test_bad_arguments(task):
    with pytest.raises(ValueError, match="kl_estimator"):
        RLHFEnv(task=task, kl_estimator="k2")
    with pytest.raises(ValueError, match="kl_placement"):
        RLHFEnv(task=task, kl_placement="dense")
    with pytest.raises(FileNotFoundError, match="cannot load the reference model"):
        RLHFEnv(task=task, ref_model="/nonexistent/model")
    with pytest.raises(ConfigError, match="unknown task 'chess'; known tasks"):
        RLHFEnv(task="chess")


@pytest.mark.parametrize("action", [5.9, [7, 8], "5", None, True, np.array([5]), np.float64(5.0)])
def test_step_refuses_what_is_not_one_integer_token_id(env, action):
    env.reset(seed=0)
    with pytest.raises(ConfigError, match=r"action .* must be one integer token id in Discrete\(262\)"):
        env.step(action)
    assert env.unwrapped._episodes.response_lens.tolist() == [0]  # nothing was appended


@pytest.mark.parametrize("action", [5, np.int64(5), np.int32(5), np.array(5)])
def test_step_accepts_python_and_numpy_integers(env, action):
    env.reset(seed=0, options={"prompt_index": 0})
    obs, *_ = env.step(action)
    prompt_len = len(env.unwrapped.prompt_ids[0])
    assert obs["input_ids"][prompt_len] == 5 and obs["attention_mask"].sum() == prompt_len + 1


@pytest.mark.parametrize("logprob, message", [
    (float("nan"), "got nan"), (float("inf"), "got inf"), (float("-inf"), "got -inf"), (5.0, "got 5.0"),
    ("-1", "got '-1'"), (None, "got None"),
])
def test_report_logprobs_refuses_impossible_log_probabilities(env, logprob, message):
    env.reset(seed=0)
    with pytest.raises(ConfigError, match=rf"report_logprobs: {message}; a log-probability is a finite number <= 0"):
        env.unwrapped.report_logprobs(logprob)
    env.unwrapped.report_logprobs(np.float32(-0.5))
    env.unwrapped.report_logprobs(torch.tensor(-0.5))


def test_prompts_made_only_of_unknown_words_warn(task, ref_model, tokenizer):
    prompts = ["spaceship rocket", "the food was", "zorg"]
    with pytest.warns(UserWarning, match=r"2 of 3 prompts are only unknown tokens .*e.g. prompt 0 \('spaceship rocket'\)"):
        RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, prompts=prompts, reward_model=constant_reward(0.0))


@pytest.mark.parametrize("name, content, message", [
    ("prompts.csv", b"prompt\nthe food\n", r"prompts\.csv.*expected a \.jsonl, \.json or \.txt file"),
    ("prompts.txt", b"the food was\n\xff\xfe bad\n", r"prompts\.txt:2: invalid UTF-8"),
    ("prompts.txt", b"the food was\nthe \x00 pizza\n", r"prompts\.txt:2: NUL byte"),
    ("prompts.jsonl", b'{"prompt": "the food"}\n{"prompt": "the \\u0000 pizza"}\n', r"prompts\.jsonl:2: NUL byte"),
])
def test_bad_prompt_files_name_the_file_and_line(task, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises((ConfigError, DataError), match=message):
        RLHFEnv(task=task, prompts=str(path))


def test_long_prompts_fit_the_models_context(task):
    long = " ".join(["the food was good ."] * 20)  # 100 tokens: more than both models' 64 positions
    with pytest.raises(ConfigError, match=r"prompt 1 has 100 tokens; with max_new_tokens=24 it needs 124 of the reference "
                                          r"model's 64 positions"):
        RLHFEnv(task=task, prompts=["the food", long])
    # truncate_prompts=True keeps the end of each prompt, within the context, and the reward model sees its context only
    with pytest.warns(UserWarning, match="left-truncated"):
        env = RLHFEnv(task=task, prompts=["the food", long], truncate_prompts=True)
    assert env.max_new_tokens + len(env.prompt_ids[1]) == 64
    _, info, _, truncated = run_episode(env, [env.tokenizer.convert_tokens_to_ids("great")] * 24, prompt_index=1)
    assert truncated and np.isfinite(info["proxy_reward"])


@pytest.mark.parametrize("options, message", [
    ([1], r"options must be a dict \(keys 'prompt_index'\), got list"),
    ({"promt_index": 1}, r"unknown reset option 'promt_index'; known: 'prompt_index'"),
    ({"prompt_indices": [1]}, r"unknown reset option 'prompt_indices'; known: 'prompt_index'"),
    ({"prompt_index": 1.5}, "prompt_index must be an integer, got 1.5"),
    ({"prompt_index": True}, "prompt_index must be an integer, got True"),
    ({"prompt_index": "3"}, "prompt_index must be an integer, got '3'"),
    ({"prompt_index": -1}, r"prompt_index -1 outside \[0, \d+\)"),
])
def test_bad_reset_options_are_refused_and_change_nothing(env, tokenizer, options, message):
    env.reset(seed=0, options={"prompt_index": 2})
    env.step(tokenizer.convert_tokens_to_ids("great"))
    episodes = env.unwrapped._episodes
    before = episodes.contexts.copy(), str(env.unwrapped.np_random.bit_generator.state)
    with pytest.raises(ConfigError, match=message):
        env.reset(seed=1, options=options)
    assert np.array_equal(before[0], episodes.contexts) and before[1] == str(env.unwrapped.np_random.bit_generator.state)
    env.step(tokenizer.convert_tokens_to_ids("great"))  # the episode goes on
    assert episodes.response_lens.tolist() == [2]
    _, info = env.reset(options={"prompt_index": np.int64(4)})
    env.step(tokenizer.convert_tokens_to_ids("great"))
    assert info["prompt_index"] == 4 and episodes.response_lens.tolist() == [1]
