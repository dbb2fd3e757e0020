"""Run the independent runs of a command (a sweep's (beta, seed) runs, a leaderboard's (method, seed) runs, best-of-n)
in this process, in a local process pool, or as Ray tasks (https://docs.ray.io, the ``ray`` extra).

One entry point, :func:`run_all`, for every command that fans out. Each :class:`Job` is ``fn(*args)``, run where the
settings say; its ``store(result)`` runs here, in the driver, the moment that job finishes, so results are written
by one process (the run store of the command) and a crash or an interrupt keeps every result finished before it.
A job that raises does not stop the others: when all are done, the first failure is raised, naming its run (a lone
job run in this process raises its error as it is).

* **In this process** (``workers == 1`` or a single job, no Ray): one job after another, with this process's threads.
* **Local process pool** (``workers > 1``): a ``ProcessPoolExecutor`` of spawned processes (torch is not fork-safe),
  one torch thread each; a worker exits when the driver is killed, so a rerun never shares the run store with it.
* **Ray** (:class:`RaySettings`): each job is a Ray task reserving ``num_cpus`` CPUs (and its torch threads) and
  ``num_gpus`` GPUs, on a local Ray instance started here (``address=None``) or an existing cluster (``"auto"``,
  ``"ray://head:10001"``); the driver collects results with ``ray.wait`` as they finish. The dashboard and Ray's
  usage statistics are off. If Ray is already initialised in this process (a notebook, a test), that connection is
  used and left open.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, ClassVar

from .checks import check_number
from .cli import arg
from .errors import ConfigError, RLHFGymError

INSTALL = 'pip install "rlhf-gym[ray]"'


@dataclass(frozen=True)
class Job:
    """One run: ``fn(*args)`` in a worker (``fn`` and ``args`` must pickle: a module-level function, plain data);
    ``store(result)`` in the driver as soon as it is finished."""

    name: str
    """Names the run in messages and as the Ray task's name, e.g. ``beta=0.1 seed=0``."""
    fn: Callable[..., Any]
    args: tuple = ()
    store: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class RaySettings:
    """Where Ray runs the jobs and what each task reserves (Ray's ``num_cpus``/``num_gpus`` task options)."""

    address: str | None = None
    """None: start a local Ray instance on this machine; else ``ray.init(address)``: ``"auto"``, ``"ray://host:10001"``."""
    num_cpus: float = 1.0
    """CPUs per task; the task also runs torch on ``max(1, int(num_cpus))`` threads."""
    num_gpus: float = 0.0
    """GPUs per task (Ray sets ``CUDA_VISIBLE_DEVICES`` for it; 0: the task sees none)."""

    def __post_init__(self) -> None:
        check_number("--ray-num-cpus", self.num_cpus, 0, strict=True)
        check_number("--ray-num-gpus", self.num_gpus, 0)
        if self.address is not None and not self.address.strip():
            raise ConfigError("--ray-address must not be empty (e.g. auto or ray://host:10001)")
        if self.address is not None:
            ray_host_port(self.address)  # a malformed address fails here, before Ray is imported

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))


@dataclass
class RayOptions:
    """Command-line options that send a command's runs to Ray; mixed into the command's ``Args``, whose
    ``__post_init__`` calls :meth:`ray_settings` to check them."""

    ray: bool = arg(False, "run each run as a Ray task on a local Ray instance started by this command "
                           f"(the ray extra: {INSTALL})")
    ray_address: str | None = arg(None, "run each run as a Ray task on the existing Ray cluster at this address "
                                         "(auto, ray://head:10001); implies --ray")
    ray_num_cpus: float | None = arg(None, "with Ray: CPUs each task reserves, also its torch threads (unset: 1)")
    ray_num_gpus: float | None = arg(None, "with Ray: GPUs each task reserves (unset: 0)")

    ray_gpus_used: ClassVar[bool] = True
    """False for a command whose runs never use a GPU: ``--ray-num-gpus`` is refused rather than left idle."""

    def ray_settings(self) -> RaySettings | None:
        """The Ray settings of these options, None without ``--ray``/``--ray-address``; a :class:`ConfigError` naming
        a bad option, or the install command when Ray is asked for and not installed."""
        if not self.ray and self.ray_address is None:
            given = [name for name in ("ray_num_cpus", "ray_num_gpus") if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"--{given[0].replace('_', '-')} needs --ray or --ray-address")
            return None
        settings = RaySettings(self.ray_address, 1.0 if self.ray_num_cpus is None else self.ray_num_cpus,
                               0.0 if self.ray_num_gpus is None else self.ray_num_gpus)
        if settings.num_gpus > 0 and not self.ray_gpus_used:
            raise ConfigError(f"--ray-num-gpus {settings.num_gpus:g}: this command's runs use the CPU only")
        import_ray()
        return settings


