"""Prompt sources: a list of strings, a JSONL file with a ``prompt`` field, a text file, or a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_prompts(source: Any) -> list[str]:
    """Normalise ``source`` to a non-empty list of prompt strings; errors name the file and line."""
    if isinstance(source, (str, Path)) and Path(source).suffix in (".jsonl", ".txt", ".json"):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file not found: {path}")
        prompts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                prompts.append(line.strip())
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise ValueError(f"{path}:{number}: expected an object with a string 'prompt'")
            prompts.append(record["prompt"])
    elif hasattr(source, "column_names"):
        if "prompt" not in source.column_names:
            raise ValueError(f"dataset has no 'prompt' column; it has {source.column_names}")
        prompts = list(source["prompt"])
    elif isinstance(source, (list, tuple)):
        prompts = list(source)
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be strings; prompt {bad[0]} is {type(prompts[bad[0]]).__name__}")
    else:
        raise TypeError(f"prompts: expected a list of strings, a .jsonl/.txt path or a dataset, got {source!r}")
    if not prompts:
        raise ValueError(f"no prompts in {source!r}")
    return prompts
