"""Tasks: prompt sets with their reference policy and reward model. ``load_task("reviews")`` is the default.

Each task is one subpackage whose ``task.py`` defines its :class:`~rlhf_gym.tasks.world.TaskWorld` as ``WORLD``
(language, gold reward, annotator bias, build settings); :data:`WORLDS` lists them.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import DEFAULT_MAX_NEW_TOKENS, Task
from .describe.task import WORLD as DESCRIBE
from .facts.task import WORLD as FACTS
from .lists.task import WORLD as LISTS
from .reviews.task import WORLD as REVIEWS
from .world import TaskWorld

WORLDS: dict[str, TaskWorld] = {world.name: world for world in (REVIEWS, LISTS, FACTS, DESCRIBE)}
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
