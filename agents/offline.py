"""Offline preference optimisation: a policy trained on stored comparisons with one supervised loss, no reward model
and no sampling (the DPO family: :mod:`rlhf_gym.agents.dpo`).

:class:`OfflinePreferenceOptimizer` holds what the family shares: the comparisons, validated and tokenised once; the
reference's log-probs, computed once before training and kept on the device; the learn loop (seeded epochs of
minibatches, SB3 callbacks and logger, data-parallel shares); ``save``/``load`` to one zip that resumes exactly; and the
export to a plain Hugging Face directory. A subclass supplies :meth:`OfflinePreferenceOptimizer.pair_losses` (the loss of
each comparison from the policy's two sequence log-probs and :meth:`OfflinePreferenceOptimizer.pair_inputs`: the
reference's, or the responses' lengths; a loss that is not one per comparison overrides
:meth:`OfflinePreferenceOptimizer.batch_losses` instead) and its own hyperparameters. An item of the data is a prompt
with two responses: a comparison's chosen and rejected one, or (KTO, :mod:`rlhf_gym.agents.kto`) an example's completion
and a mismatched one.

A response's log-prob covers the tokens the env's policy would have sampled: the response re-tokenised as the env
tokenises text (``tokenizer(text, add_special_tokens=False)``, prompts as :func:`rlhf_gym.prompts.tokenize_prompts`)
and the EOS that ended it (a response of ``max_new_tokens`` tokens was cut by the budget, without EOS).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.utils import configure_logger
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from rlhf_gym.checks import check_count, check_number, check_seed
from rlhf_gym.divergence import check_finite_loss, check_finite_parameters
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.files import write_errors_name
from rlhf_gym.generation import left_pad, query_response_inputs, response_slice
from rlhf_gym.preferences import (NON_PREFERENCE_LABELS, REQUIRED_COLUMNS, check_identical_responses, read_records,
                                  validate_record, with_rendering)
from rlhf_gym.prompts import tokenize_prompts
from rlhf_gym.reward_model import join_text, joining_space
from rlhf_gym.reward_training import DUPLICATES_LEFT_OUT, data_hash, drop_duplicates
from rlhf_gym.tokenizers import save_tokenizer_for_export
from rlhf_gym.utils import context_length, load_pretrained, resolve_device

from .callbacks import ComparisonCheckpoint
from .parallel import DataParallel, PolicyCall
from .policy import OPTIMIZER_KWARGS, describe_model, disable_dropout, load_causal_lm
from .registry import CHECKPOINT_ALGORITHM_KEY, AlgorithmTraits

if TYPE_CHECKING:  # the builder imports this module: no cycle at run time
    from .experiment import TrainConfig
    from .vec_env import RLHFVecEnv

POLICY_DIR, STATE_FILE = "policy", "dpo_state.pt"
"""Members of a saved zip: the policy and tokenizer in HF format, and the training state (its name kept from
rlhf-gym 0.8, whose DPO checkpoints load as they are)."""


def tokenize_response(tokenizer, response: str, max_new_tokens: int | None = None, prompt: str | None = None,
                      prompt_ids: list[int] | None = None) -> list[int]:
    """The token ids the env's policy samples to write ``response`` after ``prompt``: the text's ids and the EOS that
    ended it.

    The env decodes a response with ``skip_special_tokens=True`` and strips it (``rlhf_gym.envs.episodes.EpisodeBatch.texts``),
    so a response is the stripped text; ``""`` is the EOS alone. Its ids are those that follow ``prompt_ids`` (the
    prompt's own ids, as the env encodes it) in the ids of the whole text :func:`rlhf_gym.reward_model.join_text`
    (``prompt response``): what a subword tokenizer gives a word after a space (GPT-2's ``Ġword``, SentencePiece's
    ``▁word``). Where that text's ids do not start with the prompt's (a merge across the boundary), or with no prompt
    given, the response is encoded on its own after the joining space. With a word-level tokenizer every way gives the
    same ids. A response of ``max_new_tokens`` tokens or more hit the budget and ended without EOS (None: every
    response ends with EOS).
    """
    text = response.strip()
    ids = None if text else []
    if ids is None and prompt is not None and prompt_ids is not None:
        joined = tokenizer(join_text(prompt, text), add_special_tokens=False)["input_ids"]
        if joined[:len(prompt_ids)] == prompt_ids and len(joined) > len(prompt_ids):
            ids = joined[len(prompt_ids):]
    if ids is None:
        ids = tokenizer(joining_space(prompt) + text, add_special_tokens=False)["input_ids"]
    return ids if max_new_tokens is not None and len(ids) >= max_new_tokens else [*ids, tokenizer.eos_token_id]


def sequence_logps(model, queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor,
                   response_mask: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x)`` summed over each response's tokens [B]: one forward per sequence ``[query; response]``.

    ``queries`` are left-padded [B, P], ``responses`` right-padded [B, T] (as ``TransformerPolicy.evaluate_sequences``).
    """
    input_ids, attention, position_ids = query_response_inputs(queries, query_mask, responses, response_mask)
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids).logits
    logp_all = F.log_softmax(response_slice(logits, queries.shape[1]).float(), dim=-1)
    logp = logp_all.gather(-1, responses[:, :, None]).squeeze(-1)
    return (logp * response_mask).sum(-1)


