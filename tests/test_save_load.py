"""Saving and loading agents: SB3 zip round trip with beta and optimizer, checkpoints, HF export."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.envs import RLHFEnv


def small_agent(task, **env_kwargs):
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1, **env_kwargs)
    return TokenPPO("TransformerPolicy", env, n_epochs=2, batch_size=4, seed=0, device="cpu")


def test_save_load_round_trip_keeps_actions_beta_and_optimizer(task, tmp_path):
    agent = small_agent(task, kl_target=1.0)
    agent.learn(8 * 10, progress_bar=False)
    beta = agent.batched_env.beta
    assert beta != 0.1  # the adaptive controller moved
    agent.save(tmp_path / "agent.zip")
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1, kl_target=1.0)
    loaded = TokenPPO.load(tmp_path / "agent.zip", env=env, device="cpu")
    assert env.beta == pytest.approx(beta)
    assert loaded.num_timesteps == agent.num_timesteps
    single = RLHFEnv(task=task, max_new_tokens=10)
    obs, _ = single.reset(seed=5)
    for _ in range(5):
        a1, _ = agent.predict(obs, deterministic=True)
        a2, _ = loaded.predict(obs, deterministic=True)
        assert int(a1) == int(a2)
        obs, *_ = single.step(int(a1))
    saved_state = agent.policy.optimizer.state_dict()["state"]
    loaded_state = loaded.policy.optimizer.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    torch.testing.assert_close(saved_state[0]["exp_avg"], loaded_state[0]["exp_avg"])
    without_env = TokenPPO.load(tmp_path / "agent.zip", device="cpu")  # the policy's model path was saved
    torch.testing.assert_close(without_env.policy.lm.lm_head.weight, agent.policy.lm.lm_head.weight)


def test_export_loads_in_a_transformers_pipeline(task, tmp_path):
    from transformers import pipeline

    agent = small_agent(task)
    agent.export_pretrained(tmp_path / "policy")
    generator = pipeline("text-generation", model=str(tmp_path / "policy"), device="cpu")
    out = generator("the food was", max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"].startswith("the food was")


def test_eval_and_checkpoint_callbacks(task, tmp_path):
    agent = small_agent(task)
    eval_env = RLHFEnv(task=task, max_new_tokens=10)
    callbacks = [EvalCallback(eval_env, n_eval_episodes=2, eval_freq=5, log_path=str(tmp_path / "eval"), verbose=0),
                 CheckpointCallback(save_freq=5, save_path=str(tmp_path / "ckpt"), name_prefix="agent")]
    agent.learn(2 * 8 * 10, callback=callbacks, progress_bar=False)
    assert callbacks[0].last_mean_reward > -np.inf and (tmp_path / "eval" / "evaluations.npz").exists()
    checkpoints = sorted((tmp_path / "ckpt").glob("agent_*_steps.zip"))
    assert checkpoints
    TokenPPO.load(checkpoints[-1], env=agent.env, device="cpu")
