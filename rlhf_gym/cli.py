"""The command line: options parsed from documented dataclasses, one error policy, and the ``rlhf-gym`` command.

Every command is a module with an ``Args`` dataclass (each field: a default and ``metadata["help"]``, see
:func:`arg`), a ``main(args)`` and a module docstring. ``rlhf-gym <command> [options]`` and
``python scripts/<script>.py [options]`` run the same module through :func:`run`.

**Exit codes and errors.** A bad option (wrong type, unknown, or refused by ``Args.__post_init__``) exits with
argparse's code 2 and a one-line message naming the option. While running, a user error — a
:class:`rlhf_gym.errors.RLHFGymError` (bad value, malformed data naming file:line, missing file or model), an
OS error (permission denied, disk full, not a directory...) or a Hugging Face loading error — ends with
``error: <message>`` naming the path, and exit code 1. Anything else is a bug and keeps its traceback.

Options that name outputs are spelled ``--out`` (one file) and ``--out-dir`` (a directory) everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar

from .errors import RLHFGymError

T = TypeVar("T")

COMMANDS: dict[str, str] = {
    "train": "agents.train",
    "evaluate": "agents.evaluate",
    "leaderboard": "benchmarks.leaderboard",
    "trl-baselines": "benchmarks.trl_algorithms",
    "suite-hacks": "benchmarks.suite_hacks",
    "sweep": "agents.sweep",
    "iterate": "agents.iterated",
    "rm-scaling": "agents.rm_scaling",
    "diverse-ensembles": "agents.diverse_ensembles",
    "collect": "rlhf_gym.commands.collect",
    "label": "rlhf_gym.commands.label",
    "train-rm": "rlhf_gym.commands.train_rm",
    "build-task": "rlhf_gym.commands.build_task",
    "build-ensemble": "rlhf_gym.commands.build_ensemble",
    "best-of-n": "rlhf_gym.commands.best_of_n",
    "summarize": "rlhf_gym.commands.summarize",
    "benchmark": "benchmarks.command",
    "env-overhead": "benchmarks.env_overhead_command",
}
"""``rlhf-gym`` subcommand -> module (imported only when its command runs, so ``label`` never imports SB3)."""


def arg(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help."""
    return field(default=default, metadata={"help": help})


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(annotation: Any):
    """The converter for a field annotated ``X | None`` (as a string under ``from __future__ import annotations``)."""
    text = str(annotation)
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def parse_dataclass(cls: type[T], description: str, argv: list[str] | None = None, prog: str | None = None) -> T:
    """Build ``cls`` from ``--field-name value`` options; ``--help`` lists every field with its help and default.

    A value of the wrong type, an unknown option, or an error from ``cls.__post_init__`` exits with a one-line
    error naming the option (argparse's exit code 2), not a traceback.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # one spelling per option: no prefixes
    for f in dataclasses.fields(cls):
        kind = type(f.default) if f.default is not None else str
        option = f"--{f.name.replace('_', '-')}"
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(option, type=_parse_bool, nargs="?", const=True, default=f.default, metavar="BOOL",
                                help=help_text)
        elif f.default is None:
            parser.add_argument(option, type=_optional(f.type), default=None, help=help_text)
        else:
            parser.add_argument(option, type=kind, default=f.default, help=help_text)
    namespace = parser.parse_args(argv)
    try:
        return cls(**vars(namespace))
    except (RLHFGymError, ValueError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a user error, or None for a bug (which keeps its traceback)."""
    if isinstance(error, RLHFGymError):
        return str(error)
    if isinstance(error, OSError):  # permission denied, disk full, missing file, HF "can't load" errors...
        if error.filename is not None and error.strerror:
            return f"{error.strerror}: {error.filename}"
        return str(error)
    try:
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    if isinstance(error, HFValidationError):  # a path that does not exist, read as a malformed hub id
        return f"not a model directory or hub id: {error}"
    return None


def run(main: Callable[[T], Any], cls: type[T], description: str, argv: list[str] | None = None,
        prog: str | None = None) -> Any:
    """Parse the arguments and run ``main`` under the error policy of the module docstring."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    args = parse_dataclass(cls, description, argv, prog)
    try:
        return main(args)
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def run_command(name: str, argv: list[str] | None = None) -> Any:
    """Run the command ``name`` of :data:`COMMANDS` (its module's ``main`` with its ``Args``)."""
    module = importlib.import_module(COMMANDS[name])
    return run(module.main, module.Args, module.__doc__, argv, prog=f"rlhf-gym {name}")


def main(argv: list[str] | None = None) -> None:
    """``rlhf-gym <command> [options]``: the installed command line (exit code 0 on success).

    Returns None: the console-script wrapper passes the return value to ``sys.exit``, which would turn a
    command's result into exit code 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rlhf-gym <command> [options]   (rlhf-gym <command> --help for its options)\n\ncommands:")
        for name, module in COMMANDS.items():
            print(f"  {name:<15} {module}")
        return
    if argv[0] not in COMMANDS:
        print(f"rlhf-gym: error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    run_command(argv[0], argv[1:])
