"""What a task is: prompts with a fixed split, a reference (SFT) policy, a reward model, maybe a gold reward."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from ..errors import MissingFileError
from ..preferences import load_preferences
from ..reward_model import RewardModel
from ..reward_training import METADATA_FILE, split_records
from ..utils import load_model, load_pretrained
from ..files import read_json
from . import DEFAULT_MAX_NEW_TOKENS

VALIDATION_PROMPTS = 256
"""The validation split: the last this many train prompts, held out of training by ``rlhf-gym tune`` to choose each
method's settings (the held-out prompts are never used for a choice)."""


@dataclass
class Task:
    """A prompt distribution and its models, loaded from an artifacts directory.

    :param name: task id.
    :param artifacts_dir: holds ``policy/`` (causal LM + tokenizer) and ``reward_model/`` in HF format, and
        ``metadata.json``.
    :param train_prompts: prompts for training.
    :param eval_prompts: held-out prompts for evaluation.
    :param gold_reward: the true reward ``G(prompt, response)`` when the task has one (never shown to agents).
    :param is_well_formed: ``f(prompt, response) -> bool`` when the task has a grammar.
    :param max_new_tokens: default response budget.
    :param gold_ceiling: ``prompt -> max_y G(prompt, y)`` when it is known (the normalised score's 1).
    :param sample_text: ``rng -> (prompt, response)``, a demonstration of the task's generator (None: unknown); it sets
        the response budget of a policy with another tokenizer (:meth:`response_budget`).
    """

    name: str
    artifacts_dir: Path
    train_prompts: list[str]
    eval_prompts: list[str]
    gold_reward: Callable[[str, str], float] | None = None
    is_well_formed: Callable[[str, str], bool] | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    reward_model_dir: Path | None = field(default=None)
    gold_ceiling: Callable[[str], float] | None = None
    sample_text: Callable[[random.Random], tuple[str, str]] | None = None

    @property
    def validation_prompts(self) -> list[str]:
        """The last :data:`VALIDATION_PROMPTS` train prompts: what tuning scores settings on."""
        return self.train_prompts[-VALIDATION_PROMPTS:]

    @property
    def tuning_prompts(self) -> list[str]:
        """The train prompts without the validation split: what tuning trains on."""
        return self.train_prompts[:-VALIDATION_PROMPTS]

    @property
    def policy_dir(self) -> Path:
        return self.artifacts_dir / "policy"

    @property
    def reward_dir(self) -> Path:
        return self.reward_model_dir or self.artifacts_dir / "reward_model"

    @cached_property
    def metadata(self) -> dict:
        path = self.artifacts_dir / "metadata.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def response_budget(self, tokenizer, n_texts: int = 512) -> int:
        """The response budget in ``tokenizer``'s tokens: :attr:`max_new_tokens` for the task's own tokenizer; for
        another, ``ceil(max_new_tokens * tokens per word)``, the tokens per word of ``tokenizer`` measured on
        ``n_texts`` of the generator's responses (seed 0; the train prompts for a task without a generator), so that a
        subword policy gets room for the same text as the task's word-level one."""
        try:
            own = self.load_tokenizer().get_vocab()
        except MissingFileError:  # a task whose policy is not built: its tokenizer is unknown, its budget stays
            return self.max_new_tokens
        if tokenizer.get_vocab() == own:
            return self.max_new_tokens
        rng = random.Random(0)
        texts = ([self.sample_text(rng)[1] for _ in range(n_texts)] if self.sample_text is not None
                 else self.train_prompts[:n_texts])
        # a response is encoded with the space that separates it from the prompt, as the env's policy writes it
        tokens = sum(len(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) for text in texts)
        words = sum(len(text.split()) for text in texts)
        return max(self.max_new_tokens, math.ceil(self.max_new_tokens * tokens / words))

    def load_tokenizer(self):
        self._check_built(self.policy_dir)
        return load_pretrained(AutoTokenizer.from_pretrained, self.policy_dir, f"task {self.name!r}'s tokenizer")

    def load_policy(self, device: str = "cpu"):
        """The SFT policy (the reference of stage 3), in eval mode."""
        self._check_built(self.policy_dir)
        policy = load_model(self.policy_dir, "policy", f"task {self.name!r}'s policy")
        return policy.to(device).eval()

    def load_reward_model(self, device: str = "cpu") -> RewardModel:
        self._check_built(self.reward_dir)
        return RewardModel.from_pretrained(self.reward_dir, device=device)

    @property
    def reward_model_config(self) -> dict:
        """The training settings of the task's reward model, from its metadata (``eval_fraction`` and ``seed`` split
        the comparisons)."""
        return read_json(self.reward_dir / METADATA_FILE, ("config",), "the reward model's metadata")["config"]

    def reward_model_split(self) -> tuple[list[dict], list[dict]]:
        """``(train, held_out)``: ``preferences.jsonl`` split by :func:`~rlhf_gym.reward_training.split_records` with
        the held-out fraction and seed of :attr:`reward_model_config`, as the reward model was trained (ties, skips and
        exact duplicates left out)."""
        path = self.artifacts_dir / "preferences.jsonl"
        if not path.exists():
            raise MissingFileError(f"task {self.name!r}: no comparisons at {path}; rebuild it with `rlhf-gym build-task`")
        config = self.reward_model_config
        records = load_preferences(path, allow_empty_responses=True)  # a build's cut pairs may hold the empty response
        train, held_out, _ = split_records(records, config["eval_fraction"], config["seed"])
        return train, held_out

    def reward_model_comparisons(self) -> list[dict]:
        """The comparisons the task's reward model was trained on (DPO's default data): the train side of
        :meth:`reward_model_split`."""
        return self.reward_model_split()[0]

    def gold_scores(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, np.ndarray]:
        """``{"gold_reward": ..., "well_formed": ...}``, one value per response (the task needs both functions)."""
        pairs = list(zip(prompts, responses))
        return {"gold_reward": np.array([self.gold_reward(p, r) for p, r in pairs]),
                "well_formed": np.array([self.is_well_formed(p, r) for p, r in pairs], dtype=float)}

    def normalised_score(self, prompts: Sequence[str], gold_reward: float) -> float | None:
        """``(G - G_sft) / (mean ceiling - G_sft)`` for a mean gold reward ``G`` over ``prompts``: 0 is the SFT
        policy, 1 the gold ceiling (the best any response can get on each prompt).

        ``G_sft`` is the SFT policy's mean gold reward on held-out prompts measured by the build (``metadata.json``);
        None for a task without a ceiling or that measurement.
        """
        sft = self.metadata.get("sft", {}).get("gold_reward_mean")
        if self.gold_ceiling is None or sft is None:
            return None
        ceiling = float(np.mean([self.gold_ceiling(p) for p in prompts]))
        return (float(gold_reward) - sft) / (ceiling - sft)

    def _check_built(self, directory: Path) -> None:
        if not (directory / "config.json").exists():
            raise MissingFileError(f"task {self.name!r}: {directory} has no model; rebuild it with `rlhf-gym build-task`")
