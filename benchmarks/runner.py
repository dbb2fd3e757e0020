"""Every selected system on every workload, each in a fresh process (so that its peak RSS is its own), one after the
other on the same machine; then the scaling sweep of ours."""

from __future__ import annotations

import multiprocessing
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .protocol import Settings
from .workloads import Workload, build_models

if TYPE_CHECKING:
    import torch


def split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def sweep_points(base: Workload, response_lengths: Iterable[int], rollout_batches: Iterable[int]) -> list[tuple[int, int]]:
    """Response lengths (at the base rollout batch), then rollout batches (at the base response length), once each."""
    points = [(length, base.rollout_batch) for length in response_lengths]
    points += [(base.response_length, batch) for batch in rollout_batches]
    return list(dict.fromkeys(points))


def in_fresh_process(fn: Callable, *fn_args: Any) -> Any:
    """``fn(*fn_args)`` in a new process: its own peak RSS, torch state and monkey-patches. Where it can, the process
    forks from a server that has imported the benchmark once (so it starts in a moment) and never ran a torch op."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method)) as pool:
        return pool.submit(fn, *fn_args).result()


def run_all(workloads: list[Workload], systems: list[str], settings: Settings, device: torch.device,
            sweep_base: Workload, sweep: list[tuple[int, int]] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The results of every (workload, system) pair and, unless ``sweep`` is None, the sweep rows of ours at its
    points on ``sweep_base``'s model. Models are built once per workload in a temporary directory."""
    from .measure import measure, measure_sweep  # torch, SB3, TRL: only to measure, not for the command's --help

    results: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-benchmark-") as tmp:
        files = {}
        for workload in workloads:
            config = workload.name
            files[config] = build_models(workload, Path(tmp) / config, settings.seed)
            for system in systems:
                print(f"[{config}] {system} ...", flush=True)
                results.append(in_fresh_process(measure, system, workload, files[config], settings, str(device)))
                print(f"[{config}] {system}: {results[-1]['seconds_per_iteration']:.3f} s/iteration", flush=True)
        if sweep is not None:
            if sweep_base.name not in files:
                files[sweep_base.name] = build_models(sweep_base, Path(tmp) / sweep_base.name, settings.seed)
            print(f"[sweep] ours on {sweep_base.name} ...", flush=True)
            rows = in_fresh_process(measure_sweep, sweep_base, sweep, files[sweep_base.name], settings, str(device))
    return results, rows
