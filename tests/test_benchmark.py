"""scripts/benchmark.py --quick: the report's structure, for ours alone and (when installed) beside TRL."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK_STEPS = 2 * 2  # the quick workload: 2 minibatches x 2 epochs
QUICK_RESPONSE = 8


def run_quick(out_dir: Path, *options: str) -> tuple[dict, str]:
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--out-dir", str(out_dir), *options]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out_dir / "benchmark.json").read_text()), (out_dir / "benchmark.md").read_text()


def check_result(result: dict) -> None:
    assert result["seconds_per_iteration"] > 0 and result["response_tokens_per_second"] > 0
    assert set(result["phases"]) == {"sampling", "scoring", "update", "other"}
    assert all(result["phases"][phase] > 0 for phase in ("sampling", "scoring", "update"))
    assert result["optimizer_steps_per_iteration"] == QUICK_STEPS
    assert result["mean_response_length"] == QUICK_RESPONSE  # the stop token never occurs: full-length responses
    assert result["peak_rss_mb"] >= result["rss_after_imports_mb"] > 0
    assert result["trainable_parameters"] > 0 and result["update_tflops_per_second"] > 0
    assert result["timed_iterations"] == 1 and len(result["iterations"]) == 2  # one warm-up, one timed


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_of_ours_writes_json_and_markdown(tmp_path):
    report, table = run_quick(tmp_path, "--systems", "ours")
    assert {"date", "command", "machine", "args", "results", "sweep", "targets", "growth_exponents"} <= set(report)
    assert report["machine"]["cpu_cores"] > 0 and report["precision"] == "float32"
    [result] = report["results"]
    assert (result["config"], result["system"]) == ("quick", "ours")
    check_result(result)
    points = {(row["response_length"], row["rollout_batch"]) for row in report["sweep"]}
    assert points == {(4, 8), (8, 8), (8, 4)}
    for row in report["sweep"]:
        assert row["seconds_per_iteration"] > 0 and row["response_tokens_per_second"] > 0
        assert row["optimizer_steps_per_iteration"] == QUICK_STEPS
    assert all(isinstance(value, float) for value in report["growth_exponents"].values())
    assert "| ours |" in table and "Scaling of ours" in table


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_counts_the_same_work_for_trl(tmp_path):
    pytest.importorskip("trl")
    report, table = run_quick(tmp_path, "--systems", "ours,trl", "--sweep", "false")
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == {"ours", "trl"}
    for result in results.values():
        check_result(result)
    assert report["sweep"] == [] and "| trl |" in table
