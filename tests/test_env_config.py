"""The env's config and public surface: validation, deprecated names, config == keywords, no SB3 import."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from rlhf_gym.envs import RLHFEnv, RLHFEnvConfig, RLHFVectorEnv
from rlhf_gym.errors import ConfigError


def test_gym_make_does_not_import_stable_baselines3():
    code = ("import sys, gymnasium as gym, rlhf_gym; gym.make('RLHF-v0'); "
            "gym.make_vec('RLHF-v0', num_envs=2); assert 'stable_baselines3' not in sys.modules, 'SB3 imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("field, value, message", [
    ("kl_placement", "dense", "kl_placement must be one of"),
    ("kl_estimator", "k2", "kl_estimator must be one of"),
    ("temperature", 0.0, "temperature must be a finite number > 0"),
    ("beta", -0.1, "beta must be a finite number >= 0"),
    ("kl_target", 0.0, "kl_target must be a finite number > 0"),
    ("max_new_tokens", 0, "max_new_tokens must be >= 1"),
    ("mask_top_p", 1.5, "mask_top_p must be in"),
    ("mask_model", "other", "mask_model must be one of"),
])
def test_bad_values_are_refused_when_the_config_is_built(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RLHFEnvConfig(**{field: value})


def test_deprecated_names_warn_and_map_to_the_new_fields():
    with pytest.warns(FutureWarning, match="'target_kl' is deprecated; use 'kl_target'"):
        config = RLHFEnvConfig.from_kwargs(target_kl=2.0)
    assert config.kl_target == 2.0
    with pytest.warns(FutureWarning, match="'kl_penalty' is deprecated; use 'kl_placement'"):
        assert RLHFEnvConfig.from_kwargs(kl_penalty="per_token").kl_placement == "per_token"
    with pytest.raises(ConfigError, match="give 'kl_target' only"):
        RLHFEnvConfig.from_kwargs(target_kl=1.0, kl_target=1.0)
    with pytest.raises(ConfigError, match=r"unknown env argument\(s\) \['betta'\]"):
        RLHFEnvConfig.from_kwargs(betta=0.1)


def test_a_config_object_and_keywords_build_the_same_env(task):
    tokens = [5, 9, 12]
    rewards = []
    for env in (RLHFEnv(RLHFEnvConfig(task=task, beta=0.3, max_new_tokens=3)), RLHFEnv(task=task, beta=0.3, max_new_tokens=3)):
        env.reset(seed=1)
        rewards.append([env.step(t)[1] for t in tokens])
    assert rewards[0] == rewards[1]
    with pytest.raises(TypeError, match="either config or keyword arguments"):
        RLHFEnv(RLHFEnvConfig(task=task), beta=0.2)


def test_the_public_surface_describes_the_env(task, tokenizer):
    env = gym.make("RLHF-v0", max_new_tokens=7).unwrapped
    assert env.max_new_tokens == 7 and env.beta == 0.1 and env.task.name == "reviews"
    assert env.vocab_size == env.action_space.n and env.stop_token_id == tokenizer.eos_token_id
    assert env.prompt_ids[0] == tokenizer(env.prompts[0], add_special_tokens=False)["input_ids"]
    assert not env.has_action_masks and not env.mask_model_refreshable
    assert env.config.max_new_tokens == 7
    batched = RLHFVectorEnv(num_envs=2, task=task, mask_top_p=0.9)
    _, _info = batched.reset(seed=0)
    assert batched.has_action_masks and batched.mask_model_refreshable
    masks = batched.action_masks()
    assert isinstance(masks, np.ndarray) and masks.shape == (2, batched.vocab_size)
    assert batched.action_masks(as_tensor=True).cpu().numpy().tolist() == masks.tolist()


@pytest.mark.parametrize("field, value, message", [
    ("beta", float("nan"), "beta must be a finite number >= 0, got nan"),
    ("beta", float("inf"), "beta must be a finite number >= 0, got inf"),
    ("temperature", float("nan"), "temperature must be a finite number > 0, got nan"),
    ("temperature", float("inf"), "temperature must be a finite number > 0, got inf"),
    ("kl_target", float("inf"), "kl_target must be a finite number > 0, got inf"),
    ("no_eos_penalty", float("nan"), "no_eos_penalty must be a finite number, got nan"),
    ("max_new_tokens", -3, "max_new_tokens must be >= 1, got -3"),
    ("max_new_tokens", 2.5, "max_new_tokens must be an integer, got 2.5"),
])
def test_non_finite_and_out_of_range_values_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RLHFEnvConfig(**{field: value})


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),  # was silently replaced by the task's 24
    ({"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),  # would reward the KL
    ({"beta": float("inf")}, "beta must be a finite number >= 0, got inf"),
])
def test_gym_make_refuses_what_it_would_silently_change(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gym.make("RLHF-v0", **kwargs)
