"""The batched ``RLHF-v0``: ``num_envs`` responses stepped together, scored in one pass per step.

``gym.make_vec("RLHF-v0", num_envs=N)`` builds it through the ``vector_entry_point``. Episode state is kept in
NumPy on the host; at every step the responses that ended are scored with one reference forward pass (on the
device) and one reward-model call. Rewards and infos equal those of :class:`rlhf_gym.envs.rlhf_env.RLHFEnv` for the
same tokens.

Autoreset modes (Gymnasium 1.x): ``"next_step"`` (default: a finished row restarts on the next ``step``,
whose action for that row is ignored) or ``"disabled"`` (finished rows wait, ignoring actions, until
``reset(options={"reset_mask": mask})``; what a lock-step agent such as :class:`rlhf_gym.agents.TokenPPO` uses).

Group sampling (``group_size=k``, for RLOO and GRPO): rows ``[g*k, (g+1)*k)`` form group ``g`` and share one prompt,
drawn once per group; groups reset as a whole (a ``reset_mask`` must cover whole groups), and with ``"next_step"``
autoreset a finished row waits, ignoring actions, until every row of its group has finished, then the group restarts.

Deferred scoring (:meth:`RLHFVectorEnv.defer_scoring`, for lock-step agents with autoreset disabled): a row that ends
gets reward 0 and no final info at that step; the step where the last running row ends scores every finished row at
once (one reference pass, one reward-model pass per batch instead of one per step where some row ends) and returns their
terminal rewards and final infos, so a row that ended earlier is paid late: its reward belongs to its last token.

Final-episode infos follow Gymnasium's vector convention: ``info[key]`` is an array over rows and
``info["_" + key]`` the mask of the rows where it is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlhf_gym.checks import check_count
from rlhf_gym.errors import ConfigError

from .config import RLHFEnvConfig
from .episodes import EpisodeBatch
from .rlhf_env import make_config
from .setup import resolve_setup
from .surface import RLHFEnvSurface, check_reset_options

# Gymnasium's third mode, SAME_STEP, is not implemented: only these two are accepted.
_MODES = {"next_step": AutoresetMode.NEXT_STEP, "disabled": AutoresetMode.DISABLED}


def _as_array(value: Any) -> np.ndarray:
    """``value`` as an array; a ragged list as an object array (refused by the checks that follow, with their message)."""
    try:
        return np.asarray(value)
    except ValueError:
        return np.asarray(value, dtype=object)


class RLHFVectorEnv(RLHFEnvSurface, VectorEnv):
    """Batched RLHF environment with the public surface of :class:`rlhf_gym.envs.surface.RLHFEnvSurface`.

    :param num_envs: rows stepped together.
    :param config: the env configuration (or pass its fields as keyword arguments, as ``gym.make_vec`` does).
    :param autoreset_mode: ``"next_step"`` or ``"disabled"`` (see the module docstring).
    :param render_mode: ``"ansi"`` or ``"human"``.
    :param seed: seed of the first ``reset`` when that call gives none.
    :param group_size: rows per prompt group (see the module docstring); must divide ``num_envs``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 8, config: RLHFEnvConfig | None = None,
                 autoreset_mode: str | AutoresetMode = "next_step", render_mode: str | None = None, seed: int | None = None,
                 group_size: int = 1, **kwargs: Any):
        check_count("num_envs", num_envs)  # before group_size's check, which would report num_envs=2.5 as its own fault
        if not isinstance(group_size, (int, np.integer)) or group_size < 1 or num_envs % group_size:
            raise ConfigError(f"group_size must be a positive integer that divides num_envs ({num_envs}), got {group_size!r}")
        mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else _MODES.get(autoreset_mode)
        if mode not in _MODES.values():
            raise ValueError(f"autoreset_mode must be one of {list(_MODES)}, got {autoreset_mode!r}")
        # a new dict on the instance: metadata is a class attribute, and writing into it would change the mode of
        # every RLHFVectorEnv (Gymnasium's wrappers read the mode from here)
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self._setup = resolve_setup(make_config(config, kwargs))
        self.num_envs, self.group_size = num_envs, int(group_size)
        self.render_mode = render_mode
        self._first_seed = seed
        self._episodes = EpisodeBatch(self._setup, num_envs)
        self.single_action_space = spaces.Discrete(self._setup.vocab_size)
        self.single_observation_space = self._setup.observation_space()
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)  # rows (whole groups) to restart at the next step
        self._started = False
        self._deferred = False  # off by default: scoring each row as it ends is what a plain Gymnasium loop expects

    def defer_scoring(self, enabled: bool = True) -> None:
        """Score a batch's responses together, when its last row ends (see the module docstring), or again each as it
        ends (``enabled=False``).

        :raises ConfigError: unless autoreset is disabled (rows must wait for each other) and the KL is paid at the end
            (``kl_placement="terminal"``: per-token KL rewards need the reference at every step anyway).
        """
        if enabled and self.metadata["autoreset_mode"] != AutoresetMode.DISABLED:
            raise ConfigError("deferred scoring needs autoreset_mode='disabled': a lock-step agent's rows wait for each other")
        if enabled and self._setup.config.kl_placement != "terminal":
            raise ConfigError("deferred scoring needs kl_placement='terminal' (per-token KL rewards are paid every step)")
        self._deferred = enabled

    @property
    def scoring_deferred(self) -> bool:
        """Whether :meth:`defer_scoring` is on."""
        return self._deferred

    def set_kl_controller(self, controller) -> None:
        """Replace the KL controller that sets ``beta`` (an agent's own, e.g. one kept in step over data-parallel
        processes); like :class:`rlhf_gym.kl.AdaptiveKLController` it has ``beta``, ``update(kl, n)``, ``state_dict``
        and ``load_state_dict``."""
        self._setup.kl_controller = controller

    def report_logprobs(self, logprobs, rows=None) -> None:
        """Report ``log pi(a_t | s_t)`` of each row's next action: the log-prob channel.

        :param logprobs: one number per row (a list, array or tensor).
        :param rows: bool mask of the rows that report (None: every row); the others have no report (a finished row,
            say), and the fallback ``log pi = 0`` applies to their token.
        :raises ConfigError: for a reported value that is no log-probability (NaN, inf, -inf, > 0), naming its row.
        """
        self._episodes.report(logprobs, rows)

    def action_masks(self, as_tensor: bool = False):
        """NLPO masks of every row's next token, bool [num_envs, vocab] (a device tensor with ``as_tensor=True``)."""
        return self._masks(as_tensor)

    def _pick_prompts(self, rows: np.ndarray) -> np.ndarray:
        """Prompt indices for ``rows``: one draw per row, or one per group repeated over its rows."""
        # drawn from the env's np_random, so reset(seed=...) fixes the whole sequence of prompts
        k = self.group_size
        if k == 1:
            return self.np_random.integers(len(self._setup.prompts), size=len(rows))
        self._check_whole_groups(rows)
        # one prompt per group, repeated over its k rows: the k responses to one prompt are what RLOO's leave-one-out
        # baseline and GRPO's group normalisation compare
        return np.repeat(self.np_random.integers(len(self._setup.prompts), size=len(rows) // k), k)

    def _check_whole_groups(self, rows: np.ndarray) -> None:
        """:class:`ConfigError` unless ``rows`` (sorted) are whole groups: each block of k rows is exactly the rows
        g*k .. g*k + k - 1 of one group g."""
        k = self.group_size
        groups = rows.reshape(-1, k) if len(rows) % k == 0 else None
        if groups is None or (groups != groups[:, :1] // k * k + np.arange(k)).any():
            raise ConfigError(f"group sampling (group_size={k}) resets whole groups of {k} consecutive rows; got rows "
                              f"{rows.tolist()}")

    def _check_reset_options(self, options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``reset``'s mask, the rows it resets and their prompt indices (None: to draw), or a :class:`ConfigError`.

        Everything is checked before ``reset`` changes anything, so that a refused reset leaves the env as it was: a
        reset that failed half-way used to write new prompts into rows that kept the old episode's lengths and flags.
        """
        options = check_reset_options(options, ("prompt_indices", "reset_mask"))
        mask = options.get("reset_mask")
        if mask is None:
            mask = np.ones(self.num_envs, dtype=bool)
        else:
            mask = _as_array(mask)
            # bool only, as Gymnasium's own vector envs want: an int array may be meant as row indices ([0, 1] would
            # silently become the mask [False, True])
            if mask.dtype != bool or mask.shape != (self.num_envs,):
                raise ConfigError(f"reset_mask must be a bool array of shape ({self.num_envs},), got {mask.dtype} of "
                                  f"shape {mask.shape}")
        rows = np.flatnonzero(mask)
        # A partial reset of a row waiting to be scored would drop its reward, which is paid only when the batch's
        # last row ends. A full reset starts the batch over and drops whatever is still pending with it.
        if self._deferred and not mask.all() and self._episodes.pending[mask].any():
            raise ConfigError("deferred scoring pays a batch when its last row ends: reset every row, or step until then "
                              f"(rows {np.flatnonzero(mask & self._episodes.pending).tolist()} are waiting to be scored)")
        if self.group_size > 1:
            self._check_whole_groups(rows)
        given = options.get("prompt_indices")
        if given is None:
            return mask, rows, None
        indices = _as_array(given)
        # bools are refused inside a list of ints too, where NumPy would turn them into 0 and 1
        bools = isinstance(given, (list, tuple)) and any(isinstance(i, (bool, np.bool_)) for i in given)
        if indices.ndim != 1 or bools or not (np.issubdtype(indices.dtype, np.integer) or indices.size == 0):
            raise ConfigError(f"prompt_indices must be integers, one per reset row, got {given!r}")
        # one prompt per reset row, in row order (entries past len(rows) are ignored)
        n, limit = len(rows), len(self._setup.prompts)
        if len(indices) < n:
            raise ConfigError(f"prompt_indices must give {n} indices in [0, {limit}), got {len(indices)}")
        indices = indices[:n].astype(np.int64)
        bad = np.flatnonzero((indices < 0) | (indices >= limit))
        if bad.size:
            raise ConfigError(f"prompt_indices must give {n} indices in [0, {limit}), got {indices[bad[0]]} at "
                              f"position {bad[0]}")
        return mask, rows, indices

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start episodes in all rows, or in ``options["reset_mask"]``; ``options["prompt_indices"]`` picks prompts.

        :raises ConfigError: for options that are not a dict, an unknown key, a mask that is not bool of shape
            ``(num_envs,)`` (or splits a group), or prompt indices that are not integers in range, one per reset row;
            such a reset changes nothing.
        """
        mask, rows, indices = self._check_reset_options(options)
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        # Gymnasium lets a vector env take one seed per sub-env; the rows here share one np_random, so the first seed
        # seeds it all
        if isinstance(seed, (list, tuple)):
            seed = seed[0]
        super().reset(seed=seed)
        self._episodes.start(rows, self._pick_prompts(rows) if indices is None else indices)
        self._autoreset[rows] = False
        self._started = True
        # Gymnasium's vector info form: the value for every row, and a mask of the rows it is new for
        info = {"prompt_index": self._episodes.prompt_index.copy(), "_prompt_index": mask.copy()}
        return self._episodes.observation(), info

    def step(self, actions):
        if not self._started:
            raise RuntimeError("step() called before reset()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            # no silent conversion: 5.9 would become token 5, [[5], [6]] would be flattened
            raise ConfigError(f"actions must be an integer array of shape ({self.num_envs},), one token id per row; "
                              f"got shape {actions.shape} of {actions.dtype}")
        bad = np.flatnonzero((actions < 0) | (actions >= self._setup.vocab_size))
        if bad.size:
            raise ConfigError(f"action {actions[bad[0]]} of row {bad[0]} is outside Discrete({self._setup.vocab_size})")
        # rows that do not step this time (waiting, restarting) get neither flag, and reward 0 unless a deferred
        # batch is paid below
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        # NEXT_STEP autoreset: rows whose episode ended at the previous step start a new one now; their action is
        # ignored and their observation is the new prompt (Gymnasium's convention, so the final observation of the
        # finished episode was still returned with its last reward)
        restarting = np.flatnonzero(self._autoreset)
        if restarting.size:
            self._episodes.start(restarting, self._pick_prompts(restarting))
            self._autoreset[restarting] = False
        # the rows that take their action: running, and not restarted just now (a finished row that waits, for a reset
        # with autoreset off or for the rest of its group, ignores its action)
        active = np.flatnonzero(~self._episodes.done)
        active = active[~np.isin(active, restarting)]
        infos: dict[str, Any] = {}
        if active.size:
            term, trunc = self._episodes.append(active, actions[active])
            rewards[active], row_infos = self._episodes.rewards(active, term | trunc, defer=self._deferred)
            terminated[active], truncated[active] = term, trunc
            self._add_infos(infos, active, row_infos)
        if self._deferred and self._episodes.done.all():  # the batch's last row ended: score every finished row at once
            rows, final = self._episodes.score_pending()
            # rows that ended at earlier steps are paid now, at this step; TokenPPO moves each reward back to its
            # row's last token, where it belongs
            rewards[rows] = [info["terminal_reward"] for info in final]
            self._add_infos(infos, rows, final)
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP:
            # a group restarts on the next step once its last row has finished (with group_size 1: every finished row)
            # "finished at this step" as well as "all done": rows never reset are done too, but must not autostart.
            # reshape(-1, k) works because group g is exactly the rows g*k .. g*k + k - 1
            k = self.group_size
            last_finished = (terminated | truncated).reshape(-1, k).any(1) & self._episodes.done.reshape(-1, k).all(1)
            self._autoreset |= last_finished.repeat(k)
        if self.render_mode == "human":
            self.render()
        return self._episodes.observation(), rewards, terminated, truncated, infos

    def _add_infos(self, infos: dict, rows: np.ndarray, row_infos: list[dict]) -> None:
        """Put each row's info into Gymnasium's vector form (``infos[key]`` over rows, ``infos["_" + key]`` set)."""
        for row, info in zip(rows.tolist(), row_infos):
            for key, value in info.items():
                if key not in infos:
                    # object for strings: np.zeros(n, dtype=str) is '<U1' and would cut every text to one character;
                    # type(value) gives float64 / bool / int64 arrays, and object for the per-token ndarrays (whose
                    # lengths differ between rows)
                    dtype = object if isinstance(value, str) else type(value)
                    infos[key] = np.zeros(self.num_envs, dtype=dtype)
                    infos["_" + key] = np.zeros(self.num_envs, dtype=bool)
                infos[key][row] = value
                infos["_" + key][row] = True

    def render(self) -> str | None:
        text = "\n".join(f"[{i}] {self._episodes.render(i)}" for i in range(self.num_envs))
        if self.render_mode == "human":
            print(text)
            return None
        return text
