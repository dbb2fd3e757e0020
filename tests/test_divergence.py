"""Divergence guards and the response budget of TokenPPO: a NaN loss stops training before the update, a model with
non-finite weights is never saved, and ``learn(total_responses=...)`` runs exactly ceil(total / n_envs) iterations."""

import pytest
import torch

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.divergence import check_finite_loss, check_finite_parameters, non_finite_parameters
from rlhf_gym.errors import ConfigError, TrainingDivergedError


def small_agent(task, **kwargs):
    env = RLHFVecEnv(num_envs=4, task=task, max_new_tokens=6, beta=0.1)
    return TokenPPO("TransformerPolicy", env, n_epochs=1, batch_size=2, seed=0, device="cpu", **kwargs)


def test_check_finite_loss_names_where():
    check_finite_loss(torch.tensor(1.5), "step 1")
    with pytest.raises(TrainingDivergedError, match=r"the loss became nan at epoch 3: .*lower --learning-rate"):
        check_finite_loss(torch.tensor(float("nan")), "epoch 3")
    with pytest.raises(TrainingDivergedError, match="became inf"):
        check_finite_loss(torch.tensor(float("inf")), "epoch 3")


def test_non_finite_parameters_are_named_and_refused():
    layer = torch.nn.Linear(2, 2)
    assert non_finite_parameters(layer) == []
    with torch.no_grad():
        layer.bias[1] = float("nan")
    assert non_finite_parameters(layer) == ["bias"]
    with pytest.raises(TrainingDivergedError, match=r"refusing to save the model: 1 tensor\(s\) hold NaN/inf \(bias\)"):
        check_finite_parameters(layer, "the model")


def test_a_nan_loss_stops_training_before_the_weights_change(task, monkeypatch):
    agent = small_agent(task)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    evaluate = agent.policy.evaluate_sequences

    def nan_values(*args, **kwargs):
        logprobs, entropy, values = evaluate(*args, **kwargs)
        return logprobs, entropy, values * float("nan")

    monkeypatch.setattr(agent.policy, "evaluate_sequences", nan_values)
    with pytest.raises(TrainingDivergedError, match=r"at PPO iteration 1, epoch 1 \(policy-gradient loss .*value loss nan"):
        agent.learn(total_responses=4)
    after = agent.policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_save_and_export_refuse_non_finite_weights(task, tmp_path):
    agent = small_agent(task)
    with torch.no_grad():
        next(agent.policy.lm.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDivergedError, match="refusing to save the agent"):
        agent.save(tmp_path / "agent.zip")
    with pytest.raises(TrainingDivergedError, match="refusing to save the policy"):
        agent.export_pretrained(tmp_path / "policy")
    assert not list(tmp_path.iterdir())


def test_learn_counts_responses_exactly_and_resumes_to_the_same_total(task, tmp_path):
    agent = small_agent(task)
    agent.learn(total_responses=10)  # ceil(10 / 4) = 3 rollouts of 4
    assert (agent.n_rollouts, agent.num_responses) == (3, 12)
    agent.save(tmp_path / "agent.zip")
    resumed = TokenPPO.load(tmp_path / "agent.zip", env=agent.env, device="cpu")
    assert (resumed.n_rollouts, resumed.num_responses) == (3, 12)
    resumed.learn(total_responses=20, reset_num_timesteps=False)  # the total, not 20 more
    assert (resumed.n_rollouts, resumed.num_responses) == (5, 20)
    resumed.learn(total_responses=20, reset_num_timesteps=False)  # already spent: nothing happens
    assert resumed.n_rollouts == 5


def test_learn_takes_exactly_one_budget(task):
    agent = small_agent(task)
    with pytest.raises(ConfigError, match="exactly one budget"):
        agent.learn()
    with pytest.raises(ConfigError, match="exactly one budget"):
        agent.learn(100, total_responses=4)
    with pytest.raises(ConfigError, match="total_responses must be > 0"):
        agent.learn(total_responses=0)
