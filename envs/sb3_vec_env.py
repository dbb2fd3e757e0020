"""Bridge from :class:`envs.vector_env.RLHFVectorEnv` to Stable-Baselines3's ``VecEnv`` interface.

SB3 resets a finished row within the same ``step`` and passes the last observation of the episode in
``infos[i]["terminal_observation"]``; the episode's final info (proxy reward, KL, gold reward, text...)
is in ``infos[i]`` too, with ``infos[i]["episode"] = {"r", "l"}`` as SB3's Monitor writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from .vector_env import RLHFVectorEnv


BATCHED_METHODS = ("action_masks",)
"""Methods of the batched env whose result has one row per env (``action_masks`` for MaskablePPO)."""


class RLHFVecEnv(VecEnv):
    """SB3 ``VecEnv`` over one batched RLHF environment (created with ``autoreset_mode="disabled"``).

    :param num_envs: rows; or pass ``vector_env`` to wrap an existing one.
    :param kwargs: keyword arguments of :class:`envs.rlhf_env.RLHFEnv`.
    """

    def __init__(self, num_envs: int = 8, vector_env: RLHFVectorEnv | None = None, **kwargs: Any):
        if vector_env is None:
            vector_env = RLHFVectorEnv(num_envs=num_envs, autoreset_mode="disabled", **kwargs)
        elif vector_env.metadata["autoreset_mode"].value != "Disabled":
            raise ValueError("RLHFVecEnv needs a vector env built with autoreset_mode='disabled'")
        self.vector_env = vector_env
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None
        self._returns = np.zeros(self.num_envs)

    @property
    def kl_controller(self):
        return self.vector_env.kl_controller

    @property
    def beta(self) -> float:
        return self.vector_env.beta

    def reset(self):
        obs, _ = self.vector_env.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.vector_env.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        for key, value in info.items():
            if not key.startswith("_"):
                for row in np.flatnonzero(info["_" + key]):
                    infos[row][key] = value[row].item() if hasattr(value[row], "item") else value[row]
        if dones.any():
            for row in np.flatnonzero(dones):
                infos[row]["terminal_observation"] = {k: v[row] for k, v in obs.items()}
                infos[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
                infos[row]["episode"] = {"r": float(self._returns[row]), "l": int(infos[row]["response_length"])}
            self._returns[dones] = 0.0
            obs, _ = self.vector_env.reset(options={"reset_mask": dones})
        return obs, rewards.astype(np.float32), dones, infos

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self._seed = seed
        return [None] * self.num_envs

    def close(self) -> None:
        self.vector_env.close()

    def render(self, mode: str | None = None):
        return self.vector_env.render()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.vector_env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.vector_env, method_name)(*method_args, **method_kwargs)
        if method_name in BATCHED_METHODS:  # one row of the batched result per env
            return [result[i] for i in self._get_indices(indices)]
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
