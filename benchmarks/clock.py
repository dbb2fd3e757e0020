"""The phase clock: wall-clock time of each PPO iteration and of its sampling, scoring and update phases; and
:func:`alternate`, the before/after timing of settings that take turns."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

PHASES = ("sampling", "scoring", "update")


def alternate(settings: dict[str, Callable[[], None]], rounds: int = 3, repeats: int = 3,
              timer: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each setting's call, the settings taking turns ``rounds`` times, ``repeats`` calls each (so
    that a machine's drift falls on every setting alike); ``timer``: wall time, or ``time.process_time`` (this
    process's CPU time, steadier on cores that other jobs share)."""
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, call in settings.items():
            for _ in range(repeats):
                start = timer()
                call()
                seconds[name].append(timer() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


class PhaseClock:
    """Wall-clock time of each PPO iteration and of the phases inside it.

    ``lap()`` closes the current iteration and opens the next (time before the first lap is not recorded).
    ``timed(fn, phase)`` adds the time spent in ``fn`` to ``phase``, less the time of timed calls nested in it,
    in the iteration where the call returns.
    ``mark(phase)`` is for code that cannot be wrapped: the phase lasts from its first to its last mark in the
    iteration. ``count(name)`` counts events. On CUDA the clock synchronises before every reading.
    """

    def __init__(self, device: torch.device):
        self.sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.iterations: list[dict[str, float]] = []
        self._started: float | None = None
        self._nested: list[float] = []  # per open timed call: the time of the timed calls nested in it
        self._reset()

    def _reset(self) -> None:
        self._times: dict[str, float] = defaultdict(float)
        self._marks: dict[str, tuple[float, float]] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def lap(self) -> None:
        now = self.now()
        if self._started is not None:
            times = dict(self._times)
            for phase, (first, last) in self._marks.items():
                times[phase] = times.get(phase, 0.0) + last - first
            record = {"seconds": now - self._started, **{p: times.get(p, 0.0) for p in PHASES}, **self._counts}
            # Clamped: a timed call that began just before the lap makes the rest a few microseconds negative.
            record["other"] = max(0.0, record["seconds"] - sum(record[p] for p in PHASES))
            self.iterations.append(record)
        self._started = now
        self._reset()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        self._nested.append(0.0)
        try:
            yield
        finally:
            elapsed = self.now() - start
            self._times[name] += elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def timed(self, fn: Callable, name: str) -> Callable:
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)
        return wrapper

    def mark(self, name: str) -> None:
        now = self.now()
        self._marks[name] = (self._marks.get(name, (now, now))[0], now)

    def count(self, name: str) -> None:
        self._counts[name] += 1


class LapAtRolloutStart(BaseCallback):
    """SB3 callback: one PPO iteration runs from one rollout's start to the next."""

    def __init__(self, clock: PhaseClock):
        super().__init__()
        self.clock = clock

    def _on_rollout_start(self) -> None:
        self.clock.lap()

    def _on_step(self) -> bool:
        return True
