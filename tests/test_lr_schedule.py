"""The learning-rate schedule of the online algorithms (``--lr-schedule``): its values by hand, the rate each update of
a run reads (in responses, as CleanRL's ``anneal_lr``), a resumed run, and the defaults of each algorithm."""

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.agents.experiment import TrainConfig
from rlhf_gym.agents.schedules import learning_rate_schedule
from rlhf_gym.errors import ConfigError

RATE = 2e-4


class UpdateRates(BaseCallback):
    """The optimiser's rate after each update (read at the start of the next rollout, and once at the end)."""

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def _on_rollout_start(self) -> None:
        if self.model._n_updates:
            self.rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.rates.append(self.model.policy.optimizer.param_groups[0]["lr"])


def small_agent(task, schedule: str) -> TokenPPO:
    env = RLHFVecEnv(num_envs=4, task=task, max_new_tokens=4, beta=0.1)
    return TokenPPO("TransformerPolicy", env, learning_rate=learning_rate_schedule(RATE, schedule), n_epochs=1,
                    batch_size=4, seed=0, device="cpu")


def test_the_schedules_by_hand():
    assert learning_rate_schedule(RATE, "constant") == RATE
    linear = learning_rate_schedule(RATE, "linear")
    assert [linear(p) for p in (1.0, 0.75, 0.5, 0.25, 0.0)] == pytest.approx([2e-4, 1.5e-4, 1e-4, 5e-5, 0.0])
    with pytest.raises(ConfigError, match="--lr-schedule must be one of constant, linear, got 'cosine'"):
        learning_rate_schedule(RATE, "cosine")


def test_each_update_reads_the_share_of_the_budget_left_when_its_rollout_began(task):
    """4 rollouts of 4 responses: updates at 1, 3/4, 2/4, 1/4 of the rate (the last one is not wasted at 0)."""
    agent, rates = small_agent(task, "linear"), UpdateRates()
    agent.learn(total_responses=16, callback=rates)
    assert agent.n_rollouts == 4
    assert rates.rates == pytest.approx([RATE, 0.75 * RATE, 0.5 * RATE, 0.25 * RATE])


def test_a_budget_that_is_not_a_multiple_of_the_rollout_still_ends_above_zero(task):
    agent, rates = small_agent(task, "linear"), UpdateRates()
    agent.learn(total_responses=6, callback=rates)  # two rollouts (8 responses): the second began with 4 of 6 sampled
    assert rates.rates == pytest.approx([RATE, RATE / 3])


def test_a_resumed_run_reads_the_rates_of_an_uninterrupted_one(task):
    agent, rates = small_agent(task, "linear"), UpdateRates()
    agent.num_responses = 8  # as a checkpoint of this run after two rollouts restores it
    agent.learn(total_responses=16, callback=rates, reset_num_timesteps=False)
    assert rates.rates == pytest.approx([0.5 * RATE, 0.25 * RATE])


def test_a_constant_rate_stays(task):
    agent, rates = small_agent(task, "constant"), UpdateRates()
    agent.learn(total_responses=8, callback=rates)
    assert rates.rates == pytest.approx([RATE, RATE])


def test_the_defaults_of_each_algorithm_and_the_option():
    for algo in ("ppo", "nlpo", "rloo", "grpo"):  # as published with rlhf-gym 0.9
        assert TrainConfig(algo=algo).algorithm_config().lr_schedule == "constant"
        assert TrainConfig(algo=algo).algorithm_config().learning_rate == 1e-4
        assert TrainConfig(algo=algo, lr_schedule="linear").algorithm_config().lr_schedule == "linear"
    with pytest.raises(ConfigError, match="--lr-schedule: not an option of dpo"):
        TrainConfig(algo="dpo", lr_schedule="linear")
    with pytest.raises(ConfigError, match="--lr-schedule must be one of constant, linear, got 'step'"):
        TrainConfig(lr_schedule="step")


def test_the_studies_of_training_curves_keep_a_constant_rate():
    from rlhf_gym.cli import parse_dataclass
    from rlhf_gym.studies import iterated, sweep

    study = parse_dataclass(iterated.Args, "", ["--quick"])
    assert study.train_config(0, None).algorithm_config().lr_schedule == "constant"
    grid = parse_dataclass(sweep.Args, "", ["--quick"])
    assert sweep.train_config(grid, 0.1, 0).algorithm_config().lr_schedule == "constant"


def test_the_schedule_is_saved_with_the_agent(task, tmp_path):
    agent = small_agent(task, "linear")
    agent.learn(total_responses=4)
    agent.save(tmp_path / "agent.zip")
    loaded = TokenPPO.load(tmp_path / "agent.zip", env=agent.env, device="cpu")
    assert [loaded.lr_schedule(p) for p in (1.0, 0.5)] == pytest.approx([RATE, RATE / 2])
    assert loaded.num_responses == 4