class RunFailedError(RuntimeError):
    """A job raised an error that is not a user error; the message names the run, ``__cause__`` carries the worker's
    traceback."""


def import_ray():
    """The ``ray`` module, imported only when Ray is asked for, with its usage statistics off (no network calls)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--ray/--ray-address: Ray is not installed ({INSTALL})") from None
    return ray


def run_all(jobs: Sequence[Job], workers: int = 1, ray: RaySettings | None = None) -> list[Any]:
    """Run every job (see the module docstring for where), storing each result as it finishes.

    :param workers: processes of the local pool (not used with ``ray``: there the cluster's free resources decide).
    :return: the results, in the order of ``jobs``.
    :raises: when a job failed, after all others are done: the first failed job's error (in the order of ``jobs``)
        with its own class if it is a user error (:class:`~rlhf_gym.errors.RLHFGymError`), else :class:`RunFailedError`;
        the message names that run, how many failed and which.
    """
    if not jobs:
        return []
    results: list[Any] = [None] * len(jobs)
    failures: list[tuple[int, BaseException]] = []
    started, finished = time.time(), []

    def finish(i: int, result: Any) -> None:
        results[i] = result
        finished.append(i)
        if len(jobs) > 1:
            print(f"[dispatch] {jobs[i].name} finished after {time.time() - started:.0f} s ({len(finished)} of "
                  f"{len(jobs)})", flush=True)
        if jobs[i].store is not None:
            jobs[i].store(result)

    if ray is not None:
        _run_on_ray(jobs, ray, finish, failures)
    elif len(jobs) == 1:  # a single run: its errors as they are
        finish(0, jobs[0].fn(*jobs[0].args))
    elif workers == 1:
        for i, job in enumerate(jobs):
            try:
                result = job.fn(*job.args)
            except Exception as error:
                failures.append((i, error))
                continue
            finish(i, result)
    else:
        print(f"[dispatch] {len(jobs)} runs in {min(workers, len(jobs))} worker processes", flush=True)
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=_exit_with_driver,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_call, job.fn, job.args, 1): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as error:
                    failures.append((futures[future], error))
                    continue
                finish(futures[future], result)
    if failures:
        failures.sort(key=lambda failure: failure[0])  # reported in the order of the jobs, not of their finishing
        raise _failure(jobs, failures) from failures[0][1]
    return results


def _exit_with_driver(driver_pid: int, poll_seconds: float = 1.0) -> None:
    """Pool initializer: the worker exits within ``poll_seconds`` of its driver's death (a kill, which lets no cleanup
    run) instead of finishing its run alone, where it would keep a core busy and could write to the run store beside a
    rerun of the same command. (An orphan's parent becomes another process, so ``getppid`` changes.)"""
    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="watch-driver", daemon=True).start()


def _call(fn: Callable[..., Any], args: tuple, threads: int) -> Any:
    """A job in a worker process, set up as the command line sets up its own: torch on ``threads`` threads (set for
    every task: a Ray worker is reused), no Hugging Face progress bars."""
    # torch and transformers only in a worker: RayOptions (a command's --help) needs neither
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    return fn(*args)


