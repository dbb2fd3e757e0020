"""Direct preference optimisation: the policy trained on comparisons with one supervised loss, no reward model, no RL.

DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290). With the implicit reward
``r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))`` and, for a comparison ``(x, y_w, y_l)``,

    h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)),

the losses per comparison are (TRL's ``loss_type`` names):

* ``"sigmoid"`` (DPO): ``-log sigmoid(beta * h)``; with label smoothing ``eps`` (conservative DPO, labels flipped
  with probability ``eps``): ``-(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``;
* ``"ipo"`` (IPO, Azar et al. 2023, https://arxiv.org/abs/2310.12036): ``(h - 1 / (2 * beta))^2``.

``log pi(y|x)`` is the *sum* of the response's token log-probs, for both losses, as in both papers (TRL averages
them over the tokens for IPO; with sums, IPO's target gap ``1 / (2 beta)`` is in nats per response).

A response's log-prob covers the tokens the env's policy would have sampled: the response re-tokenised as the env
tokenises text (``tokenizer(text, add_special_tokens=False)``, prompts as :func:`rlhf_gym.prompts.tokenize_prompts`)
and the EOS that ended it (a response of ``max_new_tokens`` tokens was cut by the budget, without EOS). The
reference's log-probs are computed once for all comparisons, before training, and kept on the device.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

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
from rlhf_gym.generation import left_pad, query_response_inputs, response_slice
from rlhf_gym.preferences import NON_PREFERENCE_LABELS, load_preferences, validate_record
from rlhf_gym.prompts import tokenize_prompts
from rlhf_gym.reward_training import data_hash
from rlhf_gym.utils import context_length, load_pretrained, resolve_device

from .parallel import DataParallel, PolicyCall
from .policy import OPTIMIZER_KWARGS, describe_model, disable_dropout, load_causal_lm

LOSS_TYPES = ("sigmoid", "ipo")
POLICY_DIR, STATE_FILE = "policy", "dpo_state.pt"
"""Members of a :meth:`DPO.save` zip: the policy and tokenizer in HF format, and the training state."""


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-comparison DPO/IPO losses and implicit rewards ``beta * (log pi - log pi_ref)`` (detached), as in TRL.

    :param policy_chosen_logps: ``log pi(y_w|x)`` summed over the response tokens [B]; likewise the other three.
    :param loss_type: ``"sigmoid"`` (DPO, with ``label_smoothing``) or ``"ipo"``.
    :return: ``(losses, chosen_rewards, rejected_rewards)``, each [B].
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    else:
        raise ConfigError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def tokenize_response(tokenizer, response: str, max_new_tokens: int | None = None) -> list[int]:
    """The token ids the env's policy sampled for a decoded ``response``: the text's ids and the EOS that ended it.

    The env decodes a response with ``skip_special_tokens=True`` and strips it (``rlhf_gym.envs.episodes.EpisodeBatch.texts``);
    with the task's word-level tokenizer, tokenising that text gives the sampled ids back. A response of
    ``max_new_tokens`` tokens or more hit the budget and ended without EOS (None: every response ends with EOS).
    """
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
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
    """A plain ``callback(dpo) -> bool`` as an SB3 callback: returning False stops training."""

    def __init__(self, function: Callable[[Any], bool | None]):
        super().__init__()
        self.function = function

    def _on_step(self) -> bool:
        result = self.function(self.model)
        return result is None or bool(result)


class DPO:
    """Direct preference optimisation (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) of a causal LM.

    SB3's shape without an env: ``learn`` with callbacks, SB3's logger (stdout with ``verbose=1``, TensorBoard with
    ``tensorboard_log``), ``save``/``load``, and ``export_pretrained`` for ``rlhf-gym evaluate --agent <dir>``.

    :param model: the causal LM to start from (HF id, directory or model object); the policy is a trainable copy.
    :param ref_model: the frozen reference (id, directory or object); None: ``model`` itself. It is only read once,
        to fill the cache of reference log-probs, and is not kept.
    :param tokenizer: the policy's tokenizer (object, id or directory); None: the one saved beside ``model``.
    :param comparisons: preference records ``{"prompt", "chosen", "rejected", ...}`` (as
        :func:`rlhf_gym.preferences.load_preferences` returns), or a JSONL path / ``datasets.Dataset`` it loads.
        Records labelled ``tie`` or ``skip`` are left out; a ``margin`` is not used.
    The defaults (beta 0.5, learning rate 3e-4, batch 64) were tuned for one epoch on ``RLHF-v0``'s comparisons (its
    small SFT policy); TRL's (beta 0.1, learning rate 1e-6) suit billion-parameter models. On ``RLHF-v0``, beta 0.1 at
    3e-4 drifts to ill-formed text (KL 6.5, gold reward below the SFT policy's).

    :param beta: KL strength of the implicit reward (DPO's beta; IPO's tau).
    :param loss_type: ``"sigmoid"`` (DPO) or ``"ipo"`` (IPO).
    :param label_smoothing: conservative DPO's label-flip probability, in [0, 0.5) (``"sigmoid"`` only).
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
        each takes
        its share of every minibatch of ``batch_size`` comparisons, and the main process writes. None: one process.
    """

    def __init__(
        self,
        model: str | Path | torch.nn.Module,
        ref_model: str | Path | torch.nn.Module | None,
        tokenizer: Any,
        comparisons: list[dict] | str | Path | Any,
        beta: float = 0.5,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        learning_rate: float = 3e-4,
        batch_size: int = 64,
        max_grad_norm: float = 1.0,
        max_new_tokens: int | None = None,
        seed: int = 0,
        device: torch.device | str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        parallel: DataParallel | None = None,
    ):
        self._configure(beta=beta, loss_type=loss_type, label_smoothing=label_smoothing, learning_rate=learning_rate,
                        batch_size=batch_size, max_grad_norm=max_grad_norm, max_new_tokens=max_new_tokens, seed=seed,
                        device=device, tensorboard_log=tensorboard_log, verbose=verbose, parallel=parallel)
        self._set_model(model, tokenizer)
        self._set_data(comparisons)
        self.ref_logps = self.reference_logps(self.policy if ref_model is None else ref_model)

    # ------------------------------------------------------------------------------------------ setup
    def _configure(self, *, beta: float, loss_type: str, label_smoothing: float, learning_rate: float, batch_size: int,
                   max_grad_norm: float, max_new_tokens: int | None, seed: int, device: torch.device | str,
                   tensorboard_log: str | None, verbose: int, parallel: DataParallel | None = None) -> None:
        """Check and store the hyperparameters (each bad value a :class:`ConfigError` naming its option)."""
        check_number("beta", beta, 0.0, strict=True)
        if loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        check_number("label_smoothing", label_smoothing, 0.0)
        if label_smoothing >= 0.5:
            raise ConfigError(f"label_smoothing must be < 0.5 (a flip probability of 0.5 or more inverts the labels), "
                              f"got {label_smoothing}")
        if loss_type == "ipo" and label_smoothing > 0:
            raise ConfigError("label_smoothing applies to loss_type='sigmoid' only (IPO has no label smoothing)")
        check_number("learning_rate", learning_rate, 0.0, strict=True)
        check_count("batch_size", batch_size)
        check_number("max_grad_norm", max_grad_norm, 0.0, strict=True)
        if max_new_tokens is not None:
            check_count("max_new_tokens", max_new_tokens)
        check_seed(seed, "seed")
        self.beta, self.loss_type, self.label_smoothing = float(beta), loss_type, float(label_smoothing)
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

    def _set_data(self, comparisons: list[dict] | str | Path | Any) -> None:
        """Validate and tokenise the comparisons once: ``prompt_ids[i]`` and ``response_ids[i] = (chosen, rejected)``."""
        if isinstance(comparisons, (str, Path)) or hasattr(comparisons, "column_names"):
            records = load_preferences(comparisons)
        elif isinstance(comparisons, (list, tuple)):
            records = []
            for i, record in enumerate(comparisons):
                if not isinstance(record, dict):
                    raise DataError(f"comparison {i}: expected a dict with prompt, chosen and rejected, got "
                                    f"{type(record).__name__}")
                validate_record(record, f"comparison {i}")
                if record.get("label") not in NON_PREFERENCE_LABELS:
                    records.append(record)
        else:
            raise TypeError(f"comparisons: expected a list of records, a JSONL path or a dataset, got "
                            f"{type(comparisons).__name__}")
        if not records:
            raise DataError("no comparisons to train on (none given, or all labelled tie/skip)")
        prompt_ids = tokenize_prompts([r["prompt"] for r in records], self.tokenizer)
        response_ids = [(tokenize_response(self.tokenizer, r["chosen"], self.max_new_tokens),
                         tokenize_response(self.tokenizer, r["rejected"], self.max_new_tokens)) for r in records]
        limit = context_length(self.policy)
        for i, (prompt, pair) in enumerate(zip(prompt_ids, response_ids)):
            if not prompt:
                raise DataError(f"comparison {i}: the prompt {records[i]['prompt']!r} is empty after tokenisation")
            longest = max(len(ids) for ids in pair)
            if limit is not None and len(prompt) + longest > limit:
                raise ConfigError(f"comparison {i}: prompt ({len(prompt)} tokens) and response ({longest} tokens with "
                                  f"EOS) need {len(prompt) + longest} of the policy's {limit} positions")
        self.comparisons, self.prompt_ids, self.response_ids = records, prompt_ids, response_ids

    def _batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """Chosen then rejected sequences of ``indices``: left-padded queries [2B, P], right-padded responses [2B, T]."""
        pad = self.tokenizer.pad_token_id
        queries, query_mask = left_pad([self.prompt_ids[i] for i in indices] * 2, pad, self.device)
        responses = [torch.tensor(self.response_ids[i][k]) for k in (0, 1) for i in indices]
        response_ids = pad_sequence(responses, batch_first=True, padding_value=pad).to(self.device)
        response_mask = pad_sequence([torch.ones_like(r) for r in responses], batch_first=True).to(self.device)
        return queries, query_mask, response_ids, response_mask

    @torch.no_grad()
    def reference_logps(self, ref_model: str | Path | torch.nn.Module, batch_size: int = 256) -> torch.Tensor:
        """``log pi_ref`` of every comparison's chosen and rejected response [N, 2], on ``self.device``: one pass over the
        data in batches of ``batch_size`` comparisons (a model object stays on its own device and is not modified)."""
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
        """SB3 callbacks (one, or a list), plain ``callback(dpo) -> bool`` functions, or None, as one SB3 callback."""
        callbacks = callback if isinstance(callback, list) else [] if callback is None else [callback]
        callback = CallbackList([c if isinstance(c, BaseCallback) else _FunctionCallback(c) for c in callbacks])
        callback.init_callback(self)
        return callback

    def train_step(self, indices: list[int]) -> dict[str, float]:
        """One optimizer step on the comparisons ``indices`` (chosen and rejected in one forward); returns its stats.

        In a data-parallel run this process takes every ``num_processes``-th of them, and its loss is its share of the
        mean over all of ``indices`` (the sum of its losses over ``len(indices) / num_processes``), so the engine's
        average of the gradients is the gradient of that mean.
        """
        everyone = len(indices)
        share = everyone / self.parallel.num_processes
        indices = indices[self.parallel.process_index::self.parallel.num_processes]
        logps = sequence_logps(partial(self._policy_call, "__call__"), *self._batch(indices)).view(2, -1)  # [chosen; rejected]
        ref = self.ref_logps[indices]
        losses, chosen_rewards, rejected_rewards = dpo_loss(logps[0], logps[1], ref[:, 0], ref[:, 1], self.beta,
                                                            self.loss_type, self.label_smoothing)
        loss = losses.sum() / share
        check_finite_loss(loss, f"DPO step {self.num_steps + 1} ({self.num_comparisons} comparisons done)",
                          "try a lower learning_rate")
        self.optimizer.zero_grad(set_to_none=True)
        if self.parallel.distributed:
            self.parallel.backward(loss)
            grad_norm = self.parallel.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        else:
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        check_finite_loss(grad_norm, f"DPO step {self.num_steps + 1}", "try a lower learning_rate",
                          what="the gradient norm")
        self.optimizer.step()
        self.num_comparisons += everyone
        self.num_steps += 1
        return {"train/loss": loss.item(), "train/grad_norm": grad_norm.item(),
                "rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
                "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
                "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
                "logps/chosen": logps[0].mean().item(), "logps/rejected": logps[1].mean().item()}

    def learn(self, total_comparisons: int, callback=None, progress_bar: bool = False, log_interval: int = 10,
              tb_log_name: str = "DPO") -> DPO:
        """Train until ``num_comparisons >= total_comparisons``, counted from the start of the run (also after
        :meth:`load`): ``total_comparisons = k * len(comparisons)`` is ``k`` epochs.

        :param callback: an SB3 ``BaseCallback`` (or a list): its ``on_step`` runs after every optimizer step and its
            ``num_timesteps`` counts comparisons, so SB3's ``CheckpointCallback`` and ``EveryNTimesteps`` work as
            they are; or a plain function ``callback(dpo)`` called after every step, returning False to stop.
        :param log_interval: optimizer steps between two dumps of the logger (the means over those steps).
        :param tb_log_name: name of the TensorBoard run (a resumed run continues the latest one of that name).
        """
        check_count("total_comparisons", total_comparisons)
        check_count("log_interval", log_interval)
        if not hasattr(self, "comparisons"):
            raise ConfigError("this DPO was loaded without comparisons: pass comparisons= to DPO.load to train it")
        smallest = len(self.comparisons) % self.batch_size or self.batch_size  # an epoch's last minibatch
        if smallest < self.parallel.num_processes:
            raise ConfigError(f"batch_size {self.batch_size} over {len(self.comparisons)} comparisons leaves a minibatch of "
                              f"{smallest}: fewer comparisons than the {self.parallel.num_processes} processes")
        self.logger = configure_logger(self.verbose, self.tensorboard_log, tb_log_name,
                                       reset_num_timesteps=self.num_comparisons == 0)
        callback = self._init_callback(callback)
        callback.on_training_start(locals(), globals())
        started, start_count = time.time(), self.num_comparisons
        window: list[dict[str, float]] = []
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

    def _dump(self, window: list[dict[str, float]], started: float, start_count: int) -> None:
        """Record the means of the steps in ``window`` and write them (x axis: comparisons used)."""
        for key in window[0]:  # means over the window's steps and all processes
            self.logger.record(key, self.parallel.mean([stats[key] for stats in window]))
        self.logger.record("train/learning_rate", self.optimizer.param_groups[0]["lr"])
        self.logger.record("train/epoch", self.num_comparisons / len(self.comparisons))
        self.logger.record("time/comparisons", self.num_comparisons)
        self.logger.record("time/optimizer_steps", self.num_steps)
        self.logger.record("time/comparisons_per_second", (self.num_comparisons - start_count) / max(time.time() - started,
                                                                                                   1e-9))
        self.logger.dump(step=self.num_comparisons)

    # ---------------------------------------------------------------------------------- save / export
    def _state(self) -> dict[str, Any]:
        return {"hyperparameters": {"beta": self.beta, "loss_type": self.loss_type, "label_smoothing": self.label_smoothing,
                                    "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                                    "max_grad_norm": self.max_grad_norm, "max_new_tokens": self.max_new_tokens,
                                    "seed": self.seed},
                "num_comparisons": self.num_comparisons, "num_steps": self.num_steps,
                "optimizer": self.optimizer.state_dict(), "ref_logps": self.ref_logps.cpu(),
                "data_sha256": data_hash(self.comparisons)}

    def save(self, path: str | Path) -> None:
        """Write a zip (the policy and tokenizer in HF format, the optimizer, the counters, which fix the shuffle
        position, and the cached reference log-probs) to ``path``, replacing it only once complete.

        :raises TrainingDivergedError: when a weight is NaN/inf (nothing is written).
        """
        path = Path(path)
        check_finite_parameters(self.policy, f"the DPO policy to {path}")
        if not self.parallel.is_main_process:  # every process holds the same weights; the main process writes
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            staging = Path(tmp)
            self.policy.save_pretrained(staging / POLICY_DIR)
            self.tokenizer.save_pretrained(staging / POLICY_DIR)
            torch.save(self._state(), staging / STATE_FILE)
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
             parallel: DataParallel | None = None) -> DPO:
        """A DPO saved by :meth:`save`, ready to continue ``learn`` on the same ``comparisons`` to the same total.

        :param comparisons: the comparisons it was trained on (checked by hash); None: no training, only the policy
            (e.g. to export it).
        :param parallel: the processes of a data-parallel run (see :class:`DPO`); None: one process.
        :raises MissingFileError: when ``path`` is no DPO checkpoint.
        :raises ConfigError: when ``comparisons`` are not the ones it was trained on.
        """
        path = Path(path)
        if not zipfile.is_zipfile(path):
            raise MissingFileError(f"no DPO checkpoint at {path} (expected the zip written by DPO.save)")
        with tempfile.TemporaryDirectory() as tmp:
            with zipfile.ZipFile(path) as zf:
                if STATE_FILE not in zf.namelist():
                    raise MissingFileError(f"{path} is a zip but not a DPO checkpoint (no {STATE_FILE})")
                zf.extractall(tmp)
            state = torch.load(Path(tmp) / STATE_FILE, map_location="cpu", weights_only=True)
            self = cls.__new__(cls)
            self._configure(**state["hyperparameters"], device=device, tensorboard_log=tensorboard_log, verbose=verbose,
                            parallel=parallel)
            self._set_model(Path(tmp) / POLICY_DIR, Path(tmp) / POLICY_DIR)
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_comparisons, self.num_steps = state["num_comparisons"], state["num_steps"]
        self.ref_logps = state["ref_logps"].to(self.device)
        if comparisons is not None:
            self._set_data(comparisons)
            if data_hash(self.comparisons) != state["data_sha256"]:
                raise ConfigError(f"comparisons: not the {len(self.ref_logps)} comparisons {path} was trained on "
                                  "(their hash differs); resume with the same data")
        return self

    def export_pretrained(self, directory: str | Path) -> None:
        """Write the policy as a plain HF model directory with its tokenizer (``rlhf-gym evaluate --agent <dir>``)."""
        check_finite_parameters(self.policy, f"the DPO policy to {directory}")
        self.policy.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
