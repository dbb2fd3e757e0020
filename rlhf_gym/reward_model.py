"""The reward model ``r_phi(x, y)``: a Hugging Face sequence classifier with one output, and its loss.

Bradley–Terry (1952): ``P(y_w > y_l | x) = sigmoid(r(x, y_w) - r(x, y_l))``, fitted by minimising
``L = -E[log sigmoid(r(x, y_w) - r(x, y_l) - m)]`` (``m`` an optional margin, Touvron et al. 2023). Its
gradient with respect to ``r(x, y_w)`` is ``-(1 - sigmoid(delta))``: large when the model disagrees with
the label, vanishing once it agrees.

The reward model scores *text*: ``prompt + " " + response`` is tokenised with its own tokenizer, so it
may differ from the policy's. The score is read at the last real token (``pooling="last"``, the classifier's own
reading, as InstructGPT's reward model), or summed over the response's tokens (``pooling="sum"``): ``r(x, y) =
sum_{t in y} w . h_t``, the score head applied to the hidden state of each position after the prompt's. A sum suits a
reward that is itself a sum over parts of the response (an item each): a last-token model must gather every part into
one position's state. The prompt's positions are left out because, in a causal model, their states do not depend on
the response: they would add a per-prompt constant that no comparison can see (it cancels in ``r(x, y_w) - r(x,
y_l)``) but that an RL reward and its standardisation would carry as noise. The empty response scores 0. A sum grows
with the response's length; ``pooling="mean"`` averages the same per-token scores instead, a reward whose range does
not (docs/task_suite.md, lists v1: PPO collapsed on a summed one). The choice is saved in the model's config
(``reward_pooling``), so that a loaded model scores as it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from .errors import ConfigError
from .files import write_errors_name
from .reward_settings import REWARD_POOLINGS
from .utils import context_length, load_model, load_pretrained


class TokenizedText(NamedTuple):
    """One pair's text as the reward model reads it (:meth:`RewardModel.tokenize`)."""

    ids: np.ndarray
    """The ids of ``prompt + " " + response``, untruncated, without special tokens (int32: a trainer holds every
    comparison's, about 4 bytes a token against a Python list's 36)."""
    n_response: int
    """How many of the last ids are the response's."""


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """``-mean(log sigmoid(r_chosen - r_rejected - margin))``."""
    delta = r_chosen - r_rejected
    if margin is not None:
        delta = delta - margin
    return -F.logsigmoid(delta).mean()


def join_text(prompt: str, response: str) -> str:
    """The text a reward model scores, and the text a policy writes: the prompt, one space, the response without its
    surrounding whitespace (the env strips a decoded response). No space after a prompt that ends in whitespace (a chat
    template's generation prompt may end with a newline), so that a response given with or without its leading space,
    as data files differ, reads the same."""
    return f"{prompt}{joining_space(prompt)}{response.strip()}".strip()


def joining_space(prompt: str | None) -> str:
    """What :func:`join_text` puts between ``prompt`` and a response: one space, none after a prompt that ends in
    whitespace; a response with no prompt (None) is taken to follow one that does not."""
    return "" if prompt is not None and (not prompt or prompt[-1].isspace()) else " "


