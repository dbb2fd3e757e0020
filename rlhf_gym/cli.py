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
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any, TypeVar

from .command_registry import COMMANDS, GROUPS
from .errors import RLHFGymError
from .launcher import end_launched_worker

T = TypeVar("T")

def arg(default: Any, help: str, choices: Iterable[str] | Callable[[], Iterable[str]] | None = None) -> Any:
    """A dataclass field with its command-line help and, for an option with a fixed set of values, its ``choices``.

    ``--help`` shows the choices as the option's metavar (``{a,b,c}``). A function (such as
    :func:`rlhf_gym.agents.registry.algorithm_names`) is called when the parser is built, so that a registry shows what
    is registered then. argparse does not check them: the dataclass's ``__post_init__`` validates each value once, with
    its own message.
    """
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


class _BooleanOption(argparse.BooleanOptionalAction):
    """``--flag`` / ``--no-flag``, without the "(default: True)" that argparse before Python 3.14 appends to its help
    (:func:`_help_text` names the default once, as the spelling that is in effect)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = help


_NAMES_DEFAULT = re.compile(r"\(default\b|\bdefault:", re.IGNORECASE)
"""A help text that states its default: "(default 0.5)", "(default: the env's)", "...; default: 16"."""


def _help_text(f: dataclasses.Field) -> str:
    """The field's help with its default appended once: not when the help already names one, nor when it is None
    (a boolean's default is the spelling in effect: ``--progress-bar`` or ``--no-progress-bar``)."""
    text = f.metadata.get("help", "")
    if f.default is None or _NAMES_DEFAULT.search(text):
        return text
    if isinstance(f.default, bool):
        option = f.name.replace("_", "-")
        return f"{text} (default: --{'' if f.default else 'no-'}{option})"
    return f"{text} (default: {f.default})"


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

    A boolean field is a pair ``--flag`` / ``--no-flag`` (``bool | None``: None when neither is given; a field named
    ``no_x`` that defaults to False is the single switch ``--no-x``); a field with choices (:func:`arg`) shows them as
    ``{a,b,c}``; a default is shown once: not when the help text already names it, nor when it is None.

    A value of the wrong type, an unknown option, or an error from ``cls.__post_init__`` exits with a one-line
    error naming the option (argparse's exit code 2), not a traceback.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # one spelling per option: no prefixes
    for f in dataclasses.fields(cls):
        option = f"--{f.name.replace('_', '-')}"
        help_text = _help_text(f)
        choices = f.metadata.get("choices")
        choices = choices() if callable(choices) else choices
        metavar = "{" + ",".join(map(str, choices)) + "}" if choices is not None else None
        if isinstance(f.default, bool):
            if f.name.startswith("no_") and f.default is False:  # --no-labeler, without --no-no-labeler
                parser.add_argument(option, action="store_true", help=f.metadata.get("help", ""))
            else:
                parser.add_argument(option, action=_BooleanOption, default=f.default, help=help_text)
        elif f.default is None and str(f.type).replace(" ", "") == "bool|None":  # a switch left out: None
            parser.add_argument(option, action=_BooleanOption, default=None, help=help_text)
        elif f.default is None:
            parser.add_argument(option, type=_optional(f.type), default=None, metavar=metavar, help=help_text)
        else:
            parser.add_argument(option, type=type(f.default), default=f.default, metavar=metavar, help=help_text)
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
    args = parse_dataclass(cls, description, argv, prog)  # --help and bad options end here, before any heavy import
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return main(args)
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def run_command(name: str, argv: list[str] | None = None) -> Any:
    """Run the command ``name`` of :data:`rlhf_gym.command_registry.COMMANDS` (its module's ``main`` with its ``Args``).

    In a process that ``accelerate launch`` started beside the main one, a finished command ends the process here
    (:func:`rlhf_gym.launcher.end_launched_worker`)."""
    module = importlib.import_module(COMMANDS[name].module)
    result = run(module.main, module.Args, module.__doc__, argv, prog=f"rlhf-gym {name}")
    end_launched_worker()
    return result


def overview() -> str:
    """``rlhf-gym --help``: every command with its one-line summary, in the groups of
    :data:`rlhf_gym.command_registry.GROUPS` (no command module is imported)."""
    lines = ["usage: rlhf-gym <command> [options]      rlhf-gym <command> --help: its options",
             "       rlhf-gym --version", "",
             "Reinforcement learning from human feedback: preference data, reward models, the RLHF-v0 environment,",
             "trainers (PPO, NLPO, RLOO, GRPO, DPO), studies of reward hacking and speed benchmarks."]
    width = max(len(name) for name in COMMANDS) + 2
    for group in GROUPS:
        lines += ["", f"{group}:"]
        lines += [f"  {c.name:<{width}}{c.summary}" for c in COMMANDS.values() if c.group == group]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``rlhf-gym <command> [options]``: the installed command line (exit code 0 on success).

    Returns None: the console-script wrapper passes the return value to ``sys.exit``, which would turn a
    command's result into exit code 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"rlhf-gym {__version__}")
        return
    if argv[0] not in COMMANDS:
        print(f"rlhf-gym: error: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    run_command(argv[0], argv[1:])
