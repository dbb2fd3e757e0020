"""``RLHF-v0``: stage 3 of RLHF as a Gymnasium environment — one step is one token, one episode one response.

## Description

A prompt ``x`` is drawn from the task's training prompts; the agent writes a response ``y`` one token at a
time; at the end the reward model scores it and the KL leash to the frozen reference is paid:
``r_phi(x, y) - beta * KL(x, y)`` (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022).

## Arguments

An :class:`rlhf_gym.envs.RLHFEnvConfig`, or its fields as keyword arguments (``gym.make("RLHF-v0", beta=0.05)``), plus
``render_mode`` (``"ansi"``: ``render()`` returns the text; ``"human"``: prints it) and ``seed`` (of the first
``reset`` when that call gives none). Deprecated names: ``target_kl`` (now ``kl_target``), ``kl_penalty`` (now
``kl_placement``).

## Action and observation spaces

Action: ``Discrete(vocab_size)``, a token id of the policy's tokenizer. Observation: ``Dict(input_ids,
attention_mask)``, each ``Box(int64, (max_prompt_tokens + max_new_tokens,))``: the right-padded context
``[prompt, response so far, pad...]`` and its mask.

## Rewards

``kl_placement="terminal"`` (default): 0 on intermediate steps and, at the end,
``r_phi(x, y) - beta * KL(x, y) - no_eos_penalty * [no stop token]`` with ``KL(x, y) = sum_t kl_t`` and ``kl_t``
an estimator (``k1`` or ``k3``) of ``log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)``.
``kl_placement="per_token"``: step ``t`` pays ``-beta * kl_t`` and the last step adds ``r_phi - penalty`` (the
same sum, as dense rewards).

**The log-prob channel.** The env holds ``pi_ref`` but cannot see the acting policy. An agent calls
``env.unwrapped.report_logprobs(log_pi_of_action)`` before each ``step``. Tokens with no report use the fallback
``log pi = 0`` (exact for a deterministic agent); ``info["kl_source"]`` is ``"reported"``,
``"fallback:deterministic_policy"`` or ``"mixed"``. A report must be a finite number <= 0 (NaN, inf or a positive
value is refused: it would make the reward NaN or infinite); an action must be one integer token id.

## Episode end

Terminated when the agent emits the stop token (default EOS); truncated after ``max_new_tokens`` tokens. The
final ``info`` holds ``proxy_reward``, ``kl``, ``beta``, ``penalty``, ``terminal_reward``, ``ref_logprob``,
``ref_token_logprobs`` (``log pi_ref`` of every response token, an array), ``kl_source``, ``prompt``,
``response_text``, ``response_length``, ``eos`` and, for tasks with a gold reward, ``gold_reward`` and ``well_formed``.

## Version history

* v0: the embedded reviews task (see docs/envs.md). In rlhf-gym 0.2 the constructor's default ``beta`` became
  0.1 (it was 0.05), the value every published result used; rewards for a given beta are unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rlhf_gym.checks import is_number
from rlhf_gym.errors import ConfigError

from .config import RLHFEnvConfig
from .episodes import LOGPROB_RULE, MAX_LOGPROB, EpisodeBatch
from .setup import resolve_setup
from .surface import RLHFEnvSurface, check_reset_options, is_index


def make_config(config: RLHFEnvConfig | None, kwargs: dict[str, Any]) -> RLHFEnvConfig:
    """The env's config: ``config`` itself, or one built from keyword arguments (not both)."""
    # gym.make passes the registered and the user's arguments as keywords; code may build a config once and reuse
    # it. Mixing the two is refused, since it is unclear which would win.
    if config is None:
        return RLHFEnvConfig.from_kwargs(**kwargs)
    if not isinstance(config, RLHFEnvConfig):
        raise TypeError(f"config must be an RLHFEnvConfig, got {type(config).__name__}")
    if kwargs:
        raise TypeError(f"give either config or keyword arguments, not both (got {sorted(kwargs)})")
    return config


def as_token_id(action: Any, vocab_size: int) -> int:
    """``action`` as a token id: a Python or NumPy integer, or a 0-d integer array, in ``[0, vocab_size)``.

    Anything else (5.9, [7, 8], "5", None, True) is refused rather than converted into some token.
    """
    # bool is a subclass of int in Python, so it is excluded by name (True would otherwise become token 1)
    integer = isinstance(action, (int, np.integer)) and not isinstance(action, bool)
    # a 0-d integer array is accepted: SB3's predict() returns one for a single (unbatched) observation
    if isinstance(action, np.ndarray) and action.ndim == 0 and np.issubdtype(action.dtype, np.integer):
        integer = True
    if not integer:
        raise ConfigError(f"action {action!r} must be one integer token id in Discrete({vocab_size}) "
                          f"(a Python or NumPy integer), got {type(action).__name__}")
    if not 0 <= int(action) < vocab_size:
        raise ConfigError(f"action {int(action)} is outside the action space Discrete({vocab_size})")
    return int(action)