def shared_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """The number of leading ids ``a`` and ``b`` have in common."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class RewardModel:
    """A scalar reward model: ``AutoModelForSequenceClassification(num_labels=1)`` plus its tokenizer.

    :param model: the sequence classifier (``config.num_labels == 1``).
    :param tokenizer: its tokenizer; one without a pad token gets its EOS token as pad.
    :param max_length: texts are truncated on the left to this many tokens (the end of a response is kept);
        default and maximum: the model's context (``n_positions``), no truncation for a model without one.
    :param pooling: ``"last"``, ``"sum"`` or ``"mean"`` (:data:`REWARD_POOLINGS`), stored in
        ``model.config.reward_pooling``; None: the model's saved choice, ``"last"`` for a model without one. ``"sum"``
        and ``"mean"`` need a classifier whose score head reads each position (``model.score``, as GPT-2's, Llama's
        and most decoders' classifiers).
    """

    def __init__(self, model, tokenizer, max_length: int | None = None, pooling: str | None = None):
        if model.config.num_labels != 1:
            raise ConfigError(f"a reward model needs num_labels=1, this one has {model.config.num_labels}")
        pooling = pooling or getattr(model.config, "reward_pooling", None) or "last"
        if pooling not in REWARD_POOLINGS:
            raise ConfigError(f"reward pooling must be one of {', '.join(REWARD_POOLINGS)}, got {pooling!r}")
        if pooling != "last" and not isinstance(getattr(model, "score", None), torch.nn.Linear):
            raise ConfigError(f"pooling {pooling!r} applies the score head at every position, and {type(model).__name__} "
                              "has no per-position head (model.score); use pooling 'last'")
        limit = context_length(model)
        if max_length is not None and limit is not None and max_length > limit:
            raise ConfigError(f"max_length={max_length} exceeds the reward model's context of {limit} positions")
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ConfigError(
                    f"the reward model's tokenizer ({type(tokenizer).__name__}) has neither a pad nor an EOS token; "
                    "set tokenizer.pad_token before building the RewardModel"
                )
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"
        model.config.reward_pooling = pooling
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length or limit

    @property
    def pooling(self) -> str:
        """``"last"``, ``"sum"`` or ``"mean"``: how the score is read off the text's positions."""
        return self.model.config.reward_pooling

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu",
                        max_length: int | None = None) -> RewardModel:
        """Load model and tokenizer from a directory or a hub id (``save_pretrained`` format).

        :raises MissingFileError: (a ``FileNotFoundError``) naming ``name_or_path`` if it cannot be loaded.
        :raises ConfigError: if it holds another kind of model (a policy) or lacks the score head.
        """
        model = load_model(name_or_path, "reward_model", "a reward model")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name_or_path, "a reward model's tokenizer")
        return cls(model.to(device).eval(), tokenizer, max_length=max_length)

    def save_pretrained(self, directory: str | Path) -> None:
        """Save the model and its tokenizer in HF format; a failed write (a full disk...) is an ``OSError`` naming
        ``directory``."""
        with write_errors_name(directory):
            self.model.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: Sequence[str], responses: Sequence[str]) -> list[TokenizedText]:
        """Each pair's text (:func:`join_text`) as untruncated ids, with its number of response tokens (the ids after
        the longest prefix they share with the prompt's own ids: a token merged across the joining space counts as the
        response's). A trainer tokenizes its comparisons once and pads batches of them with :meth:`collate`."""
        texts = [join_text(p, r) for p, r in zip(prompts, responses)]
        text_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        if self.pooling == "last":  # the score is read at the last token: the response's length is not needed
            return [TokenizedText(np.asarray(ids, dtype=np.int32), len(ids)) for ids in text_ids]
        prompt_ids = self.tokenizer([join_text(p, "") for p in prompts], add_special_tokens=False)["input_ids"]
        return [TokenizedText(np.asarray(t, dtype=np.int32), len(t) - shared_prefix_length(t, p))
                for t, p in zip(text_ids, prompt_ids)]

    def collate(self, texts: Sequence[TokenizedText]) -> dict[str, torch.Tensor]:
        """A right-padded batch on the model's device: ``input_ids``, ``attention_mask`` and ``response_mask`` (1.0 at
        each text's response positions; 0.0 at the prompt's and the padding). A text longer than ``max_length`` loses
        its start (left truncation keeps the response's end), as the tokenizer's own truncation would."""
        ids = [t.ids[-self.max_length:] if self.max_length else t.ids for t in texts]
        width = max((len(i) for i in ids), default=0)
        input_ids = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, row_ids in enumerate(ids):
            input_ids[row, :len(row_ids)] = torch.from_numpy(row_ids)
            attention_mask[row, :len(row_ids)] = 1
        ends = attention_mask.sum(1)
        starts = (ends - torch.tensor([t.n_response for t in texts], dtype=torch.long)).clamp(min=0)
        positions = torch.arange(width)
        response_mask = ((positions >= starts[:, None]) & (positions < ends[:, None])).float()
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device),
                "response_mask": response_mask.to(self.device)}

    def forward(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Differentiable scores, shape [batch]."""
        return self.forward_tokenized(self.tokenize(prompts, responses))

    def forward_tokenized(self, texts: Sequence[TokenizedText]) -> torch.Tensor:
        """:meth:`forward` of texts already tokenized by :meth:`tokenize`."""
        batch = self.collate(texts)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.pooling == "last":
            return self.model(**inputs).logits.squeeze(-1).float()
        hidden = self.model.base_model(**inputs).last_hidden_state
        per_token = self.model.score(hidden).squeeze(-1).float()
        mask = batch["response_mask"]
        summed = (per_token * mask).sum(1)
        return summed if self.pooling == "sum" else summed / mask.sum(1).clamp(min=1)  # mean; the empty response: 0

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """``r_phi(x, y)`` for each pair, as a float32 array; batched, on the model's device."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        was_training = self.model.training
        self.model.eval()
        scores = [self.forward(prompts[i:i + batch_size], responses[i:i + batch_size]).cpu()
                  for i in range(0, len(prompts), batch_size)]
        self.model.train(was_training)
        return torch.cat(scores).numpy().astype(np.float32) if scores else np.zeros(0, np.float32)

    __call__ = score
