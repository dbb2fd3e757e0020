"""Bridge from the batched RLHF env (:class:`rlhf_gym.envs.RLHFVectorEnv`) to Stable-Baselines3's ``VecEnv`` interface.

SB3 resets a finished row within the same ``step`` and passes the last observation of the episode in
``infos[i]["terminal_observation"]``; the episode's final info (proxy reward, KL, gold reward, text...)
is in ``infos[i]`` too, with ``infos[i]["episode"] = {"r", "l"}`` as SB3's Monitor writes it.

Lock-step agents (:class:`rlhf_gym.agents.TokenPPO`) drive :attr:`RLHFVecEnv.batched_env` directly through its public
surface (:class:`rlhf_gym.envs.RLHFEnvSurface` plus ``reset``/``step``), because their rows must wait for each other
instead of restarting. They refuse a ``VecEnvWrapper`` around the bridge rather than silently bypass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvWrapper

from rlhf_gym.envs import RLHFEnvSurface, RLHFVectorEnv
from rlhf_gym.errors import ConfigError

BATCHED_METHODS = ("action_masks",)
"""Methods of the batched env whose result has one row per env (``action_masks`` for MaskablePPO)."""


def make_batched_env(env_id: str, num_envs: int, **kwargs: Any) -> RLHFVectorEnv:
    """``gym.make_vec(env_id)`` through Gymnasium's registry (so the id's registered arguments, and ids registered
    by third parties, apply), with autoreset disabled for lock-step agents; ``kwargs`` override the id's."""
    try:  # an unknown id as a ConfigError (a user's mistake), not Gymnasium's own error type
        gym.spec(env_id)
    except gym.error.Error as error:
        raise ConfigError(f"unknown env id {env_id!r}: {error}") from None
    # vector_entry_point: the env is batched itself (one model pass per step for all rows), not N copies of a single env.
    # Autoreset disabled: lock-step agents keep finished rows waiting; this bridge resets them itself, SB3's way
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", autoreset_mode="disabled",
                       **kwargs)
    if not isinstance(env.unwrapped, RLHFEnvSurface):
        raise ConfigError(f"env id {env_id!r} does not make an RLHF batched env (got {type(env.unwrapped).__name__})")
    return env.unwrapped


class RLHFVecEnv(VecEnv):
    """SB3 ``VecEnv`` over one batched RLHF environment (created with ``autoreset_mode="disabled"``).

    :param num_envs: rows; or pass ``vector_env`` to wrap an existing one, or ``env_id`` to build one from the
        Gymnasium registry.
    :param env_id: a registered id (``"RLHF-v0"``...); its registered keyword arguments apply, ``kwargs`` override.
    :param kwargs: fields of :class:`rlhf_gym.envs.RLHFEnvConfig`.
    """

    def __init__(self, num_envs: int = 8, vector_env: RLHFVectorEnv | None = None, env_id: str | None = None,
                 **kwargs: Any):
        if vector_env is None:
            vector_env = (make_batched_env(env_id, num_envs, **kwargs) if env_id is not None
                          else RLHFVectorEnv(num_envs=num_envs, autoreset_mode="disabled", **kwargs))
        elif vector_env.metadata["autoreset_mode"] != AutoresetMode.DISABLED:
            raise ConfigError("RLHFVecEnv needs a vector env built with autoreset_mode='disabled'")
        self.batched_env: RLHFVectorEnv = vector_env
        """The Gymnasium batched env; use only its public surface (:class:`rlhf_gym.envs.RLHFEnvSurface`)."""
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None  # VecEnv.seed's value, applied at the next reset only (SB3's convention)
        # each row's return so far: SB3 reads episode returns from Monitor's info["episode"], which no wrapper adds here
        self._returns = np.zeros(self.num_envs)

    @property
    def kl_controller(self):
        return self.batched_env.kl_controller

    @property
    def beta(self) -> float:
        return self.batched_env.beta

    def reset(self):
        obs, _ = self.batched_env.reset(seed=self._seed)
        self._seed = None  # reseeding on every reset would repeat the same prompts
        self._returns[:] = 0.0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        # nothing runs asynchronously: the batched env steps all rows at once in step_wait
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.batched_env.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        infos = row_infos(info, self.num_envs)
        # SB3's VecEnv contract: a finished row restarts within the same step and its last observation goes in the
        # info (the env's own autoreset is off, so the bridge resets the finished rows itself, with a reset_mask)
        if dones.any():
            for row in np.flatnonzero(dones):
                infos[row]["terminal_observation"] = {k: v[row] for k, v in obs.items()}
                # SB3 bootstraps a truncated episode from the value of its terminal observation, a terminated one not
                infos[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
                infos[row]["episode"] = {"r": float(self._returns[row]), "l": int(infos[row]["response_length"])}
            self._returns[dones] = 0.0
            obs, _ = self.batched_env.reset(options={"reset_mask": dones})
        return obs, rewards.astype(np.float32), dones, infos  # float32: what SB3's buffers hold

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self._seed = seed
        return [None] * self.num_envs

    def close(self) -> None:
        self.batched_env.close()

    def render(self, mode: str | None = None):
        return self.batched_env.render()

    # The rows are one object, not one env each: an attribute is the batched env's, the same for every index, and
    # set_attr sets it for all rows whatever the indices
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.batched_env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.batched_env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        # called once for all rows (MaskablePPO asks env_method("action_masks") at every step)
        result = getattr(self.batched_env, method_name)(*method_args, **method_kwargs)
        if method_name in BATCHED_METHODS:  # one row of the batched result per env
            return [result[i] for i in self._get_indices(indices)]
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        # no Gymnasium wrapper sits around the rows (SB3 asks about Monitor; the bridge writes its episode info itself)
        return [False] * len(self._get_indices(indices))


def row_infos(info: dict[str, Any], num_rows: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (``info[key]`` over rows, ``info["_" + key]`` the rows where it is set) as one
    dict per row, with NumPy scalars turned into Python ones."""
    # SB3 wants a list of per-row dicts; a row gets a key only where its "_" mask is set, so a row whose episode did
    # not end has no final info (what callers test for, e.g. "proxy_reward" in info)
    rows: list[dict[str, Any]] = [{} for _ in range(num_rows)]
    for key, value in info.items():
        if not key.startswith("_"):
            for row in np.flatnonzero(info["_" + key]):
                # Python scalars for the callers (json, for one, cannot encode NumPy's int64, float32 or bool_)
                rows[row][key] = value[row].item() if isinstance(value[row], np.generic) else value[row]
    return rows


def unwrap_bridge(env: VecEnv) -> RLHFVecEnv:
    """The bridge itself, or a clear error for a ``VecEnvWrapper`` that a lock-step agent would bypass."""
    if isinstance(env, VecEnvWrapper):
        raise TypeError(f"{type(env).__name__} wraps the RLHF env, but lock-step agents drive the batched env directly "
                        "and would bypass it; pass the RLHFVecEnv itself (TokenPPO has normalize_rewards=True for "
                        "VecNormalize's reward scaling)")
    if not isinstance(env, RLHFVecEnv):
        raise TypeError(f"needs an rlhf_gym.agents.RLHFVecEnv (the batched RLHF env), got {type(env).__name__}; "
                        "plain stable_baselines3.PPO runs on single RLHF-v0 envs")
    return env
