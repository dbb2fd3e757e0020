"""Prompt sources: a list of strings, a JSONL file with a ``prompt`` field, a text file, or a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError, MissingFileError
from .jsonl import JSONLError, read_jsonl


def _prompt_of(record: dict, where: str) -> str:
    """The ``prompt`` of one JSONL object; :class:`~rlhf_gym.jsonl.JSONLError` naming ``where`` if it has none."""
    if not isinstance(record.get("prompt"), str):
        raise JSONLError(f"{where}: expected an object with a string 'prompt'")
    return record["prompt"]


def load_prompts(source: Any) -> list[str]:
    """Normalise ``source`` to a non-empty list of prompt strings; errors name the file and line.

    :raises MissingFileError: for a prompt file that does not exist.
    :raises DataError: for a malformed line, a dataset without a ``prompt`` column, or no prompts at all.
    :raises ConfigError: for a path with another suffix than ``.jsonl``, ``.json`` or ``.txt``.
    """
    if isinstance(source, (str, Path)) and Path(source).suffix == ".txt":
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"prompt file not found: {path}")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif isinstance(source, (str, Path)) and Path(source).suffix in (".jsonl", ".json"):
        prompts = list(read_jsonl(source, _prompt_of, what="prompt file"))
    elif hasattr(source, "column_names"):
        if "prompt" not in source.column_names:
            raise DataError(f"dataset has no 'prompt' column; it has {source.column_names}")
        prompts = list(source["prompt"])
    elif isinstance(source, (list, tuple)):
        prompts = list(source)
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be strings; prompt {bad[0]} is {type(prompts[bad[0]]).__name__}")
    elif isinstance(source, (str, Path)):
        raise ConfigError(f"prompt file {str(source)!r}: expected a .jsonl, .json or .txt file")
    else:
        raise TypeError(f"prompts: expected a list of strings, a .jsonl/.txt path or a dataset, got {source!r}")
    if not prompts:
        raise DataError(f"no prompts in {source}" if isinstance(source, (str, Path)) else "no prompts given")
    return prompts
