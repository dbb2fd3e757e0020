"""What a training run read, by content: the hashes that let a resume refuse inputs changed since the run started.

A run stores, in its args.json, the SHA-256 of every local input it reads: the files and model directories given on
the command line (``--model``, ``--ref-model``, ``--reward-model``, ``--prompts``, ``--comparisons``) and the artifacts
of its env's task, which supply whatever was not given (reference, reward model, prompts, comparisons), along with the
reward-model ensemble an env id may fix. A resume recomputes them and refuses one that changed, naming it: otherwise a
replaced reward model or a shortened prompt file would silently mix two runs in one curve. A hub id is recorded as it
is (its files are not local); a run of rlhf-gym 0.8 recorded nothing and is resumed unchecked, with a note.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from rlhf_gym.errors import ConfigError

GIVEN_INPUTS = ("model", "ref_model", "reward_model", "prompts", "comparisons")
"""TrainConfig fields that name an input file or directory."""
INPUTS_KEY = "inputs"
"""The key of args.json that holds them."""


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (their relative paths and bytes, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        digest.update(b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def describe_input(value: Any) -> str:
    """A local path's content hash, ``hub:<id>`` for a name that is no local path, or the object's type otherwise."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        return content_hash(path) if path.exists() else f"hub:{value}"
    directory = getattr(value, "directory", None)  # a LazyRewardEnsemble fixed by an env id
    if isinstance(directory, Path) and directory.exists():
        return content_hash(directory)
    return f"object:{type(value).__name__}"


def run_inputs(config: Any) -> dict[str, str]:
    """The content of every input of a run with ``config`` (a :class:`rlhf_gym.agents.experiment.TrainConfig`)."""
    from gymnasium.envs.registration import spec

    from rlhf_gym.tasks import load_task

    registered = spec(config.env_id).kwargs
    inputs = {name: describe_input(getattr(config, name)) for name in GIVEN_INPUTS if getattr(config, name) is not None}
    if config.reward_model is None and registered.get("reward_model") is not None:
        inputs["reward_model"] = describe_input(registered["reward_model"])
    task = config.task or registered.get("task", "reviews")
    inputs[f"task:{task}"] = content_hash(load_task(task).artifacts_dir)
    return inputs


def check_unchanged_inputs(stored: dict | None, current: dict[str, str], where: Path) -> str | None:
    """A :class:`ConfigError` naming every input whose content differs from ``stored`` (args.json's record); a note
    when the run recorded none (rlhf-gym 0.8), None when all match."""
    if stored is None:
        return f"{where} records no input hashes (a run of rlhf-gym 0.8): its inputs are not checked"
    changed = sorted(name for name in set(stored) | set(current) if stored.get(name) != current.get(name))
    if changed:
        names = ", ".join(f"--{name.replace('_', '-')}" if ":" not in name else name for name in changed)
        raise ConfigError(f"--resume: the run's inputs changed since it started ({names}); {where} records their "
                          "content. Resume with the same files, or start a new run")
    return None
