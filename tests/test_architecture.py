"""The package's shape: one import name, floors that import downwards only, and no SB3 below the agents.

Floors, from the bottom: the core (``rlhf_gym`` itself), ``rlhf_gym.envs``, ``rlhf_gym.agents``, ``rlhf_gym.benchmarks``
and ``rlhf_gym.studies`` on top. A module may import its own floor and those below it, by an import statement or by
naming a module in a string (Gymnasium entry points, ``importlib``); the command registry alone names every floor,
since the command line dispatches to all of them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"rlhf_gym": ROOT / "rlhf_gym", "rlhf_gym.envs": ROOT / "envs", "rlhf_gym.agents": ROOT / "agents",
           "rlhf_gym.benchmarks": ROOT / "benchmarks", "rlhf_gym.studies": ROOT / "studies"}
"""Each subpackage and the repository folder it is installed from (pyproject.toml's package-dir)."""
FLOORS = ("core", "envs", "agents", "benchmarks", "studies")
NAMES_EVERY_FLOOR = {"rlhf_gym.command_registry"}
"""The command line's registry of commands: it names (and lazily imports) the modules of every floor."""
GYMNASIUM_REGISTRY = {"rlhf_gym.registration"}
"""Registers the env ids with Gymnasium's entry-point strings (imported lazily by ``gym.make``): it may name envs."""


def floor(module: str) -> str | None:
    """The floor of a module name of rlhf_gym, None for another distribution's."""
    parts = module.split(".")
    if parts[0] != "rlhf_gym":
        return None
    if len(parts) > 1 and parts[1] in FLOORS[1:]:
        return parts[1]
    return "core"


def modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "rlhf_gym" or floor(name) != "core":
                found[name] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """The rlhf_gym modules ``name`` imports (absolute and relative imports) or names in a string constant."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("rlhf_gym."):
            out.add(node.value.split(":")[0].split()[0])  # "rlhf_gym.envs.rlhf_env:RLHFEnv"
    return {m for m in out if m.startswith("rlhf_gym")}


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_name(tmp_path):
    """The built wheel holds ``rlhf_gym`` (with agents, envs, benchmarks and studies inside) and its metadata only."""
    source = tmp_path / "source"  # a copy, so the build's own build/ folder is not left in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "dist", "runs",
                                                                "*.egg-info", "__pycache__", "mutants"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(source)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("rlhf_gym-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"rlhf_gym"}
    for module, path in modules().items():  # every module of every floor is in it, where its name says
        relative = module.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        assert relative in names, f"{path} is missing from the wheel (add its package to pyproject.toml)"
    assert "rlhf_gym/tasks/reviews/artifacts/policy/model.safetensors" in names


def test_a_users_own_agents_and_envs_modules_do_not_hide_ours(tmp_path):
    """``agents.py`` and ``envs/`` in the working directory (first on ``sys.path``) break nothing of rlhf_gym."""
    (tmp_path / "agents.py").write_text("raise ImportError('the user agents module')\n")
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text("raise ImportError('the user envs package')\n")
    (tmp_path / "benchmarks.py").write_text("raise ImportError('the user benchmarks module')\n")
    code = ("import gymnasium as gym, rlhf_gym.agents, rlhf_gym.envs, rlhf_gym.studies.sweep\n"
            "from rlhf_gym.agents import TokenPPO\n"
            "print(type(gym.make('RLHF-v0').unwrapped).__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "rlhf_gym.envs.rlhf_env"


def test_every_floor_imports_only_its_own_and_the_floors_below():
    order = {name: i for i, name in enumerate(FLOORS)}
    found = modules()
    wrong = []
    for name, path in found.items():
        for target in imported_names(name, path):
            if target not in found and target.rpartition(".")[0] not in found:
                continue  # a name inside a module (`from rlhf_gym.cli import arg`), checked through its module
            module = target if target in found else target.rpartition(".")[0]
            if name in NAMES_EVERY_FLOOR:
                continue
            if name in GYMNASIUM_REGISTRY and floor(module) == "envs":
                continue
            if order[floor(module)] > order[floor(name)]:
                wrong.append(f"{name} ({floor(name)}) -> {module} ({floor(module)})")
    assert not wrong, "imports against the floors:\n" + "\n".join(sorted(wrong))


def test_the_import_graph_check_sees_relative_imports_and_names_in_strings(tmp_path):
    """The check above would notice an upward import written relatively or as a string."""
    path = tmp_path / "mod.py"
    path.write_text("from ..agents import ppo\nfrom . import utils\nENTRY = 'rlhf_gym.studies.sweep:main'\n")
    assert imported_names("rlhf_gym.envs.mod", path) >= {"rlhf_gym.agents.ppo", "rlhf_gym.envs.utils",
                                                          "rlhf_gym.studies.sweep"}


def test_neither_the_core_nor_the_envs_import_stable_baselines3():
    """``gym.make("RLHF-v0")`` must work without SB3: it is the agents' dependency."""
    offenders = []
    for name, path in modules().items():
        if floor(name) not in ("core", "envs"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("stable_baselines3", "sb3_contrib")]
    assert not offenders
