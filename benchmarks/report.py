"""The report: machine, arguments, per-system results, speed-up targets and the scaling sweep, as JSON and Markdown."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch
import transformers

from rlhf_gym.utils import atomic_write_json, atomic_write_text

from .workloads import WORKLOADS

# (workload, baseline, required speed-up of ours in response tokens / s)
TARGETS = (("small", "trl", 3.0), ("medium", "trl", 2.5), ("small", "sb3-per-token", 100.0),
           ("medium", "sb3-per-token", 100.0))


def growth_exponent(rows: list[dict], key: str) -> float | None:
    """Slope of log(seconds per iteration) against log(key): 1 is linear growth, 2 quadratic."""
    if len(rows) < 2:
        return None
    x = np.log([row[key] for row in rows])
    y = np.log([row["seconds_per_iteration"] for row in rows])
    return float(np.polyfit(x, y, 1)[0])


def check_targets(results: list[dict]) -> list[dict]:
    by_key = {(r["config"], r["system"]): r for r in results}
    checks = []
    for config, baseline, required in TARGETS:
        if (config, "ours") in by_key and (config, baseline) in by_key:
            ours, other = by_key[config, "ours"], by_key[config, baseline]
            speedup = ours["response_tokens_per_second"] / other["response_tokens_per_second"]
            checks.append({"config": config, "baseline": baseline, "required": required, "measured": speedup,
                           "met": speedup >= required})
    return checks


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "stable_baselines3": stable_baselines3.__version__}
    if importlib.util.find_spec("trl"):
        from importlib.metadata import version

        versions["trl"] = version("trl")
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "versions": versions}


def build_report(args: dict[str, Any], command: str, device: torch.device, configs: list[str], results: list[dict],
          sweep: list[dict]) -> dict[str, Any]:
    """The JSON report. ``args``: every command-line option, as given (``sweep_config`` and ``amp`` are read here)."""
    base = WORKLOADS[args["sweep_config"]]
    by_length = [r for r in sweep if r["rollout_batch"] == base.rollout_batch]
    by_batch = [r for r in sweep if r["response_length"] == base.response_length]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_info(device),
        "precision": "bf16 autocast" if args["amp"] == "bf16" and device.type == "cuda" else "float32",
        "args": args, "workloads": {c: dataclasses.asdict(WORKLOADS[c]) for c in configs},
        "results": results, "targets": check_targets(results), "sweep": sweep, "sweep_config": args["sweep_config"],
        "growth_exponents": {"response_length": growth_exponent(by_length, "response_length"),
                             "rollout_batch": growth_exponent(by_batch, "rollout_batch")},
    }


def markdown(report: dict[str, Any]) -> str:
    cuda = report["machine"]["gpu"] is not None
    threads = sorted({r["threads"] for r in report["results"]})
    lines = [f"Benchmark of {report['date']} on {report['machine']['cpu']} ({report['machine']['cpu_cores']} CPU cores, "
             f"torch threads {', '.join(map(str, threads))}, device {report['machine']['device']}"
             + (f", {report['machine']['gpu']}" if cuda else "") + f", precision {report['precision']}).",
             f"Command: `{report['command']}`", "",
             ("Medians over the timed iterations. Phases: sampling = generating the responses, scoring = reference "
              "log-probs and reward (and TRL's value model), update = the PPO epochs; other = the rest of the iteration. "
              "update GFLOP/s = 6 x trained parameters x tokens through the update / update time. "
              "load = the 1-minute load average when the system started."), ""]
    for config in dict.fromkeys(r["config"] for r in report["results"]):
        rows = [r for r in report["results"] if r["config"] == config]
        ours = next((r for r in rows if r["system"] == "ours"), None)
        lines += [f"### {config}: {WORKLOADS[config].describe()}", "",
                  "| system | s / iteration | response tokens / s | sampling s | scoring s | update s | other s "
                  "| optimizer steps | update GFLOP/s | peak RSS MB |" + (" CUDA peak MB | update MFU |" if cuda else "")
                  + " ours is x faster | load |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "") + "---:|---:|"]
        for r in rows:
            phases = r["phases"]
            speedup = ours["response_tokens_per_second"] / r["response_tokens_per_second"] if ours else float("nan")
            row = (f"| {r['system']} | {r['seconds_per_iteration']:.3f} | {r['response_tokens_per_second']:,.0f} "
                   f"| {phases['sampling']:.3f} | {phases['scoring']:.3f} | {phases['update']:.3f} | {phases['other']:.3f} "
                   f"| {r['optimizer_steps_per_iteration']} | {1000 * r['update_tflops_per_second']:,.1f} "
                   f"| {r['peak_rss_mb']:,.0f} |")
            if cuda:
                mfu = f"{100 * r['update_mfu']:.1f}%" if r["update_mfu"] is not None else "n/a"
                row += f" {r['cuda_max_memory_allocated_mb']:,.0f} | {mfu} |"
            lines.append(row + f" {speedup:,.1f} | {r['load_average']['before']:.1f} |")
        lines.append("")
    if report["sweep"]:
        lines += [f"### Scaling of ours ({report['sweep_config']} model)", "",
                  ("| response length | rollout batch | s / iteration | response tokens / s | sampling s | scoring s "
                   "| update s |"), "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["sweep"]:
            p = r["phases"]
            lines.append(f"| {r['response_length']} | {r['rollout_batch']} | {r['seconds_per_iteration']:.3f} "
                         f"| {r['response_tokens_per_second']:,.0f} | {p['sampling']:.3f} | {p['scoring']:.3f} "
                         f"| {p['update']:.3f} |")
        exponents = report["growth_exponents"]
        lines += ["", "Growth of s / iteration (slope on log-log axes; 1 = linear, 2 = quadratic): "
                  + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in exponents.items() if v is not None), ""]
    if report["targets"]:
        lines += ["### Targets (ours' response tokens / s over the baseline's)", "",
                  "| config | baseline | required | measured | met |", "|---|---|---:|---:|---|"]
        for t in report["targets"]:
            lines.append(f"| {t['config']} | {t['baseline']} | {t['required']:g}x | {t['measured']:.1f}x "
                         f"| {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """``benchmark.json`` and ``benchmark.md`` in ``out_dir`` (atomically), and the tables on stdout."""
    table = markdown(report)
    atomic_write_json(out_dir / "benchmark.json", report)
    atomic_write_text(out_dir / "benchmark.md", table + "\n")
    print(table)
    print(f"wrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}")
