"""Command-line parsing from a documented dataclass (each field: a default and ``metadata["help"]``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")


def arg(default: Any, help: str) -> Any:
    """A dataclass field with its command-line help."""
    return field(default=default, metadata={"help": help})


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_dataclass(cls: type[T], description: str, argv: list[str] | None = None) -> T:
    """Build ``cls`` from ``--field-name value`` options; ``--help`` lists every field with its help and default.

    A value of the wrong type, an unknown option, or a ``ValueError`` from ``cls.__post_init__`` exits with
    a one-line error naming the option (argparse's exit code 2), not a traceback.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    except ValueError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def _optional(annotation: Any):
    """The converter for a field annotated ``X | None`` (as a string under ``from __future__ import annotations``)."""
    text = str(annotation)
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def run(main: Callable[[T], Any], cls: type[T], description: str, argv: list[str] | None = None) -> None:
    """Parse the arguments and run ``main``; bad input (a missing or malformed file, a bad value found while
    running) ends with ``error: <message>`` and exit code 1 instead of a traceback."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    args = parse_dataclass(cls, description, argv)
    try:
        main(args)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
