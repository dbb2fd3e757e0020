"""One registry of algorithms: ``--algo`` name -> class, and the traits every command reads instead of names.

An algorithm is one module whose class is decorated with :func:`register_algorithm` and declares:

* ``traits``: an :class:`AlgorithmTraits` (online or offline, group sampling, where its KL coefficient acts);
* ``Config``: a dataclass of its own hyperparameters with its own defaults, each checked in ``__post_init__``;
* ``env_settings(config)``: what it needs of the env (group size, NLPO's masks, no KL term in the reward...);
* ``from_config(train_config, env, **common)`` and ``resume(checkpoint, train_config, env, **common)``: the agent;
* ``policy_from_checkpoint(path, device)``: the trained causal LM of a saved agent, for evaluation;
* and, on the agent: ``learn_run(budget, callbacks, progress_bar, resumed)``, ``save``, ``export_pretrained``,
  ``trained_lm``, ``coefficients()`` (the KL coefficient or temperature actually used), ``progress()`` and
  ``counters()``.

``rlhf-gym train``, ``evaluate``, ``leaderboard`` and ``--resume`` go through these and never test a name, so a new
trainer is one module (a test registers a toy algorithm in its own file and trains, resumes and evaluates it).
"""

from __future__ import annotations

import importlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlhf_gym.errors import ConfigError, MissingFileError

KL_PLACES = ("reward", "loss", "implicit")


@dataclass(frozen=True)
class AlgorithmTraits:
    """What the commands need to know of an algorithm.

    :param name: its ``--algo`` name.
    :param summary: one line for ``--help``.
    :param online: True: it samples from the env while it trains (budget: responses); False: it learns from stored
        comparisons (budget: comparisons).
    :param group_sampling: it needs ``group_size >= 2`` responses per prompt from the env.
    :param kl: where ``--kl-coef`` acts: ``"reward"`` (the env's reward ``r - kl_coef * KL``), ``"loss"`` (a term of the
        loss; the env's reward then has no KL term, the env still measures it) or ``"implicit"`` (the DPO family:
        no KL term at all; ``--dpo-beta`` is the implicit reward's temperature).
    """

    name: str
    summary: str
    online: bool
    group_sampling: bool = False
    kl: Literal["reward", "loss", "implicit"] = "reward"

    def __post_init__(self) -> None:
        if self.kl not in KL_PLACES:
            raise ValueError(f"kl must be one of {KL_PLACES}, got {self.kl!r}")

    @property
    def coefficient_option(self) -> str:
        """The option the coefficient of the KL leash is set with: ``dpo_beta`` (the implicit reward's temperature) for
        the DPO family, ``kl_coef`` otherwise (the meaning the deprecated ``--beta`` of rlhf-gym 0.8 had here)."""
        return "dpo_beta" if self.kl == "implicit" else "kl_coef"

    @property
    def budget_unit(self) -> str:
        """What the budget counts: sampled responses (online) or comparisons trained on (offline)."""
        return "responses" if self.online else "comparisons"


ALGORITHMS: dict[str, type] = {}
"""``--algo`` name -> class, for the algorithms registered so far (a module registers its class when imported)."""
BUILT_IN: dict[str, str] = {"ppo": "rlhf_gym.agents.ppo", "nlpo": "rlhf_gym.agents.nlpo", "rloo": "rlhf_gym.agents.rloo",
                            "grpo": "rlhf_gym.agents.grpo", "dpo": "rlhf_gym.agents.dpo", "ipo": "rlhf_gym.agents.dpo",
                            "cdpo": "rlhf_gym.agents.dpo", "simpo": "rlhf_gym.agents.simpo", "kto": "rlhf_gym.agents.kto",
                            "online_dpo": "rlhf_gym.agents.online_dpo"}
"""The built-in algorithms and the module that registers each, imported the first time the name is asked for (as
Gymnasium's entry points), so that listing the choices (``--help``) imports neither torch nor SB3."""


def algorithm_names() -> tuple[str, ...]:
    """Every algorithm ``--algo`` takes: the built-in ones, then those registered by other modules."""
    return (*BUILT_IN, *(name for name in ALGORITHMS if name not in BUILT_IN))


def register_algorithm(cls: type) -> type:
    """Class decorator: add ``cls`` to :data:`ALGORITHMS` under ``cls.traits.name`` (a second class may not take it)."""
    name = cls.traits.name
    if name in ALGORITHMS and ALGORITHMS[name] is not cls:
        raise ValueError(f"algorithm {name!r} is already registered by {ALGORITHMS[name].__qualname__}")
    ALGORITHMS[name] = cls
    return cls


def get_algorithm(name: str) -> type:
    """The class registered as ``name`` (a built-in one's module imported first); a :class:`ConfigError` listing the
    choices otherwise."""
    if name not in ALGORITHMS and name in BUILT_IN:
        importlib.import_module(BUILT_IN[name])
    if name not in ALGORITHMS:
        raise ConfigError(f"--algo must be one of {', '.join(algorithm_names())}, got {name!r}")
    return ALGORITHMS[name]


CHECKPOINT_ALGORITHM_KEY = "algorithm"
"""Where a checkpoint names its algorithm: a key of an SB3 zip's ``data`` and a member of an offline zip."""


def algorithm_of_checkpoint(path: str | Path) -> type:
    """The class of the agent saved in ``path`` (an SB3 zip or an offline trainer's zip), once the zip is known whole.

    Every member is read and checked against its CRC first (a second or so for a GPT-2-sized agent), so that a
    truncated or damaged file is one :class:`MissingFileError` naming it here rather than a zip, pickle or "No data
    found" traceback in a loader. Checkpoints of rlhf-gym 0.8 and earlier do not name their algorithm: SB3 zips are
    read as ``ppo`` (every online algorithm's policy loads that way) and offline zips as ``dpo``.
    """
    from .offline import STATE_FILE  # torch: only once a checkpoint is read

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no agent checkpoint at {path} (expected the .zip an agent's save() writes)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
            data = archive.read("data") if "data" in names else None  # SB3: the agent's attributes as JSON
            named = archive.read(CHECKPOINT_ALGORITHM_KEY) if CHECKPOINT_ALGORITHM_KEY in names else None
        if damaged is not None:
            raise zipfile.BadZipFile(f"{damaged}: bad CRC")
        if data is not None:
            name = json.loads(data).get(CHECKPOINT_ALGORITHM_KEY, "ppo")
        elif named is not None:
            name = named.decode().strip()
        elif STATE_FILE in names:
            name = "dpo"
        else:  # e.g. a file cut just after a stored torch zip, whose own end record then reads as the archive's
            raise MissingFileError(f"{path}: truncated or corrupt, or not an agent checkpoint (a zip with neither "
                                   f"SB3's data nor an offline trainer's {STATE_FILE}); expected the .zip an agent's "
                                   "save() writes")
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, AttributeError) as error:
        raise MissingFileError(f"{path}: not a whole agent checkpoint, truncated or corrupt ({error}); expected the "
                               ".zip an agent's save() writes") from None
    return get_algorithm(name)


def load_policy(path: str | Path, device: Any) -> Any:
    """The trained causal LM of the agent saved in ``path``, whichever algorithm saved it."""
    return algorithm_of_checkpoint(path).policy_from_checkpoint(path, device)
