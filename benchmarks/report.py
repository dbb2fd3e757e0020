"""The report: machine, arguments, per-system results, speed-up targets and the scaling sweep, as JSON and Markdown."""

from __future__ import annotations

import importlib.util
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch

from rlhf_gym.files import atomic_write_json, atomic_write_text
from rlhf_gym import provenance

from .workloads import WORKLOADS, Workload

ALGORITHMS = {"PPO": ("ours", "trl"), "PPO, LoRA": ("ours-lora", "trl-lora"), "RLOO": ("ours-rloo", "trl-rloo"),
              "GRPO": ("ours-grpo", "trl-grpo"), "DPO": ("ours-dpo", "trl-dpo")}
"""Each algorithm's (our system, TRL's system) on the same work."""
# (workload, our system, baseline, required speed-up of ours in response tokens / s); "small-96" is small at
# --response-length 96, where the per-token baseline's recomputation of every prefix costs the most
TARGETS = (("small", "ours", "trl", 3.0), ("medium", "ours", "trl", 3.0), ("small-96", "ours", "sb3-per-token", 100.0),
           *((config, ours, trl, 2.0) for name, (ours, trl) in ALGORITHMS.items() if name in ("RLOO", "GRPO", "DPO")
             for config in ("small", "medium")))


def our_system(system: str) -> str:
    """The system of ours that ``system`` is compared with: the one of its algorithm (PPO's ``ours`` for the PPO
    variants and baselines)."""
    return next((ours for ours, trl in ALGORITHMS.values() if system in (ours, trl)), "ours")


def growth_exponent(rows: list[dict], key: str) -> float | None:
    """Slope of log(seconds per iteration) against log(key): 1 is linear growth, 2 quadratic."""
    if len(rows) < 2:
        return None
    x = np.log([row[key] for row in rows])
    y = np.log([row["seconds_per_iteration"] for row in rows])
    return float(np.polyfit(x, y, 1)[0])


def workload_of(result: dict) -> Workload:
    """The workload a result was measured on (as run: ``--response-length`` may have changed a registered one)."""
    return Workload(**result["workload"])


def speedup(ours: dict, other: dict) -> float:
    """How many times ours' response tokens per second the other system's are; on a task workload, whose responses end
    at EOS (of random length, or forced to the full budget by ``ours-fixed-length``), how many times fewer seconds per
    iteration ours takes: the iteration's work (responses and optimizer steps) is the same on every side, its tokens
    are not."""
    if workload_of(ours).ends_at_eos:
        return other["seconds_per_iteration"] / ours["seconds_per_iteration"]
    return ours["response_tokens_per_second"] / other["response_tokens_per_second"]


def check_targets(results: list[dict]) -> list[dict]:
    by_key = {(r["config"], r["system"]): r for r in results}
    checks = []
    for config, ours, baseline, required in TARGETS:
        if (config, ours) in by_key and (config, baseline) in by_key:
            measured = speedup(by_key[config, ours], by_key[config, baseline])
            checks.append({"config": config, "ours": ours, "baseline": baseline, "required": required,
                           "measured": measured, "met": measured >= required})
    return checks


def ours_vs_trl(results: list[dict]) -> list[dict]:
    """For every workload and algorithm where both our system and TRL's ran: their seconds per iteration and
    the speed-up of ours (response tokens per second, on the same work)."""
    by_key = {(r["config"], r["system"]): r for r in results}
    rows = []
    for config in dict.fromkeys(r["config"] for r in results):
        for algorithm, (ours, trl) in ALGORITHMS.items():
            if (config, ours) in by_key and (config, trl) in by_key:
                mine, theirs = by_key[config, ours], by_key[config, trl]
                rows.append({"config": config, "algorithm": algorithm, "ours": ours, "trl": trl,
                             "ours_seconds_per_iteration": mine["seconds_per_iteration"],
                             "trl_seconds_per_iteration": theirs["seconds_per_iteration"],
                             "speedup": speedup(mine, theirs)})
    return rows


