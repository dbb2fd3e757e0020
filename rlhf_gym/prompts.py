"""Prompt sources: a list of strings, a JSONL file with a ``prompt`` field, a text file, or a dataset."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError, MissingFileError
from .jsonl import JSONLError, read_jsonl


def _prompt_of(record: dict, where: str) -> str:
    """The ``prompt`` of one JSONL object; :class:`~rlhf_gym.jsonl.JSONLError` naming ``where`` if it has none."""
    if not isinstance(record.get("prompt"), str):
        raise JSONLError(f"{where}: expected an object with a string 'prompt'")
    if "\x00" in record["prompt"]:
        raise JSONLError(f"{where}: NUL byte in the prompt")
    return record["prompt"]


def _read_text_prompts(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped; :class:`DataError` naming ``file:line`` for bad bytes."""
    if not path.is_file():
        raise MissingFileError(f"prompt file not found: {path}")
    prompts = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as cause:
                raise DataError(f"{path}:{number}: invalid UTF-8 ({cause.reason} at byte {cause.start})") from None
            if "\x00" in line:
                raise DataError(f"{path}:{number}: NUL byte in the prompt (a binary file?)")
            if line:
                prompts.append(line)
    return prompts


def load_prompts(source: Any) -> list[str]:
    """Normalise ``source`` to a non-empty list of prompt strings; errors name the file and line.

    :raises MissingFileError: for a prompt file that does not exist.
    :raises DataError: for a malformed line, a dataset without a ``prompt`` column, or no prompts at all.
    :raises ConfigError: for a path with another suffix than ``.jsonl``, ``.json`` or ``.txt``.
    """
    if isinstance(source, (str, Path)) and Path(source).suffix == ".txt":
        prompts = _read_text_prompts(Path(source))
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


def tokenize_prompts(prompts: list[str], tokenizer) -> list[list[int]]:
    """The token ids of each prompt (no special tokens), with a warning when some are only unknown tokens."""
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    unk = tokenizer.unk_token_id
    unknown = [i for i, ids in enumerate(prompt_ids) if unk is not None and ids and all(t == unk for t in ids)]
    if unknown:
        warnings.warn(f"{len(unknown)} of {len(prompts)} prompts are only unknown tokens ({tokenizer.unk_token}) for the "
                      f"policy's tokenizer, e.g. prompt {unknown[0]} ({prompts[unknown[0]]!r}); are they in the task's "
                      "language?", UserWarning, stacklevel=2)
    return prompt_ids
