"""Tasks: prompt sets with their reference policy and reward model. ``load_task("reviews")`` is the default.

Each task is one subpackage whose ``task.py`` defines its :class:`~rlhf_gym.tasks.world.TaskWorld` as ``WORLD``
(language, gold reward, annotator bias, build settings); :data:`WORLDS` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigError
from .base import DEFAULT_MAX_NEW_TOKENS, Task
from .world import TaskWorld


def _discover_worlds() -> dict[str, TaskWorld]:
    """The ``WORLD`` of every subpackage's ``task.py``, by task id (reviews first): a new task is a new subpackage."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    worlds = [importlib.import_module(f"{__name__}.{name}.task").WORLD for name in names]
    return {world.name: world for world in sorted(worlds, key=lambda w: w.name != "reviews")}


WORLDS: dict[str, TaskWorld] = _discover_worlds()
"""Every task's world, by task id."""
TASKS = tuple(WORLDS)


def load_task(name: str | Task = "reviews", **kwargs) -> Task:
    """Return the task called ``name`` (a :class:`Task` passes through); ``artifacts_dir=`` loads other artifacts.

    :raises ConfigError: (a ``ValueError``) for an unknown task id, listing the known ones.
    """
    if isinstance(name, Task):
        return name
    return world_of(name).task(**kwargs)


def world_of(name: str) -> TaskWorld:
    """The world of task ``name``; :class:`ConfigError` listing the known ones otherwise."""
    if name not in WORLDS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {sorted(WORLDS)}")
    return WORLDS[name]


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "TASKS", "WORLDS", "Task", "TaskWorld", "load_task", "world_of"]
