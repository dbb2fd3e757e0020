"""Tasks: prompt sets with their reference policy and reward model. ``load_task("reviews")`` is the default."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from .base import DEFAULT_MAX_NEW_TOKENS, Task
from .reviews.task import make_reviews_task

TASKS: dict[str, Callable[..., Task]] = {"reviews": make_reviews_task}


def load_task(name: str | Task = "reviews", **kwargs) -> Task:
    """Return the task called ``name`` (a :class:`Task` passes through).

    :raises ConfigError: (a ``ValueError``) for an unknown task id, listing the known ones.
    """
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "TASKS", "Task", "load_task"]
