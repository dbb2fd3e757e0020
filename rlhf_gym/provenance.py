"""Where a figure was made: the software versions and the machine, stored beside every build, run and record.

Per-seed results on the CPU depend on the CPU family and on torch's thread count (a matrix product sums in another
order), so a rerun is bit-exact only on the same kind of machine with the same number of threads. Every artifact that a
published number comes from records both (:func:`machine`), so that a reader can tell which reruns should match exactly
and which should land inside the stated intervals only.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name: the first ``model name`` line of ``/proc/cpuinfo`` (Linux; ``cpuinfo`` is its text, read
    when None), else what :func:`platform.processor` says, else the architecture (``x86_64``, ``arm64``)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def versions() -> dict[str, str]:
    """Python's, torch's and transformers' versions."""
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def machine() -> dict:
    """The CPU (:func:`cpu_name`), its logical cores, torch's thread count in this process, and the GPU torch sees
    (None without one)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu}


def machine_text(machine_record: dict) -> str:
    """One line for a table's caption: ``AMD EPYC 9R14, 1 torch thread`` (and the GPU where there was one)."""
    threads = machine_record.get("torch_threads")
    text = f"{machine_record.get('cpu', 'unknown CPU')}, {threads} torch thread{'s' if threads != 1 else ''}"
    return f"{text}, GPU {machine_record['gpu']}" if machine_record.get("gpu") else text


def machines_summary(records: list[dict]) -> str:
    """Which machines ``records`` (each with its :func:`machine` under ``"machine"``, or none) were made on, with how many
    each: ``made on AMD EPYC 9R14, 1 torch thread (45 records)``. A table whose records come from several machines or
    thread counts is comparable across them only within its intervals, not seed by seed."""
    counts: dict[str, int] = {}
    for record in records:
        text = machine_text(record["machine"]) if record.get("machine") else "a machine not recorded"
        counts[text] = counts.get(text, 0) + 1
    made_on = "; ".join(f"{text} ({n} record{'s' if n != 1 else ''})" for text, n in counts.items())
    mixed = (" — several machines or thread counts: per-seed figures differ between them, compare the intervals"
             if len(counts) > 1 else "")
    return f"made on {made_on}{mixed}"
