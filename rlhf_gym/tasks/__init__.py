"""Tasks: prompt sets with their reference policy and reward model. ``load_task("reviews")`` is the default.

Each task is one subpackage whose ``task.py`` defines its :class:`~rlhf_gym.tasks.world.TaskWorld` as ``WORLD``
(language, gold reward, annotator bias, build settings); :data:`WORLDS` lists them. The task ids
(:func:`task_names`) are the subpackages' names, listed without importing them, so that a command's ``--help`` can
show them without loading transformers; the worlds and the names below load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Task
    from .world import TaskWorld

DEFAULT_MAX_NEW_TOKENS = 24
"""Response budget of a task (and of an env with no task) unless it sets its own."""

_LAZY = {"Task": "base", "TaskWorld": "world"}
"""Public names -> the module of this package that defines them."""


def task_names() -> tuple[str, ...]:
    """Every task id, ``reviews`` first: the names of this package's subpackages (none is imported)."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    return tuple(sorted(names, key=lambda name: name != "reviews"))


@cache
def _worlds() -> dict[str, TaskWorld]:
    """Every task's world, by task id (each subpackage's ``task.py`` imported once)."""
    worlds = {name: importlib.import_module(f"{__name__}.{name}.task").WORLD for name in task_names()}
    for name, world in worlds.items():
        if world.name != name:
            raise ValueError(f"rlhf_gym.tasks.{name}: its WORLD is named {world.name!r}; a task's id is its folder's name")
    return worlds


def __getattr__(name: str) -> Any:
    if name == "WORLDS":
        return _worlds()
    if name == "TASKS":
        return task_names()
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_task(name: str | Task = "reviews", **kwargs) -> Task:
    """Return the task called ``name`` (a :class:`Task` passes through); ``artifacts_dir=`` loads other artifacts.

    :raises ConfigError: (a ``ValueError``) for an unknown task id, listing the known ones.
    """
    if not isinstance(name, str):  # a Task object passes through
        return name
    return world_of(name).task(**kwargs)


def world_of(name: str) -> TaskWorld:
    """The world of task ``name``; :class:`ConfigError` listing the known ones otherwise."""
    worlds = _worlds()
    if name not in worlds:
        raise ConfigError(f"unknown task {name!r}; known tasks: {sorted(worlds)}")
    return worlds[name]


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "TASKS", "WORLDS", "Task", "TaskWorld", "load_task", "task_names", "world_of"]