class RLHFEnv(RLHFEnvSurface, gym.Env):
    """Token-level RLHF environment (see the module docstring and :class:`rlhf_gym.envs.RLHFEnvConfig`).

    :param config: the configuration (or pass its fields as keyword arguments).
    :param render_mode: ``"ansi"`` or ``"human"``.
    :param seed: seed of the first ``reset`` when that call gives none.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(self, config: RLHFEnvConfig | None = None, render_mode: str | None = None, seed: int | None = None,
                 **kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self._setup = resolve_setup(make_config(config, kwargs))
        self.render_mode = render_mode
        # kept for the first reset() only (see reset): seed= here makes a gym.make'd env reproducible without the
        # caller having to seed reset itself
        self._first_seed = seed
        # the single env is the batched state machine with one row, so both give the same rewards for the same tokens
        self._episodes = EpisodeBatch(self._setup, 1)
        self.action_space = spaces.Discrete(self._setup.vocab_size)
        self.observation_space = self._setup.observation_space()
        # a step after the end would extend a finished response (after truncation: past the response budget)
        self._needs_reset = True

    def report_logprobs(self, logprob: float) -> None:
        """Report ``log pi(a_t | s_t)`` of the action passed to the next ``step`` (the log-prob channel).

        :raises ConfigError: unless ``logprob`` is a finite number <= 0 (a Python, NumPy or 0-d torch number).
        """
        # an agent typically has its log-prob as a 0-d tensor or array; .item() makes it a plain number to check
        if (torch.is_tensor(logprob) or isinstance(logprob, np.ndarray)) and logprob.ndim == 0:
            logprob = logprob.item()
        # not calling is the way to report nothing (the batched env's rows= mask), so a NaN is a bug upstream (e.g. a
        # policy whose logits went NaN), refused as in the batched env
        if not (is_number(logprob) and math.isfinite(logprob) and logprob <= MAX_LOGPROB):
            shown = float(logprob) if is_number(logprob) else repr(logprob)
            raise ConfigError(f"report_logprobs: got {shown}; {LOGPROB_RULE} (to report nothing, do not call it)")
        self._episodes.report([logprob])

    def action_masks(self) -> np.ndarray:
        """NLPO mask of the allowed next tokens, bool [vocab] (needs ``mask_top_p`` or ``mask_top_k``)."""
        return self._masks(as_tensor=False)[0]

    def _observation(self) -> dict[str, np.ndarray]:
        # row 0 of the one-row batch, with the batch dimension dropped to match observation_space
        return {k: v[0] for k, v in self._episodes.observation().items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a response to a random prompt; ``options={"prompt_index": i}`` picks one.

        :raises ConfigError: for options that are not a dict, an unknown key or a prompt index that is not an integer
            in range; such a reset changes nothing (the episode, the seed and the constructor's seed stay as they were).
        """
        # checked before the seed or the episode is touched, so that a refused reset leaves the env as it was
        index = check_reset_options(options, ("prompt_index",)).get("prompt_index")
        if index is not None and not is_index(index):
            raise ConfigError(f"prompt_index must be an integer, got {index!r}")
        if index is not None and not 0 <= index < len(self.prompts):
            raise ConfigError(f"prompt_index {index} outside [0, {len(self.prompts)})")
        # the constructor's seed is used once, by the first reset that gives none; later resets continue the same
        # np_random stream, as Gymnasium expects (re-applying that seed at every reset would repeat one prompt)
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        # the random draw happens even when options names the prompt, so the np_random stream advances the same way
        # whether or not a reset picked its prompt
        drawn = int(self.np_random.integers(len(self.prompts)))
        index = drawn if index is None else int(index)
        self._episodes.start(np.array([0]), np.array([index]))
        self._needs_reset = False
        return self._observation(), {"prompt": self.prompts[index], "prompt_index": index}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called after the episode ended (or before any reset); call reset() first")
        token = as_token_id(action, self.action_space.n)
        rows = np.array([0])  # the batch operations take row indices; the single env is row 0
        terminated, truncated = self._episodes.append(rows, np.array([token]))
        finished = terminated | truncated
        # never deferred here: a single episode is scored at its last step (one reference pass, one reward call)
        rewards, infos = self._episodes.rewards(rows, finished)
        self._needs_reset = bool(finished[0])
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), infos[0]

    def render(self) -> str | None:
        text = self._episodes.render(0)
        if self.render_mode == "human":
            print(text)
            return None
        return text
