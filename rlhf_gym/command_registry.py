"""The ``rlhf-gym`` commands: one table of name, module and group, read without importing any command.

Each command is a module with an ``Args`` dataclass, a ``main(args)`` and a docstring whose first line is the
command's one-line summary (:mod:`rlhf_gym.cli`). The table names modules of every floor of the package (core, agents,
benchmarks, studies) as strings, so ``rlhf-gym --help`` imports none of them: it reads each summary from the module's
source with :mod:`ast`, and a command's module is imported only when that command runs (so ``label`` never imports
SB3, and ``--help`` stays fast).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache

GROUPS = ("data", "train", "evaluate", "studies", "benchmarks")
"""The groups of ``rlhf-gym --help``, in its order."""


@dataclass(frozen=True)
class Command:
    """One ``rlhf-gym`` command: its name, its module's dotted path and its group of :data:`GROUPS`."""

    name: str
    module: str
    group: str

    @property
    def summary(self) -> str:
        """The first line of the module's docstring, read from its source (the module is not imported)."""
        return module_summary(self.module)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("collect", "rlhf_gym.commands.collect", "data"),
    Command("label", "rlhf_gym.commands.label", "data"),
    Command("build-task", "rlhf_gym.commands.build_task", "data"),
    Command("export-data", "rlhf_gym.commands.export_data", "data"),
    Command("make-model", "rlhf_gym.commands.make_model", "data"),
    Command("sft", "rlhf_gym.commands.sft", "train"),
    Command("train-rm", "rlhf_gym.commands.train_rm", "train"),
    Command("build-ensemble", "rlhf_gym.commands.build_ensemble", "train"),
    Command("train", "rlhf_gym.agents.train", "train"),
    Command("evaluate", "rlhf_gym.agents.evaluate", "evaluate"),
    Command("summarize", "rlhf_gym.commands.summarize", "evaluate"),
    Command("rm-quality", "rlhf_gym.commands.rm_quality", "evaluate"),
    Command("best-of-n", "rlhf_gym.studies.best_of_n", "studies"),
    Command("sweep", "rlhf_gym.studies.sweep", "studies"),
    Command("iterate", "rlhf_gym.studies.iterated", "studies"),
    Command("rm-scaling", "rlhf_gym.studies.rm_scaling", "studies"),
    Command("diverse-ensembles", "rlhf_gym.studies.diverse_ensembles", "studies"),
    Command("leaderboard", "rlhf_gym.studies.leaderboard", "studies"),
    Command("suite-hacks", "rlhf_gym.studies.suite_hacks", "studies"),
    Command("direct-overopt", "rlhf_gym.studies.direct_overoptimisation", "studies"),
    Command("tune", "rlhf_gym.studies.tuning", "studies"),
    Command("benchmark", "rlhf_gym.benchmarks.command", "benchmarks"),
    Command("env-overhead", "rlhf_gym.benchmarks.env_overhead_command", "benchmarks"),
    Command("trl-baselines", "rlhf_gym.benchmarks.trl_algorithms", "benchmarks"),
    Command("trl-sft", "rlhf_gym.benchmarks.trl_sft", "benchmarks"),
    Command("gpu-check", "rlhf_gym.benchmarks.gpu_check", "benchmarks"),
)}
"""``rlhf-gym`` subcommand -> :class:`Command`."""


@cache
def module_summary(module: str) -> str:
    """The first line of ``module``'s docstring, parsed from its file without running it."""
    with open(source_file(module), encoding="utf-8") as handle:
        docstring = ast.get_docstring(ast.parse(handle.read())) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def source_file(module: str) -> str:
    """The file of ``module``, found without running it or its packages' ``__init__`` (which
    ``importlib.util.find_spec`` would import): each package's location is asked of the import system's finders."""
    search_path, spec = None, None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        loaded = sys.modules.get(name)
        spec = loaded.__spec__ if loaded is not None and loaded.__spec__ is not None else next(
            (found for finder in sys.meta_path if hasattr(finder, "find_spec")
             and (found := finder.find_spec(name, search_path)) is not None), None)
        if spec is None:
            raise ModuleNotFoundError(f"no module named {name!r}", name=name)
        search_path = spec.submodule_search_locations
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no source file for {module!r}", name=module)
    return spec.origin
