"""``--help`` stays fast: no command's help imports torch, transformers or Stable-Baselines3 (a command imports them
once it runs), and ``rlhf-gym --help`` and ``rlhf-gym train --help`` answer in seconds.

The target is under 2 s on an idle machine; the time bound here is generous, for a loaded CI machine of two cores.
Each check runs in a fresh interpreter: in this one the other tests have imported everything already.
"""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlhf_gym.command_registry import COMMANDS

HEAVY = ("torch", "transformers", "stable_baselines3")
SECONDS = 5.0
"""The bound on one ``--help`` as a subprocess, interpreter start included."""

HELP_AND_MODULES = """
import contextlib, io, json, sys
from rlhf_gym.cli import run_command
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    try:
        run_command({name!r}, ["--help"])
    except SystemExit:
        pass
print(json.dumps({{"help": shown.getvalue(), "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def help_and_heavy_modules(name: str) -> dict:
    """``rlhf-gym <name> --help`` in a fresh interpreter: what it printed and which of :data:`HEAVY` it imported."""
    result = subprocess.run([sys.executable, "-c", HELP_AND_MODULES.format(name=name, heavy=HEAVY)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    return json.loads(result.stdout)


def test_no_command_help_imports_torch_transformers_or_sb3():
    with ThreadPoolExecutor(max_workers=4) as pool:  # a process each (sys.modules only grows), a few at a time
        outcomes = dict(zip(COMMANDS, pool.map(help_and_heavy_modules, COMMANDS)))
    for name, outcome in outcomes.items():
        assert outcome["help"].startswith(f"usage: rlhf-gym {name}"), name
    assert {name: outcome["heavy"] for name, outcome in outcomes.items() if outcome["heavy"]} == {}


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]], ids=["rlhf-gym", "train"])
def test_help_answers_in_seconds(argv):
    started = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "rlhf-gym"), *argv], capture_output=True, text=True,
                            timeout=120)
    seconds = time.perf_counter() - started
    assert result.returncode == 0 and result.stdout.startswith("usage: rlhf-gym"), result.stderr[-2000:]
    assert seconds < SECONDS, f"rlhf-gym {' '.join(argv)} took {seconds:.1f} s (target: under 2 s on an idle machine)"
