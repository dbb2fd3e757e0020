"""User-facing units: checkpoints and callback frequencies counted in responses at iteration boundaries (comparisons at
optimizer steps for the offline algorithms), the learning curve against responses, and ``TokenPPO.load(env=...)``
following the given env's KL coefficient, never silently."""

import warnings

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.agents.callbacks import ComparisonCheckpoint, EveryNResponses, ResponseCheckpoint, checkpoint_path
from rlhf_gym.errors import ConfigError
from rlhf_gym.plots import learning_curve_figure, plot_learning_curve, pyplot


def tiny_env(task, **env_kwargs):
    return RLHFVecEnv(num_envs=4, task=task, max_new_tokens=6, **{"beta": 0.1, **env_kwargs})


def tiny_agent(task, **env_kwargs):
    return TokenPPO("TransformerPolicy", tiny_env(task, **env_kwargs), n_epochs=1, batch_size=4, seed=0, device="cpu")


class Record(BaseCallback):
    """Records (responses, iterations, updates) at each call; returns ``result``."""

    def __init__(self, result=True):
        super().__init__()
        self.calls, self.result = [], result

    def _on_step(self) -> bool:
        self.calls.append((self.model.num_responses, self.model.n_rollouts, self.model._n_updates))
        return self.result


def saved_responses(directory):
    return sorted(int(p.name.split("_")[1]) for p in directory.glob("agent_*_responses.zip"))


def test_checkpoints_and_callbacks_every_n_responses_fall_on_iteration_boundaries(task, tmp_path):
    agent = tiny_agent(task)  # 4 responses per iteration
    every = {n: ResponseCheckpoint(tmp_path / f"every{n}", n) for n in (4, 6, 8)}
    record = Record()
    agent.learn(total_responses=12, callback=[*every.values(), EveryNResponses(6, record)])
    assert (agent.n_rollouts, agent.num_responses) == (3, 12)
    # after 4, 8 and 12 responses; the first boundaries at or past 6 and 12; at or past 8 only (16 is not reached)
    assert saved_responses(tmp_path / "every4") == [4, 8, 12]  # the last one after the last update
    assert saved_responses(tmp_path / "every6") == [8, 12]
    assert saved_responses(tmp_path / "every8") == [8]
    assert record.calls == [(8, 2, 2), (12, 3, 3)]  # whole iterations: as many updates as rollouts
    checkpoint = TokenPPO.load(checkpoint_path(tmp_path / "every8", 8), device="cpu")
    assert (checkpoint.num_responses, checkpoint.n_rollouts, checkpoint._n_updates) == (8, 2, 2)
    # a continued run counts on from the responses it has done: 16 is the next multiple of 8
    agent.learn(total_responses=20, callback=every[8], reset_num_timesteps=False)
    assert saved_responses(tmp_path / "every8") == [8, 16]
    with pytest.raises(ConfigError, match="n_responses"):
        EveryNResponses(0, record)


def test_a_list_of_callbacks_runs_beside_the_progress_bar(task, tmp_path):
    """SB3 takes one callback, a list or a CallbackList; with the response progress bar a list stays a list of callbacks
    (it once became a list inside a list, which SB3 cannot call)."""
    agent, record = tiny_agent(task), Record()
    agent.learn(total_responses=8, callback=[ResponseCheckpoint(tmp_path, 4), EveryNResponses(4, record)],
                progress_bar=True)
    assert saved_responses(tmp_path) == [4, 8] and [call[0] for call in record.calls] == [4, 8]


class FakeOfflineAgent:
    """What :class:`ComparisonCheckpoint` reads of an offline agent: its comparison counter and ``save``."""

    def __init__(self, num_comparisons=0):
        self.num_comparisons, self.saved = num_comparisons, []

    @property
    def num_timesteps(self):
        return self.num_comparisons

    def save(self, path):
        self.saved.append((path.name, self.num_comparisons))


def train_offline(agent, callback, steps, batch=64):
    callback.model = agent
    callback.on_training_start({}, {})
    for _ in range(steps):
        agent.num_comparisons += batch  # one optimizer step
        assert callback.on_step()