def megabytes(value: float | None) -> str:
    """A table cell of MB; "n/a" for a system that does not report it."""
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def machine_info(device: torch.device) -> dict[str, Any]:
    versions = {**provenance.versions(), "stable_baselines3": stable_baselines3.__version__}
    if importlib.util.find_spec("trl"):
        from importlib.metadata import version

        versions["trl"] = version("trl")
    return {"cpu": provenance.cpu_name(), "cpu_cores": os.cpu_count(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "versions": versions}


def build_report(args: dict[str, Any], command: str, device: torch.device, results: list[dict],
                 sweep: list[dict]) -> dict[str, Any]:
    """The JSON report. ``args``: every command-line option, as given (``sweep_config`` and ``amp`` are read here)."""
    base = WORKLOADS[args["sweep_config"]]
    by_length = [r for r in sweep if r["rollout_batch"] == base.rollout_batch]
    by_batch = [r for r in sweep if r["response_length"] == base.response_length]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_info(device),
        "precision": "bf16 autocast" if args["amp"] == "bf16" else "float32",
        "args": args, "workloads": {r["config"]: r["workload"] for r in results},
        "results": results, "ours_vs_trl": ours_vs_trl(results), "targets": check_targets(results),
        "sweep": sweep, "sweep_config": args["sweep_config"],
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
              "log-probs and reward (and TRL's value model; TRL's RLOO and GRPO: also the old log-probs), update = the "
              "epochs of optimizer steps (DPO: all of its training); other = the rest of the iteration. "
              "update GFLOP/s = 6 x trained parameters x tokens through the update / update time. "
              "ours is x faster = response tokens / s of the same algorithm's system of ours (ours for PPO and its "
              "baselines, ours-rloo for trl-rloo, ...) over this row's (on the reviews task, whose responses end at EOS: "
              "this row's s / iteration over ours'). response tokens count the live tokens, up to and including EOS; "
              "mean length = live tokens per response. weights = every parameter held (policy, reference, reward and "
              "value models), each storage once; training state = the optimizer's state and one gradient per trained "
              "parameter. "
              "load = the 1-minute load average when the system started."), ""]
    for config in dict.fromkeys(r["config"] for r in report["results"]):
        rows = [r for r in report["results"] if r["config"] == config]
        by_system = {r["system"]: r for r in rows}
        lines += [f"### {config}: {workload_of(rows[0]).describe()}", "",
                  "| system | s / iteration | response tokens / s | mean length | sampling s | scoring s | update s "
                  "| other s | optimizer steps | update GFLOP/s | peak RSS MB | weights MB | training state MB |"
                  + (" CUDA peak MB | update MFU |" if cuda else "")
                  + " ours is x faster | load |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "")
                  + "---:|---:|"]
        for r in rows:
            phases = r["phases"]
            ours = by_system.get(our_system(r["system"]))
            ratio = speedup(ours, r) if ours else float("nan")
            row = (f"| {r['system']} | {r['seconds_per_iteration']:.3f} | {r['response_tokens_per_second']:,.0f} "
                   f"| {r['mean_response_length']:.1f} | {phases['sampling']:.3f} | {phases['scoring']:.3f} "
                   f"| {phases['update']:.3f} | {phases['other']:.3f} "
                   f"| {r['optimizer_steps_per_iteration']} | {1000 * r['update_tflops_per_second']:,.1f} "
                   f"| {r['peak_rss_mb']:,.0f} | {megabytes(r.get('weights_mb'))} | {megabytes(r.get('training_state_mb'))} |")
            if cuda:
                mfu = f"{100 * r['update_mfu']:.1f}%" if r["update_mfu"] is not None else "n/a"
                row += f" {r['cuda_max_memory_allocated_mb']:,.0f} | {mfu} |"
            lines.append(row + f" {ratio:,.1f} | {r['load_average']['before']:.1f} |")
        lines.append("")
    if report["ours_vs_trl"]:
        lines += ["### Ours vs TRL, by algorithm (same work; response tokens / s of ours over TRL's, on the reviews task "
                  "TRL's s / iteration over ours')", "",
                  "| config | algorithm | ours | TRL | ours s / iteration | TRL s / iteration | ours is x faster |",
                  "|---|---|---|---|---:|---:|---:|"]
        for t in report["ours_vs_trl"]:
            lines.append(f"| {t['config']} | {t['algorithm']} | {t['ours']} | {t['trl']} "
                         f"| {t['ours_seconds_per_iteration']:.3f} | {t['trl_seconds_per_iteration']:.3f} "
                         f"| {t['speedup']:.2f} |")
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
                  "| config | ours | baseline | required | measured | met |", "|---|---|---|---:|---:|---|"]
        for t in report["targets"]:
            lines.append(f"| {t['config']} | {t['ours']} | {t['baseline']} | {t['required']:g}x | {t['measured']:.1f}x "
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
