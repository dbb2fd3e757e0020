"""``RLHF-v0``: stage 3 of RLHF as a Gymnasium environment — one step is one token, one episode one response.

Reward (``kl_penalty="terminal"``, the seed's objective): 0 on intermediate steps and, at the end,
``r_phi(x, y) - beta * KL(x, y) - no_eos_penalty * [no EOS]`` with
``KL(x, y) = sum_t kl_t``, ``kl_t`` an estimator of ``log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)``
(Ziegler et al. 2019; Stiennon et al. 2020). With ``kl_penalty="per_token"`` step ``t`` pays
``-beta * kl_t`` and the last step adds ``r_phi - penalty``: the same sum, as dense rewards.

**The log-prob channel.** The env holds the frozen reference ``pi_ref`` but cannot see the acting policy.
An agent calls ``env.unwrapped.report_logprobs(log_pi_of_action)`` before each ``step``. Tokens with no
report use the fallback ``log pi = 0`` (exact for a deterministic agent); ``info["kl_source"]`` is
``"reported"``, ``"fallback:deterministic_policy"`` or ``"mixed"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .episodes import EpisodeBatch, EpisodeBatchOwner
from .setup import resolve_setup


class RLHFEnv(EpisodeBatchOwner, gym.Env):
    """Token-level RLHF environment.

    :param task: task id or :class:`rlhf_gym.Task` (default ``"reviews"``, the embedded task); ``None`` to
        give every model explicitly.
    :param ref_model: the frozen reference policy: HF name, path or model object (default: the task's SFT).
    :param tokenizer: the policy's tokenizer (default: the reference model's).
    :param reward_model: HF name/path, :class:`rlhf_gym.RewardModel`, or ``f(prompts, responses) -> scores``.
    :param prompts: list of strings, ``.jsonl``/``.txt`` file or dataset (default: the task's train prompts).
    :param max_new_tokens: response budget (truncation after it).
    :param max_prompt_tokens: prompt budget (default: the longest prompt).
    :param truncate_prompts: left-truncate longer prompts with a warning instead of raising.
    :param beta: KL coefficient (initial value when ``target_kl`` is set).
    :param target_kl: turns on the adaptive KL controller of Ziegler et al. (2019) with this target.
    :param kl_horizon: horizon (in episodes) of the adaptive controller.
    :param kl_penalty: ``"terminal"`` or ``"per_token"``.
    :param kl_estimator: ``"k1"`` or ``"k3"`` (see :mod:`rlhf_gym.kl`).
    :param stop_token: token (string or id) that ends an episode (default: EOS).
    :param no_eos_penalty: subtracted from the reward of a response that never emits the stop token.
    :param temperature: temperature of the reference log-probs (match the agent's sampling temperature).
    :param device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    :param mask_top_p: turn on NLPO action masks (``action_masks()``, for ``sb3_contrib.MaskablePPO``): the
        tokens in the top-p mass of the masking model.
    :param mask_top_k: also keep at most this many tokens.
    :param mask_min_tokens: keep at least this many tokens.
    :param mask_model: ``"policy_copy"`` (a copy of the reference that the agent refreshes with its policy's
        weights every few iterations, NLPO's default) or ``"reference"`` (the frozen reference).
    :param seed: seed of the first ``reset`` when that call gives none.
    :param render_mode: ``"ansi"`` (``render()`` returns text) or ``"human"`` (prints it).
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(self, task: Any = "reviews", render_mode: str | None = None, seed: int | None = None, **kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.setup = resolve_setup(task=task, **kwargs)
        self.render_mode = render_mode
        self._first_seed = seed
        self.state = EpisodeBatch(self.setup, 1)
        self.action_space = spaces.Discrete(self.setup.vocab_size)
        self.observation_space = self.setup.observation_space()
        self._needs_reset = True

    def report_logprobs(self, logprob: float) -> None:
        """Report ``log pi(a_t | s_t)`` of the action passed to the next ``step`` (the log-prob channel)."""
        self.state.report([logprob])

    def action_masks(self) -> np.ndarray:
        """NLPO mask of the allowed next tokens, bool [vocab] (needs ``mask_top_p`` or ``mask_top_k``)."""
        return self.state.action_masks()[0].cpu().numpy()

    def _observation(self) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.state.observation().items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a response to a random prompt; ``options={"prompt_index": i}`` picks one."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        options = options or {}
        index = options.get("prompt_index", int(self.np_random.integers(len(self.setup.prompts))))
        if not 0 <= index < len(self.setup.prompts):
            raise IndexError(f"prompt_index {index} outside [0, {len(self.setup.prompts)})")
        self.state.start(np.array([0]), np.array([index]))
        self._needs_reset = False
        return self._observation(), {"prompt": self.setup.prompts[index], "prompt_index": index}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called after the episode ended (or before any reset); call reset() first")
        action = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action {action} is outside the action space Discrete({self.action_space.n})")
        rows = np.array([0])
        terminated, truncated = self.state.append(rows, np.array([action]))
        finished = terminated | truncated
        rewards, infos = self.state.rewards(rows, finished)
        self._needs_reset = bool(finished[0])
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), infos[0]

    def render(self) -> str | None:
        text = self.state.render(0)
        if self.render_mode == "human":
            print(text)
            return None
        return text
