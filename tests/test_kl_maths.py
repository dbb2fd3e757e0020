"""The KL penalty's maths by hand: the k1/k3 estimators, the adaptive controller's update (also for a batch of
several episodes in the env), and the controllers' state."""

import math

import numpy as np
import pytest
import torch

from rlhf_gym.envs import RLHFVectorEnv
from rlhf_gym.errors import ConfigError
from rlhf_gym.kl import AdaptiveKLController, FixedKLController, kl_per_token, make_kl_controller


def test_k1_and_k3_by_hand():
    policy = torch.tensor([[-1.0, -0.5, -2.0, -3.0]])
    ref = torch.tensor([[-2.0, -0.5, -1.0, -1.5]])  # log-ratios 1, 0, -1, -1.5
    torch.testing.assert_close(kl_per_token(policy, ref), torch.tensor([[1.0, 0.0, -1.0, -1.5]]))
    torch.testing.assert_close(kl_per_token(policy, ref, "k1"), torch.tensor([[1.0, 0.0, -1.0, -1.5]]))
    # k3 = (r - 1) - log r with r = exp(-log_ratio): e^-1 - 1 + 1, 0, e - 1 - 1, e^1.5 - 1 - 1.5
    expected = torch.tensor([[math.exp(-1.0), 0.0, math.e - 2.0, math.exp(1.5) - 2.5]])
    k3 = kl_per_token(policy, ref, "k3")
    torch.testing.assert_close(k3, expected)
    assert k3.shape == policy.shape and (k3 >= 0).all()


def test_k3_is_accurate_for_tiny_log_ratios():
    log_ratio = torch.tensor([1e-4, -1e-4], dtype=torch.float32)
    k3 = kl_per_token(log_ratio, torch.zeros(2), "k3")
    # (r - 1) - log r = x^2 / 2 + O(x^3) for log r = -x; expm1 keeps it exact in float32
    torch.testing.assert_close(k3, log_ratio ** 2 / 2, rtol=1e-3, atol=0)


def test_unknown_estimator_is_named():
    with pytest.raises(ConfigError, match=r"unknown KL estimator 'k2'; choose one of \('k1', 'k3'\)"):
        kl_per_token(torch.zeros(1), torch.zeros(1), "k2")


@pytest.mark.parametrize("kl, error", [
    (3.0, 0.2),    # KL / target - 1 = 0.5, clipped to 0.2
    (2.2, 0.1),    # inside the clip range
    (2.0, 0.0),    # on target: beta stays
    (1.8, -0.1),
    (0.0, -0.2),   # -1 clipped to -0.2
])
def test_adaptive_update_for_a_batch_of_samples(kl, error):
    controller = AdaptiveKLController(beta=0.1, target=2.0, horizon=100)
    controller.update(kl, n_samples=8)
    assert controller.beta == pytest.approx(0.1 * (1 + error * 8 / 100), rel=1e-12)
    controller.update(kl, n_samples=1)  # the correction compounds and scales with the batch size
    assert controller.beta == pytest.approx(0.1 * (1 + error * 8 / 100) * (1 + error / 100), rel=1e-12)


def test_adaptive_controller_refuses_bad_settings_and_non_finite_kl():
    with pytest.raises(ConfigError, match=r"target KL and horizon must be > 0, got 0\.0 and 10"):
        AdaptiveKLController(0.1, target=0.0, horizon=10)
    with pytest.raises(ConfigError, match=r"got 1\.0 and 0$"):
        AdaptiveKLController(0.1, target=1.0, horizon=0)
    assert AdaptiveKLController(0.1, target=1.0).horizon == 10000
    assert AdaptiveKLController(0.1, target=1e-9, horizon=1).horizon == 1  # the smallest valid settings
    controller = AdaptiveKLController(0.1, target=1.0, horizon=10)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-finite KL"):
            controller.update(bad, 4)
    assert controller.beta == 0.1


def test_controller_state_round_trips():
    controller = AdaptiveKLController(0.5, target=3.0, horizon=50)
    controller.update(6.0, 10)
    state = controller.state_dict()
    assert state == {"beta": pytest.approx(0.5 * 1.04), "target": 3.0, "horizon": 50}
    other = AdaptiveKLController(0.1, target=1.0, horizon=10)
    other.load_state_dict(state)
    assert (other.beta, other.target, other.horizon) == (controller.beta, 3.0, 50)
    other.load_state_dict({"beta": 0.2})  # an older state without target/horizon keeps the current ones
    assert (other.beta, other.target, other.horizon) == (0.2, 3.0, 50)
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 64)
    assert fixed.beta == 0.3 and fixed.state_dict() == {"beta": 0.3}
    fixed.load_state_dict({"beta": "0.7"})
    assert fixed.beta == 0.7


def test_make_kl_controller():
    fixed = make_kl_controller(0.2)
    assert isinstance(fixed, FixedKLController) and fixed.beta == 0.2
    adaptive = make_kl_controller(0.2, target_kl=4.0, horizon=7)
    assert isinstance(adaptive, AdaptiveKLController)
    assert (adaptive.beta, adaptive.target, adaptive.horizon) == (0.2, 4.0, 7)
    assert make_kl_controller(0.2, target_kl=4.0).horizon == 10000


def run_batch(task, ref_model, tokenizer, **kwargs):
    """Four rows with prompts of different lengths, the same three-token response, finishing in the same step."""
    env = RLHFVectorEnv(num_envs=4, task=task, ref_model=ref_model, tokenizer=tokenizer, prompts=task.train_prompts[:8],
                        reward_model=lambda prompts, responses: [0.0] * len(prompts), autoreset_mode="disabled",
                        max_new_tokens=5, beta=0.1, **kwargs)
    env.reset(seed=0, options={"prompt_indices": [0, 3, 5, 7]})
    tokens = tokenizer("great .", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    logprobs = -np.linspace(0.2, 2.0, 4 * len(tokens)).reshape(4, len(tokens))
    for t, token in enumerate(tokens):
        env.report_logprobs(logprobs[:, t])
        _, _, terminated, _, info = env.step(np.full(4, token))
    assert terminated.all()
    return env, info["kl"]


def test_env_updates_the_adaptive_beta_once_per_batch_with_the_mean_kl(task, ref_model, tokenizer):
    _, kls = run_batch(task, ref_model, tokenizer)
    assert np.ptp(kls) > 0.1  # the rows differ, so the mean differs from any one row
    target = 1.1 * float(np.mean(kls))
    env, again = run_batch(task, ref_model, tokenizer, kl_target=target, kl_horizon=10)
    np.testing.assert_allclose(again, kls, atol=1e-6)
    assert env.beta == pytest.approx(0.1 * (1 + (1 / 1.1 - 1) * 4 / 10), rel=1e-6)
