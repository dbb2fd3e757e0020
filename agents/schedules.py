"""Learning-rate schedules of the online algorithms, readable without importing torch (``rlhf-gym train --help`` lists
them).

``linear`` anneals the rate to 0 over the run's response budget, as CleanRL's PPO (``anneal_lr``) and TRL's trainers
(``lr_scheduler_type="linear"``) do by default: the last updates are small, so where a run ends depends less on the
noise of its last rollouts. ``constant`` is the default (the README's "Results" gives the spread over seeds of both on
the default job).
"""

from __future__ import annotations

from typing import Any

from rlhf_gym.errors import ConfigError

LR_SCHEDULES = ("constant", "linear")
"""``--lr-schedule`` values: a constant rate, or one annealed linearly from the rate to 0 over the budget."""


def check_lr_schedule(name: str) -> None:
    """A :class:`ConfigError` naming ``--lr-schedule`` unless ``name`` is one of :data:`LR_SCHEDULES`."""
    if name not in LR_SCHEDULES:
        raise ConfigError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {name!r}")


def learning_rate_schedule(rate: float, name: str) -> Any:
    """SB3's ``learning_rate`` argument: ``rate`` itself for ``constant``; for ``linear`` a schedule of SB3's
    ``progress_remaining`` (1 at the start, 0 when the budget is spent) with value ``rate * progress_remaining``.

    SB3's :class:`~stable_baselines3.common.utils.LinearSchedule` is a class, so the agent's zip stores it and a resumed
    run goes on along the same line.
    """
    check_lr_schedule(name)
    if name == "constant":
        return rate
    from stable_baselines3.common.utils import LinearSchedule

    # value(p) = start + (1 - p) * (end - start) / end_fraction = rate * p for end 0 and end_fraction 1
    return LinearSchedule(start=rate, end=0.0, end_fraction=1.0)