def test_offline_checkpoints_fall_on_the_first_step_past_each_multiple_of_comparisons(tmp_path):
    agent, every = FakeOfflineAgent(), ComparisonCheckpoint(tmp_path, 100)
    train_offline(agent, every, steps=4)  # 64, 128, 192, 256 comparisons
    assert agent.saved == [("agent_00000128_comparisons.zip", 128), ("agent_00000256_comparisons.zip", 256)]
    assert checkpoint_path(tmp_path, 128, unit="comparisons").name == "agent_00000128_comparisons.zip"
    # a resumed run counts on from the comparisons it has done: 300 is the next multiple of 100
    resumed = FakeOfflineAgent(num_comparisons=256)
    train_offline(resumed, ComparisonCheckpoint(tmp_path, 100), steps=1)
    assert resumed.saved == [("agent_00000320_comparisons.zip", 320)]
    with pytest.raises(ConfigError, match="every_comparisons"):
        ComparisonCheckpoint(tmp_path, 0)


def test_a_callback_returning_false_stops_before_the_next_rollout_is_learned(task):
    agent = tiny_agent(task)
    stop = Record(result=False)
    agent.learn(total_responses=40, callback=EveryNResponses(4, stop))
    assert stop.calls == [(4, 1, 1)]
    assert (agent.num_responses, agent._n_updates) == (4, 1)


def test_the_learning_curve_is_drawn_against_responses(tmp_path):
    rows = [{"iteration": i, "responses": 64 * i, "timesteps": 64 * 24 * i, "proxy_reward": 0.1 * i,
             "gold_reward": 0.05 * i, "kl": 0.5 * i, "beta": 0.1} for i in (1, 2, 3)]
    fig = learning_curve_figure(rows)
    reward_ax, kl_ax = fig.axes
    assert "responses" in reward_ax.get_xlabel() and "token" not in reward_ax.get_xlabel()
    for line in (*reward_ax.get_lines(), *kl_ax.get_lines()):
        assert list(line.get_xdata()) == [64, 128, 192]
    pyplot().close(fig)
    plot_learning_curve(rows, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_load_follows_the_given_envs_kl_coefficient_and_says_so(task, tmp_path):
    agent = tiny_agent(task)  # fixed beta 0.1
    agent.save(tmp_path / "agent.zip")
    env = tiny_env(task, beta=0.3)
    with pytest.warns(UserWarning, match=r"fixed beta 0\.3.*fixed beta 0\.1"):
        loaded = TokenPPO.load(tmp_path / "agent.zip", env=env, device="cpu")
    assert env.beta == loaded.batched_env.beta == pytest.approx(0.3)
    same = tiny_env(task, beta=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings: no warning
        TokenPPO.load(tmp_path / "agent.zip", env=same, device="cpu")
    assert same.beta == pytest.approx(0.1)
    # set_env follows the new env the same way
    other = tiny_env(task, beta=0.2)
    with pytest.warns(UserWarning, match=r"fixed beta 0\.2.*fixed beta 0\.3"):
        loaded.set_env(other)
    assert loaded.batched_env.beta == pytest.approx(0.2)


def test_load_continues_an_adaptive_beta_only_for_the_same_controller(task, tmp_path):
    agent = tiny_agent(task, kl_target=0.01, kl_horizon=100)
    agent.learn(total_responses=4)
    moved = agent.batched_env.beta
    assert moved != pytest.approx(0.1)
    agent.save(tmp_path / "agent.zip")
    agent.save(tmp_path / "legacy.zip", exclude=["kl_controller_settings"])  # as saved before the settings were
    for name in ("agent.zip", "legacy.zip"):  # a resumed run: the same settings continue the adaptive beta, silently
        env = tiny_env(task, kl_target=0.01, kl_horizon=100)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            TokenPPO.load(tmp_path / name, env=env, device="cpu")
        assert env.beta == pytest.approx(moved)
    env = tiny_env(task, kl_target=0.5, kl_horizon=100)  # another target: the env's controller as built
    with pytest.warns(UserWarning, match=r"kl_target 0\.5.*kl_target 0\.01"):
        TokenPPO.load(tmp_path / "agent.zip", env=env, device="cpu")
    assert env.beta == pytest.approx(0.1) and env.batched_env.kl_controller.target == 0.5