def _run_on_ray(jobs: Sequence[Job], settings: RaySettings, finish: Callable[[int, Any], None],
                failures: list[tuple[int, BaseException]]) -> None:
    """Submit every job as a Ray task, then hand each result to ``finish`` (or its error to ``failures``) as it comes."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        connect(ray, settings.address)
    pending: dict = {}
    try:
        if settings.address is None:
            check_fits(ray.cluster_resources(), settings)
        task = ray.remote(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus)(_call)
        where = settings.address or "a local Ray instance"
        print(f"[dispatch] {len(jobs)} runs as Ray tasks on {where} ({settings.num_cpus:g} CPUs, "
              f"{settings.num_gpus:g} GPUs each)", flush=True)
        pending = {task.options(name=job.name).remote(job.fn, job.args, settings.threads): i for i, job in enumerate(jobs)}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:  # the task raised (RayTaskError) or its worker died
                failures.append((i, error))
                continue
            finish(i, result)
    finally:
        for ref in pending:  # only after an interrupt or a failing store: nothing is left running on a cluster
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


RAY_PROBE_SECONDS = 5.0
"""How long :func:`connect` waits for a cluster's port to answer before it gives up (``ray.init`` itself can wait for
minutes on an address where nothing listens)."""


def ray_host_port(address: str) -> tuple[str, int] | None:
    """The host and port of a Ray address ``host:port`` or ``ray://host:port``; None for ``auto`` (Ray finds it); a
    :class:`ConfigError` naming ``--ray-address`` for anything else."""
    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address {address!r}: expected auto, host:port or ray://host:port (e.g. ray://head:10001)")
    return host, int(port)


def connect(ray, address: str | None) -> None:
    """``ray.init``: a new local instance without the dashboard (``address=None``), or the cluster at ``address`` once
    its port answers within :data:`RAY_PROBE_SECONDS` (one error line otherwise, not a hang)."""
    if address is None:
        ray.init(address="local", include_dashboard=False)
        return
    host_port = ray_host_port(address)
    if host_port is not None:
        try:
            socket.create_connection(host_port, timeout=RAY_PROBE_SECONDS).close()
        except OSError as error:  # refused, unreachable, unknown host or no answer in time
            reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or str(error)
            raise ConfigError(f"--ray-address {address}: nothing answers at {host_port[0]}:{host_port[1]} ({reason})"
                              ) from None
    try:
        ray.init(address=address)
    except ConnectionError as error:
        raise ConfigError(f"--ray-address {address}: cannot connect to a Ray cluster there ({error})") from None


def check_fits(resources: dict[str, float], settings: RaySettings) -> None:
    """On this machine's Ray instance a task that asks for more CPUs or GPUs than it has would wait forever: refuse it.
    (A cluster may grow, so its tasks are not checked.)"""
    for option, need, kind in (("--ray-num-cpus", settings.num_cpus, "CPU"), ("--ray-num-gpus", settings.num_gpus, "GPU")):
        have = resources.get(kind, 0.0)
        if need > have:
            raise ConfigError(f"{option} {need:g}: the local Ray instance has {have:g} {kind}s, so the task could never run")


def _failure(jobs: Sequence[Job], failures: list[tuple[int, BaseException]]) -> Exception:
    """The error that reports ``failures``: the first one's class for a user error or an ``OSError`` naming a file (a
    full disk...: the command line prints either as one line), else :class:`RunFailedError`."""
    i, error = failures[0]
    cause = getattr(error, "cause", None) or error  # a Ray task's error carries the worker's exception as .cause
    where = f"run {jobs[i].name}"
    if len(jobs) > 1:
        where += (f"; {len(failures)} of {len(jobs)} runs failed ({', '.join(jobs[j].name for j, _ in failures)}), "
                  f"{len(jobs) - len(failures)} finished")
    if isinstance(cause, RLHFGymError):
        return type(cause)(f"{cause} ({where})")
    if isinstance(cause, OSError) and cause.filename is not None:
        return OSError(cause.errno, f"{cause.strerror or cause} ({where})", cause.filename)
    return RunFailedError(f"{type(cause).__name__}: {cause} ({where})")