class _FunctionCallback(BaseCallback):
    """A plain ``callback(agent) -> bool`` as an SB3 callback: returning False stops training."""

    def __init__(self, function: Callable[[Any], bool | None]):
        super().__init__()
        self.function = function

    def _on_step(self) -> bool:
        result = self.function(self.model)
        return result is None or bool(result)


class OfflinePreferenceOptimizer:
    """Base of the DPO family: a causal LM trained on comparisons with a loss of the four sequence log-probs.

    SB3's shape without an env: ``learn`` with callbacks, SB3's logger (stdout with ``verbose=1``, TensorBoard with
    ``tensorboard_log``), ``save``/``load``, and ``export_pretrained`` for ``rlhf-gym evaluate --agent <dir>``. Not used
    directly: a subclass (:class:`rlhf_gym.agents.DPO`, ...) gives the loss and its hyperparameters.

    :param model: the causal LM to start from (HF id, directory or model object); the policy is a trainable copy.
    :param ref_model: the frozen reference (id, directory or object); None: ``model`` itself. It is only read once,
        to fill the cache of reference log-probs, and is not kept (nor read at all where ``uses_reference`` is False).
    :param tokenizer: the policy's tokenizer (object, id or directory); None: the one saved beside ``model``.
    :param comparisons: preference records ``{"prompt", "chosen", "rejected", ...}`` (as
        :func:`rlhf_gym.preferences.load_preferences` returns), or a JSONL path / ``datasets`` dataset (or a directory
        saved by ``save_to_disk``) it loads. Records labelled ``tie`` or ``skip`` and exact duplicates are left out; a
        ``margin`` is not used; an empty response is the EOS token alone. Conversational records (messages) are rendered
        with the tokenizer's chat template (:mod:`rlhf_gym.conversation`).
    :param learning_rate: AdamW learning rate (constant; the AdamW settings of every rlhf-gym trainer,
        :data:`rlhf_gym.agents.policy.OPTIMIZER_KWARGS`, with torch's weight decay 0.01).
    :param batch_size: comparisons per optimizer step (one forward over their 2 * batch_size sequences).
    :param max_grad_norm: gradient-norm clip.
    :param max_new_tokens: the response budget the comparisons were sampled with (the env's), so that a response
        cut there gets no EOS (see :func:`tokenize_response`); None: every response ends with EOS.
    :param seed: seed of the shuffle (a new permutation each epoch).
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    :param tensorboard_log: TensorBoard log directory (None: none).
    :param verbose: 1 prints the logged values.
    :param parallel: the processes of a data-parallel run (:meth:`rlhf_gym.agents.parallel.DataParallel.from_launch`):
        each takes its share of every minibatch of ``batch_size`` comparisons, and the main process writes. None: one
        process.
    :param loss_hyperparameters: the subclass's own (checked by its :meth:`_configure_loss`).
    """

    traits: ClassVar[AlgorithmTraits]
    Config: ClassVar[type]
    uses_reference: ClassVar[bool] = True
    """The loss reads the reference's log-probs, cached before training and saved with the agent; False (SimPO): the
    reference is never run."""
    item: ClassVar[str] = "comparison"
    """What one record of the data is called in messages."""
    dataset_columns: ClassVar[tuple[str, ...]] = REQUIRED_COLUMNS
    """The columns a ``datasets`` dataset of the data must have."""

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        ref_model: str | Path | torch.nn.Module | None,
        tokenizer: Any,
        comparisons: list[dict] | str | Path | Any,
        learning_rate: float,
        batch_size: int,
        max_grad_norm: float = 1.0,
        max_new_tokens: int | None = None,
        seed: int = 0,
        device: torch.device | str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        parallel: DataParallel | None = None,
        **loss_hyperparameters: Any,
    ):
        self._configure(learning_rate=learning_rate, batch_size=batch_size, max_grad_norm=max_grad_norm,
                        max_new_tokens=max_new_tokens, seed=seed, device=device, tensorboard_log=tensorboard_log,
                        verbose=verbose, parallel=parallel, **loss_hyperparameters)
        self._set_model(model, tokenizer)
        self._set_data(comparisons)
        self.ref_logps = self.reference_logps(self.policy if ref_model is None else ref_model) if self.uses_reference \
            else None

    # ------------------------------------------------------------------------------------------ to implement
    def _configure_loss(self, **hyperparameters: Any) -> None:
        """Check and store the loss's hyperparameters (a :class:`ConfigError` naming a bad one)."""
        raise NotImplementedError

    def loss_hyperparameters(self) -> dict[str, Any]:
        """The loss's hyperparameters, as :meth:`_configure_loss` takes them (saved with the agent)."""
        raise NotImplementedError

    def pair_losses(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                    chosen_inputs: torch.Tensor, rejected_inputs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-comparison losses and implicit rewards of the chosen and rejected responses (detached), each [B], from
        the policy's summed log-probs and :meth:`pair_inputs` (by default the reference's summed log-probs)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ to override
    def pair_inputs(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`pair_losses` reads of the comparisons ``indices`` besides the policy's log-probs, chosen then
        rejected [B] each: the reference's cached log-probs."""
        ref = self.ref_logps[indices]
        return ref[:, 0], ref[:, 1]

    def batch_losses(self, logps: torch.Tensor, indices: list[int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-item losses [B] and the step's statistics, from the policy's log-probs of the items ``indices`` [2, B]
        (chosen, rejected): :meth:`pair_losses`, with TRL's ``DPOTrainer`` statistics.

        A statistic is a number, or a list of per-item values (averaged with those of the other steps and processes).
        """
        losses, chosen_rewards, rejected_rewards = self.pair_losses(logps[0], logps[1], *self.pair_inputs(indices))
        return losses, {"rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
                        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
                        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
                        "logps/chosen": logps[0].mean().item(), "logps/rejected": logps[1].mean().item()}

    @staticmethod
    def check_record(record: dict, where: str) -> dict:
        """Check one record (:func:`rlhf_gym.preferences.validate_record`: an error names ``where`` and the column); an
        empty response is valid (the EOS alone: a policy that stopped at once)."""
        return validate_record(record, where, allow_empty_responses=True)

    @classmethod
    def training_records(cls, records: list[dict], where: str) -> list[dict]:
        """The records trained on, from the checked ones (``where`` names the data).

        Ties and skips are left out, exact duplicates too, as train-rm does
        (:func:`rlhf_gym.reward_training.drop_duplicates`); comparisons whose chosen equals rejected are counted in a
        warning, and refused when all are (:func:`rlhf_gym.preferences.check_identical_responses`).
        """
        records = [r for r in records if r.get("label") not in NON_PREFERENCE_LABELS]
        # a repeated comparison would weigh twice in every epoch (a file appended to twice, say)
        records, n_duplicates = drop_duplicates(records)
        if n_duplicates:
            print(f"[rlhf_gym] left out {n_duplicates} {DUPLICATES_LEFT_OUT}")
        check_identical_responses(records, where)
        return records

    def item_texts(self, records: list[dict]) -> list[tuple[str, str, str]]:
        """Each item's prompt and two responses: a comparison's chosen and rejected."""
        return [(r["prompt"], r["chosen"], r["rejected"]) for r in records]

    def data_sha256(self) -> str:
        """The hash of the records trained on, saved with the agent so that a resume checks its data."""
        return data_hash(self.comparisons)

    # ------------------------------------------------------------------------------------------ setup
    def _configure(self, *, learning_rate: float, batch_size: int, max_grad_norm: float, max_new_tokens: int | None,
                   seed: int, device: torch.device | str, tensorboard_log: str | None, verbose: int,
                   parallel: DataParallel | None = None, **loss_hyperparameters: Any) -> None:
        """Check and store the hyperparameters (each bad value a :class:`ConfigError` naming its option)."""
        self._configure_loss(**loss_hyperparameters)
        check_number("learning_rate", learning_rate, 0.0, strict=True)
        check_count("batch_size", batch_size)
        check_number("max_grad_norm", max_grad_norm, 0.0, strict=True)
        if max_new_tokens is not None:
            check_count("max_new_tokens", max_new_tokens)
        check_seed(seed, "seed")
        self.learning_rate, self.batch_size, self.max_grad_norm = float(learning_rate), batch_size, float(max_grad_norm)
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.device = resolve_device(device)
        self.tensorboard_log, self.verbose = tensorboard_log, verbose
        self.parallel = parallel or DataParallel()
        self.num_comparisons = 0  # comparisons trained on so far, over all epochs (it also fixes the shuffle position)
        self.num_steps = 0  # optimizer steps so far
        self.logger = None  # SB3's logger, configured by learn()
        self._epoch_order: tuple[int, torch.Tensor] | None = None  # (epoch, its permutation of the comparisons)

    def _set_model(self, model: str | Path | torch.nn.Module, tokenizer: Any) -> None:
        """The trainable policy (dropout off, so the cached reference pass and the update see the same function), its
        tokenizer and an AdamW optimizer (fused where torch has it)."""
        self.policy = load_causal_lm(model).to(self.device)
        disable_dropout(self.policy)
        self.policy.train()
        if tokenizer is None:
            if isinstance(model, torch.nn.Module):
                raise ConfigError("a model given as an object needs its tokenizer (tokenizer=...)")
            tokenizer = model
        if isinstance(tokenizer, (str, Path)):
            tokenizer = load_pretrained(AutoTokenizer.from_pretrained, tokenizer, "the policy's tokenizer")
        self.tokenizer = tokenizer
        vocab = self.policy.get_output_embeddings().weight.shape[0]
        if len(tokenizer) > vocab:
            raise ConfigError(f"tokenizer ({len(tokenizer)} tokens) does not fit the policy {describe_model(model)} "
                              f"(vocabulary {vocab})")
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer needs an EOS and a pad token (the EOS ends every response)")
        fused = self.device.type in ("cuda", "cpu")
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=self.learning_rate,
                                           **{**OPTIMIZER_KWARGS, "fused": fused})
        # the update's forward goes through one module, which a data-parallel engine wraps (rlhf_gym.agents.parallel)
        self._policy_call, self.optimizer = self.parallel.prepare(PolicyCall(self.policy), self.optimizer)

    def _set_data(self, data: list[dict] | str | Path | Any) -> None:
        """Read, check and tokenise the data once: item ``i`` is ``prompt_ids[i]`` with the two responses
        ``response_ids[i]`` (a comparison's chosen and rejected), of ``response_lengths[i]`` tokens (EOS included).

        Which records are trained on is :meth:`training_records`'s choice, and what an item holds :meth:`item_texts`'s.
        """
        records = self.training_records(self._read(data), str(data) if isinstance(data, (str, Path)) else "comparisons")
        if not records:
            raise DataError(f"no {self.item}s to train on (none given, or all labelled tie/skip)")
        texts = self.item_texts(records)
        prompt_ids = tokenize_prompts([prompt for prompt, _, _ in texts], self.tokenizer)
        response_ids = [tuple(tokenize_response(self.tokenizer, response, self.max_new_tokens, prompt, ids)
                              for response in (first, second)) for (prompt, first, second), ids in zip(texts, prompt_ids)]
        limit = context_length(self.policy)
        for i, (prompt, pair) in enumerate(zip(prompt_ids, response_ids)):
            if not prompt:
                raise DataError(f"{self.item} {i}: the prompt {texts[i][0]!r} is empty after tokenisation")
            longest = max(len(ids) for ids in pair)
            if limit is not None and len(prompt) + longest > limit:
                raise ConfigError(f"{self.item} {i}: prompt ({len(prompt)} tokens) and response ({longest} tokens with "
                                  f"EOS) need {len(prompt) + longest} of the policy's {limit} positions")
        self.comparisons, self.prompt_ids, self.response_ids = records, prompt_ids, response_ids
        self.response_lengths = torch.tensor([[len(ids) for ids in pair] for pair in response_ids], device=self.device)

    def _read(self, data: list[dict] | str | Path | Any) -> list[dict]:
        """The records of ``data`` (a list of dicts, a JSONL path, a ``datasets`` dataset or the directory of a saved
        one), each checked by :meth:`check_record` (an error names the record: ``comparison 3``, ``file:line``), its
        conversations rendered with the policy's chat template (:func:`rlhf_gym.preferences.with_rendering`)."""
        check = with_rendering(self.check_record, self.tokenizer)
        if isinstance(data, (str, Path)) or hasattr(data, "column_names"):
            return read_records(data, check, self.dataset_columns)
        if not isinstance(data, (list, tuple)):
            raise TypeError(f"comparisons: expected a list of records, a JSONL path or a dataset, got "
                            f"{type(data).__name__}")
        records = []
        for i, record in enumerate(data):
            if not isinstance(record, dict):
                raise DataError(f"{self.item} {i}: expected a dict (a record), got {type(record).__name__}")
            records.append(check(record, f"{self.item} {i}"))
        return records

    def _batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """First then second responses of the items ``indices`` (chosen then rejected), each after its item's prompt:
        left-padded queries [2B, P], right-padded responses [2B, T]."""
        pad = self.tokenizer.pad_token_id
        queries, query_mask = left_pad([self.prompt_ids[i] for i in indices] * 2, pad, self.device)
        responses = [torch.tensor(self.response_ids[i][k]) for k in (0, 1) for i in indices]
        response_ids = pad_sequence(responses, batch_first=True, padding_value=pad).to(self.device)
        response_mask = pad_sequence([torch.ones_like(r) for r in responses], batch_first=True).to(self.device)
        return queries, query_mask, response_ids, response_mask

    @torch.no_grad()
    def reference_logps(self, ref_model: str | Path | torch.nn.Module, batch_size: int = 256) -> torch.Tensor:
        """``log pi_ref`` of every item's two responses [N, 2] (chosen, rejected), on ``self.device``: one pass over the
        data in batches of ``batch_size`` items (a model object stays on its own device and is not modified)."""
        ref = load_causal_lm(ref_model).to(self.device) if isinstance(ref_model, (str, Path)) else ref_model
        ref_device = next(ref.parameters()).device
        if ref.get_output_embeddings().weight.shape[0] != self.policy.get_output_embeddings().weight.shape[0]:
            raise ConfigError(f"the reference {describe_model(ref_model)} and the policy have different vocabularies")
        was_training = ref.training
        ref.eval()
        out = []
        for start in range(0, len(self.comparisons), batch_size):
            indices = list(range(start, min(start + batch_size, len(self.comparisons))))
            logps = sequence_logps(ref, *(t.to(ref_device) for t in self._batch(indices))).to(self.device)
            out.append(logps.view(2, -1).T)  # rows 0..B-1 are the chosen responses, B..2B-1 the rejected ones
        ref.train(was_training)
        return torch.cat(out)

    @property
    def num_timesteps(self) -> int:
        """SB3's step counter, for SB3 callbacks (``CheckpointCallback``, ``EveryNTimesteps``): the comparisons used."""
        return self.num_comparisons

    # -------------------------------------------------------------------------------------- learning
    def _next_indices(self) -> list[int]:
        """The next minibatch: the following ``batch_size`` comparisons of this epoch's seeded permutation.

        A batch never crosses an epoch's end, so the position (epoch, offset) follows from ``num_comparisons`` alone,
        and a resumed run takes the same batches as an uninterrupted one.
        """
        n = len(self.comparisons)
        epoch, offset = divmod(self.num_comparisons, n)
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed)
            for _ in range(epoch + 1):  # epoch e uses the (e + 1)-th permutation drawn from the seed
                order = torch.randperm(n, generator=generator)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1][offset:offset + self.batch_size].tolist()

    def _init_callback(self, callback) -> BaseCallback:
        """SB3 callbacks (one, or a list), plain ``callback(agent) -> bool`` functions, or None, as one SB3 callback."""
        callbacks = callback if isinstance(callback, list) else [] if callback is None else [callback]
        callback = CallbackList([c if isinstance(c, BaseCallback) else _FunctionCallback(c) for c in callbacks])
        callback.init_callback(self)
        return callback

    def train_step(self, indices: list[int]) -> dict[str, Any]:
        """One optimizer step on the items ``indices`` (both responses in one forward); returns its stats.

        In a data-parallel run this process takes every ``num_processes``-th of them, and its loss is its share of the
        mean over all of ``indices`` (the sum of its losses over ``len(indices) / num_processes``), so the engine's
        average of the gradients is the gradient of that mean.
        """
        everyone = len(indices)
        share = everyone / self.parallel.num_processes
        indices = indices[self.parallel.process_index::self.parallel.num_processes]
        logps = sequence_logps(partial(self._policy_call, "__call__"), *self._batch(indices)).view(2, -1)  # [chosen; rejected]
        losses, stats = self.batch_losses(logps, indices)
        loss = losses.sum() / share
        check_finite_loss(loss, f"{type(self).__name__} step {self.num_steps + 1} ({self.num_comparisons} comparisons done)",
                          "try a lower learning_rate")
        self.optimizer.zero_grad(set_to_none=True)
        if self.parallel.distributed:
            self.parallel.backward(loss)
            grad_norm = self.parallel.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        else:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        check_finite_loss(grad_norm, f"{type(self).__name__} step {self.num_steps + 1}", "try a lower learning_rate",
                          what="the gradient norm")
        self.optimizer.step()
        self.num_comparisons += everyone
        self.num_steps += 1
        return {"train/loss": loss.item(), "train/grad_norm": grad_norm.item(), **stats}

    def learn(self, total_comparisons: int, callback=None, progress_bar: bool = False, log_interval: int = 10,
              tb_log_name: str = "DPO") -> OfflinePreferenceOptimizer:
        """Train until ``num_comparisons >= total_comparisons``, counted from the start of the run (also after
        :meth:`load`): ``total_comparisons = k * len(comparisons)`` is ``k`` epochs.

        :param callback: an SB3 ``BaseCallback`` (or a list): its ``on_step`` runs after every optimizer step and its
            ``num_timesteps`` counts comparisons, so SB3's ``CheckpointCallback`` and ``EveryNTimesteps`` work as
            they are; or a plain function ``callback(agent)`` called after every step, returning False to stop.
        :param log_interval: optimizer steps between two dumps of the logger (the means over those steps).
        :param tb_log_name: name of the TensorBoard run (a resumed run continues the latest one of that name).
        """
        check_count("total_comparisons", total_comparisons)
        check_count("log_interval", log_interval)
        if not hasattr(self, "comparisons"):
            raise ConfigError(f"this {self.traits.name} agent was loaded without comparisons: pass comparisons= to load() "
                              "to train it")
        smallest = len(self.comparisons) % self.batch_size or self.batch_size  # an epoch's last minibatch
        if smallest < self.parallel.num_processes:
            raise ConfigError(f"batch_size {self.batch_size} over {len(self.comparisons)} comparisons leaves a minibatch of "
                              f"{smallest}: fewer comparisons than the {self.parallel.num_processes} processes")
        self.logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name,
                                       reset_num_timesteps=self.num_comparisons == 0)
        callback = self._init_callback(callback)
        callback.on_training_start(locals(), globals())
        started, start_count = time.time(), self.num_comparisons
        window: list[dict[str, Any]] = []
        with tqdm(total=total_comparisons, initial=min(self.num_comparisons, total_comparisons), unit="comparisons",
                  disable=not progress_bar) as bar:
            while self.num_comparisons < total_comparisons:
                window.append(self.train_step(self._next_indices()))
                bar.update(min(self.num_comparisons, total_comparisons) - bar.n)
                if self.num_steps % log_interval == 0:
                    self._dump(window, started, start_count)
                    window = []
                if not callback.on_step():
                    break
        if window:
            self._dump(window, started, start_count)
        callback.on_training_end()
        return self

    def _dump(self, window: list[dict[str, Any]], started: float, start_count: int) -> None:
        """Record the means of the steps in ``window`` and write them (x axis: comparisons used)."""
        for key in window[0]:  # means over the window's steps (a list: its values, each weighing one) and all processes
            self.logger.record(key, self.parallel.mean(np.concatenate([np.atleast_1d(np.asarray(stats[key], np.float64))
                                                                       for stats in window])))
        self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
        self.logger.record("train/epoch", self.num_comparisons / len(self.comparisons))
        self.logger.record("time/comparisons", self.num_comparisons)
        self.logger.record("time/optimizer_steps", self.num_steps)
        self.logger.record("time/comparisons_per_second", (self.num_comparisons - start_count) / max(time.time() - started,
                                                                                                   1e-9))
        self.logger.dump(step=self.num_comparisons)

    # ---------------------------------------------------------------------------------- save / export
    def _state(self) -> dict[str, Any]:
        return {"hyperparameters": {**self.loss_hyperparameters(), "learning_rate": self.learning_rate,
                                    "batch_size": self.batch_size,
                                    "max_grad_norm": self.max_grad_norm, "max_new_tokens": self.max_new_tokens,
                                    "seed": self.seed},
                "num_comparisons": self.num_comparisons, "num_steps": self.num_steps,
                "optimizer": self.optimizer.state_dict(), "data_sha256": self.data_sha256(),
                **({"ref_logps": self.ref_logps.cpu()} if self.uses_reference else {})}

    def save(self, path: str | Path) -> None:
        """Write a zip (the policy and tokenizer in HF format, the optimizer, the counters, which fix the shuffle
        position, and the cached reference log-probs, if any) to ``path``, replacing it only once complete.

        :raises TrainingDivergedError: when a weight is NaN/inf (nothing is written).
        """
        path = Path(path)
        check_finite_parameters(self.policy, f"the {self.traits.name} policy to {path}")
        if not self.parallel.is_main_process:  # every process holds the same weights; the main process writes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with write_errors_name(path), tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            staging = Path(tmp)
            self.policy.save_pretrained(staging / POLICY_DIR)
            self.tokenizer.save_pretrained(staging / POLICY_DIR)
            state = io.BytesIO()  # serialised in memory: torch.save reports a full disk as "unexpected pos", no OSError
            torch.save(self._state(), state)
            (staging / STATE_FILE).write_bytes(state.getvalue())
            (staging / CHECKPOINT_ALGORITHM_KEY).write_text(self.traits.name)  # agents.registry reads it
            archive = staging / "checkpoint.zip"
            with zipfile.ZipFile(archive, "w") as zf:
                for file in sorted(staging.rglob("*")):
                    if file.is_file() and file != archive:
                        zf.write(file, file.relative_to(staging).as_posix())
            with archive.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(archive, path)  # same directory, so the rename is atomic: the old file or the new, never half

    @classmethod
    def load(cls, path: str | Path, comparisons: list[dict] | str | Path | Any | None = None,
             device: torch.device | str = "auto", tensorboard_log: str | None = None, verbose: int = 0,
             parallel: DataParallel | None = None) -> OfflinePreferenceOptimizer:
        """An agent saved by :meth:`save`, ready to continue ``learn`` on the same ``comparisons`` to the same total.

        :param comparisons: the comparisons it was trained on (checked by hash); None: no training, only the policy
            (e.g. to export it).
        :param parallel: the processes of a data-parallel run (see the class); None: one process.
        :raises MissingFileError: when ``path`` is no checkpoint of this family.
        :raises ConfigError: when ``comparisons`` are not the ones it was trained on.
        """
        path = Path(path)
        if not zipfile.is_zipfile(path):
            raise MissingFileError(f"no {cls.__name__} checkpoint at {path} (expected the zip written by save())")
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(path) as zf:
                if STATE_FILE not in zf.namelist():
                    raise MissingFileError(f"{path} is a zip but not a {cls.__name__} checkpoint (no {STATE_FILE})")
                zf.extractall(tmp)
            state = torch.load(Path(tmp) / STATE_FILE, map_location="cpu", weights_only=True)
            self = cls.__new__(cls)
            self._configure(**state["hyperparameters"], device=device, tensorboard_log=tensorboard_log, verbose=verbose,
                            parallel=parallel)
            self._set_model(Path(tmp) / POLICY_DIR, Path(tmp) / POLICY_DIR)
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_comparisons, self.num_steps = state["num_comparisons"], state["num_steps"]
        self.ref_logps = state["ref_logps"].to(self.device) if self.uses_reference else None
        if comparisons is not None:
            self._set_data(comparisons)
            if self.data_sha256() != state["data_sha256"]:
                raise ConfigError(f"comparisons: not the {self.item}s {path} was trained on "
                                  "(their hash differs); resume with the same data")
        return self

    def export_pretrained(self, directory: str | Path) -> None:
        """Write the policy as a plain HF model directory with its tokenizer (``rlhf-gym evaluate --agent <dir>``)."""
        check_finite_parameters(self.policy, f"the {self.traits.name} policy to {directory}")
        with write_errors_name(directory):
            self.policy.save_pretrained(directory)
            save_tokenizer_for_export(self.tokenizer, directory)  # decodes with the spaces the task's language has

    # ----------------------------------------------------------------------- the algorithm contract (agents.registry)
    @classmethod
    def env_settings(cls, config: Any) -> dict[str, Any]:
        """Nothing: the env only lends its reference, tokenizer and budget, and scores the result."""
        return {}

    @classmethod
    def loss_kwargs(cls, config: Any) -> dict[str, Any]:
        """The loss's hyperparameters from the algorithm's ``Config``."""
        raise NotImplementedError

    @classmethod
    def comparisons_of(cls, train_config: TrainConfig, env: RLHFVecEnv) -> Any:
        """``--comparisons`` (JSONL or a saved ``datasets`` directory), else those the task's reward model was trained on."""
        if train_config.comparisons is not None:
            return train_config.comparisons
        if env.batched_env.task is not None:
            return env.batched_env.task.reward_model_comparisons()
        raise ConfigError(f"{cls.traits.name} needs comparisons: pass --comparisons, or use an env id with a task")

    @classmethod
    def from_config(cls, train_config: TrainConfig, env: RLHFVecEnv, *, device: torch.device, parallel: DataParallel,
                    tensorboard_log: str | None) -> OfflinePreferenceOptimizer:
        """A new agent from the env's reference (or ``--model``), with its tokenizer and response budget."""
        config, batched = train_config.algorithm_config(), env.batched_env
        return cls(train_config.model or batched.ref_model, batched.ref_model, batched.tokenizer,
                   cls.comparisons_of(train_config, env), learning_rate=config.learning_rate,
                   batch_size=config.batch_size, max_new_tokens=batched.max_new_tokens, seed=train_config.seed,
                   device=device, tensorboard_log=tensorboard_log, parallel=parallel, **cls.loss_kwargs(config))

    @classmethod
    def resume(cls, checkpoint: str | Path, train_config: TrainConfig, env: RLHFVecEnv, *, device: torch.device,
               parallel: DataParallel, tensorboard_log: str | None) -> OfflinePreferenceOptimizer:
        """The agent of ``checkpoint``, on the same comparisons (checked by hash)."""
        return cls.load(checkpoint, comparisons=cls.comparisons_of(train_config, env), device=device,
                        tensorboard_log=tensorboard_log, parallel=parallel)

    @classmethod
    def policy_from_checkpoint(cls, path: str | Path, device: torch.device):
        """The trained causal LM of a saved agent, in eval mode (for ``rlhf-gym evaluate``)."""
        return cls.load(path, device=device).policy.eval()

    def learn_run(self, budget: int | None, run_dir: Path | None, checkpoint_every: int, progress_bar: bool,
                  resumed: bool, title: str = "") -> None:
        """Train on ``budget`` comparisons in all (None: one pass over them), counted from the run's start; with
        ``run_dir``, a checkpoint every ``checkpoint_every`` comparisons: after the first optimizer step at or past each
        multiple, ``checkpoints/agent_<comparisons>_comparisons.zip``
        (:class:`rlhf_gym.agents.callbacks.ComparisonCheckpoint`)."""
        callback = ComparisonCheckpoint(run_dir / "checkpoints", checkpoint_every) if run_dir is not None else None
        self.learn(budget or len(self.comparisons), callback=callback, progress_bar=progress_bar,
                   tb_log_name="tensorboard")

    @property
    def trained_lm(self):
        """The causal LM being trained."""
        return self.policy

    def coefficients(self) -> dict[str, float]:
        """The loss's temperature (no KL term is paid anywhere)."""
        return {}

    def progress(self, run_dir: Path) -> str:
        """Where a resumed run stands."""
        return f"after {self.num_steps} steps ({self.num_comparisons} comparisons)"

    def counters(self) -> dict[str, Any]:
        """The run's counters and its coefficients, for summary.json."""
        return {"steps": int(self.num_steps), "comparisons": int(self.num_comparisons), **self.coefficients()}

