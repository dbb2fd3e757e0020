"""Reward-model ensembles: the three objectives by hand, standardisation, the env and the registered id."""

import copy

import gymnasium as gym
import numpy as np
import pytest

import rlhf_gym  # noqa: F401  (registers the ids)
from rlhf_gym.envs import RLHFEnv
from rlhf_gym.ensemble import DEFAULT_ENSEMBLE_DIR, LazyRewardEnsemble, RewardEnsemble, combine
from rlhf_gym.registration import ENV_IDS


def fixed(values):
    """A fake member that returns ``values`` whatever it is asked."""
    return lambda prompts, responses: np.array(values[: len(prompts)], dtype=np.float32)


def words(weight, offset=0.0):
    """A fake member scoring ``weight * words in the response + offset``."""
    return lambda prompts, responses: np.array([weight * len(r.split()) + offset for r in responses])


MEMBERS = [fixed([1.0, 2.0, -1.0]), fixed([3.0, 2.0, 1.0]), fixed([2.0, 2.0, 3.0])]
PROMPTS, RESPONSES = ["a", "b", "c"], ["x", "y", "z"]


@pytest.mark.parametrize("objective, coef, expected", [
    ("mean", 1.0, [2.0, 2.0, 1.0]),
    ("worst", 1.0, [1.0, 2.0, -1.0]),
    # population std of (1, 3, 2) and (-1, 1, 3) is sqrt(2/3) and sqrt(8/3); (2, 2, 2) has none
    ("uncertainty", 0.5, [2.0 - 0.5 * np.sqrt(2 / 3), 2.0, 1.0 - 0.5 * np.sqrt(8 / 3)]),
])
def test_objectives_by_hand(objective, coef, expected):
    ensemble = RewardEnsemble(MEMBERS, objective, uncertainty_coef=coef)
    np.testing.assert_allclose(ensemble(PROMPTS, RESPONSES), expected, rtol=1e-6)


def test_standardisation_and_member_scores():
    ensemble = RewardEnsemble(MEMBERS, "worst", shifts=[1.0, 3.0, 0.0], scales=[2.0, 1.0, 4.0])
    scores = ensemble.member_scores(PROMPTS, RESPONSES)
    np.testing.assert_allclose(scores, [[0.0, 0.5, -1.0], [0.0, -1.0, -2.0], [0.5, 0.5, 0.75]])
    np.testing.assert_allclose(ensemble(PROMPTS, RESPONSES), [0.0, -1.0, -2.0])
    np.testing.assert_allclose(combine(scores, "mean"), scores.mean(0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown ensemble objective"):
        RewardEnsemble(MEMBERS, "median")
    with pytest.raises(ValueError, match="positive scales"):
        RewardEnsemble(MEMBERS, scales=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="at least one member"):
        RewardEnsemble([])
    with pytest.raises(FileNotFoundError, match="build it with `rlhf-gym build-ensemble`"):
        RewardEnsemble.from_pretrained("/nonexistent/ensemble")


def test_env_accepts_the_ensemble(task, ref_model, tokenizer):
    ensemble = RewardEnsemble([words(1.0), words(-0.5, offset=2.0)], "worst")
    env = RLHFEnv(task=task, ref_model=ref_model, tokenizer=tokenizer, reward_model=ensemble, beta=0.0)
    env.reset(seed=0, options={"prompt_index": 3})
    for token in tokenizer("great great great .", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]:
        _, reward, terminated, _truncated, info = env.step(token)
    assert terminated
    assert info["response_text"] == "great great great ."
    assert info["proxy_reward"] == pytest.approx(min(4.0, -0.5 * 4 + 2.0))  # worst of 4.0 and 0.0
    assert reward == pytest.approx(info["proxy_reward"])


@pytest.mark.skipif(not (DEFAULT_ENSEMBLE_DIR / "ensemble.json").exists(), reason="ensemble not built")
def test_registered_ensemble_id_scores_with_the_shipped_members():
    assert isinstance(ENV_IDS["RLHF-Reviews-Ensemble-v0"]["reward_model"], LazyRewardEnsemble)
    env = gym.make("RLHF-Reviews-Ensemble-v0")
    env.reset(seed=1)
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    lazy = env.unwrapped.reward_fn
    shipped = RewardEnsemble.from_pretrained(DEFAULT_ENSEMBLE_DIR, lazy.objective, lazy.uncertainty_coef)
    assert info["proxy_reward"] == pytest.approx(float(shipped([info["prompt"]], [info["response_text"]])[0]), abs=1e-5)
    assert len(shipped.members) == 3
    assert ENV_IDS["RLHF-Reviews-Ensemble-v0"]["reward_model"]._ensemble is None  # the registry's copy stays unloaded
    copy.deepcopy(lazy)  # a loaded ensemble still copies
