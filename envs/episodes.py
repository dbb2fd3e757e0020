"""The state of a batch of RLHF episodes, kept in NumPy arrays on the host, and the reward at their end.

Row ``i`` holds ``[prompt_i, response_i, pad...]`` in ``contexts[i]``. Both the single and the batched
environment are views of this one state machine, so they give the same rewards for the same tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import positions
from rlhf_gym.kl import kl_per_token
from rlhf_gym.masking import top_p_mask
from rlhf_gym.scoring import reference_logprobs, score_episodes

from .setup import EnvSetup


# Not exactly 0: an agent's log-prob of a near-certain token may round to a hair above 0, and that is no error.
MAX_LOGPROB = 1e-5
"""The largest log-probability an agent may report: 0, plus room for rounding."""
LOGPROB_RULE = "a log-probability is a finite number <= 0"


class EpisodeBatch:
    """``num_rows`` episodes stepped together; each row starts, grows by one token a step, and finishes.

    The per-step state is kept in NumPy on the host: a step is a handful of array writes, with no device op, no
    host-device copy and no torch dispatch. The models see it (on their device) only when they run: scoring, the
    per-token KL, the NLPO masks.
    """

    def __init__(self, setup: EnvSetup, num_rows: int):
        self.setup, self.num_rows = setup, num_rows
        length = setup.context_length
        # int64: token ids go to torch as the Long indices embeddings need, and match the observation's Box(int64).
        # Right padding: each row's response grows in place at column prompt_len + t, the observation keeps one
        # fixed shape, and every real token sits at its natural position 0..len-1, so a model needs no position ids.
        # contexts[i] = [prompt_i (prompt_lens[i] tokens), response_i (response_lens[i] tokens), pad...]  [N, P + T]
        self.contexts = np.full((num_rows, length), setup.pad_token_id, dtype=np.int64)
        self.prompt_lens = np.zeros(num_rows, dtype=np.int64)
        self.response_lens = np.zeros(num_rows, dtype=np.int64)
        # policy_logprobs[i, t] = the reported log pi of response token t of row i (NaN: not reported)  [N, T]
        # NaN is the "no report" sentinel, resolved to the fallback log pi = 0 only when the KL is computed
        self.policy_logprobs = np.full((num_rows, setup.max_new_tokens), np.nan, dtype=np.float32)
        self.reported = np.full(num_rows, np.nan, dtype=np.float32)  # for the next action only
        self.prompt_index = np.zeros(num_rows, dtype=np.int64)
        # every row starts done: nothing may be stepped before a reset starts it
        self.done = np.ones(num_rows, dtype=bool)
        self.eos = np.zeros(num_rows, dtype=bool)
        self.pending = np.zeros(num_rows, dtype=bool)  # finished, scoring deferred (RLHFVectorEnv.defer_scoring)
        self._columns = np.arange(length)

    def start(self, rows: np.ndarray, prompt_indices: np.ndarray) -> None:
        """Begin new episodes in ``rows`` with the given prompts."""
        for row, index in zip(rows.tolist(), prompt_indices.tolist()):
            ids = self.setup.prompt_ids[index]
            # clear the previous episode's tokens, so the padding of the observation is padding and not stale text
            self.contexts[row] = self.setup.pad_token_id
            self.contexts[row, : len(ids)] = ids
            self.prompt_lens[row] = len(ids)
            self.prompt_index[row] = index
        self.response_lens[rows] = 0
        # forget the last episode's reports, and any report made for an action that this restart ignores
        self.policy_logprobs[rows] = np.nan
        self.reported[rows] = np.nan
        self.done[rows] = False
        self.eos[rows] = False
        self.pending[rows] = False

    def report(self, logprobs, rows=None) -> None:
        """Store ``log pi(a_t | s_t)`` of the actions about to be taken, for the rows of the bool mask ``rows`` (None:
        every row); a row outside it has no report, and the fallback applies to its token.

        :raises ConfigError: for a reported value that is no log-probability (NaN, inf, -inf, > 0), which would make the
            reward NaN or infinite or the KL wrong, naming the row.
        """
        # a tensor is detached, upcast and brought to the host first: NumPy cannot read a CUDA, grad or bf16 tensor
        try:
            values = np.asarray(logprobs.detach().float().cpu() if torch.is_tensor(logprobs) else logprobs,
                                dtype=np.float32).reshape(-1)
            given = (np.ones(self.num_rows, dtype=bool) if rows is None else
                     np.asarray(rows.detach().cpu() if torch.is_tensor(rows) else rows).reshape(-1))
        except (TypeError, ValueError):
            raise ConfigError(f"report_logprobs: expected {self.num_rows} numbers, got {logprobs!r}") from None
        if values.shape[0] != self.num_rows:
            raise ValueError(f"expected {self.num_rows} log-probs, got {values.shape[0]}")
        if given.dtype != bool or given.shape != (self.num_rows,):
            raise ConfigError(f"report_logprobs: rows must be a bool mask of {self.num_rows} rows, got {rows!r}")
        # NaN is refused, not read as "no report": it is most likely a policy whose logits went NaN, and its fallback
        # (log pi = 0) would turn into a KL of hundreds of nats; rows without a report are said with ``rows``. inf would
        # make the KL and the reward infinite, and a positive value is no log-probability (a negative log-likelihood
        # passed with the wrong sign)
        bad = given & (~np.isfinite(values) | (values > MAX_LOGPROB))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"report_logprobs: row {row}: {values[row]}; {LOGPROB_RULE} (a row with no report: leave "
                              "it out of rows=)")
        self.reported[:] = np.where(given, values, np.nan)  # NaN: the internal mark of "no report"

    def attention_mask(self) -> np.ndarray:
        """1 on each row's prompt and response so far, 0 on the right padding  [N, P + T]."""
        return (self._columns[None, :] < (self.prompt_lens + self.response_lens)[:, None]).astype(np.int64)

    def observation(self) -> dict[str, np.ndarray]:
        # a copy: an agent that keeps observations (a rollout buffer) must not see them change at the next step
        return {"input_ids": self.contexts.copy(), "attention_mask": self.attention_mask()}

    def append(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one token to each of ``rows``; return the (terminated, truncated) flags of those rows."""
        steps = self.response_lens[rows]  # index of the new token within each response
        # the new token's column in the right-padded context: just after the prompt and the response so far
        self.contexts[rows, self.prompt_lens[rows] + steps] = actions
        self.policy_logprobs[rows, steps] = self.reported[rows]  # the report made before this step
        # consumed: an agent that stops reporting gets the fallback, never a stale log-prob of an earlier token
        self.reported[rows] = np.nan
        self.response_lens[rows] = steps + 1
        # the stop token on the last allowed step is a termination, not a truncation: the response is complete, so
        # it pays no no-EOS penalty
        terminated = np.asarray(actions) == self.setup.stop_token_id
        truncated = ~terminated & (steps + 1 >= self.setup.max_new_tokens)
        self.eos[rows] = terminated
        self.done[rows] = terminated | truncated
        return terminated, truncated

    def _device_view(self, rows: np.ndarray, width: int | None = None) -> tuple[torch.Tensor, ...]:
        """``contexts`` (its first ``width`` columns), ``prompt_lens`` and ``response_lens`` of ``rows``, on the device."""
        device = self.setup.device
        contexts = self.contexts[rows] if width is None else self.contexts[rows, :width]
        return tuple(torch.as_tensor(a, device=device) for a in (contexts, self.prompt_lens[rows], self.response_lens[rows]))

    def last_token_kl(self, rows: np.ndarray) -> np.ndarray:
        """Per-token mode: the KL estimate of each row's newest token (one reference pass for the rows)."""
        # one reference pass over each row's whole prefix at every step (no KV cache is kept): dense KL's price
        contexts, prompt_lens, steps = self._device_view(rows)
        ref = reference_logprobs(self.setup.ref_model, contexts, prompt_lens, int(steps.max()),
                                 self.setup.config.temperature)
        # ref[:, t] is log pi_ref of response token t; the newest token of each row is at t = response_len - 1
        ref_last = ref.gather(1, (steps - 1)[:, None]).squeeze(1)
        policy = torch.as_tensor(self.policy_logprobs[rows, self.response_lens[rows] - 1], device=ref.device)
        # no report (NaN) -> the fallback log pi = 0, the same rule as score_episodes, so that the per-token KLs paid
        # along the way add up (to rounding) to the final info's kl
        return kl_per_token(torch.nan_to_num(policy, nan=0.0), ref_last, self.setup.config.kl_estimator).cpu().numpy()

    @torch.no_grad()
    def action_masks(self) -> torch.Tensor:
        """NLPO masks [N, V] of every row's next token, from one forward of the masking model over the contexts."""
        mask = self.setup.mask
        if mask is None:
            raise RuntimeError("this env has no action masks: create it with mask_top_p=... (and/or mask_top_k=...)")
        contexts, prompt_lens, response_lens = self._device_view(np.arange(self.num_rows))
        attention = torch.as_tensor(self.attention_mask(), device=contexts.device)
        # with right padding positions() gives 0..n-1 at every real token, what the scoring pass gets by default
        logits = mask.model(input_ids=contexts, attention_mask=attention, position_ids=positions(attention)).logits
        # the next-token distribution of each row sits at its last real position (right padding follows it);
        # clamp(min=0) keeps a row never reset (length 0) from indexing -1, the last column
        last = logits[torch.arange(self.num_rows, device=logits.device), (prompt_lens + response_lens - 1).clamp(min=0)]
        # the same temperature as the reference log-probs (and the agent's sampling): the top-p mass is measured on
        # the distribution the agent actually samples from; always_allowed keeps the stop token, so a row can end
        return top_p_mask(last / self.setup.config.temperature, mask.top_p, mask.top_k, mask.min_tokens, mask.always_allowed)

    def refresh_mask_model(self, model) -> None:
        """Copy ``model``'s weights into the masking model (NLPO's periodic refresh)."""
        mask = self.setup.mask
        if mask is None or not mask.refreshable:
            raise RuntimeError("the masking model is not a refreshable copy (mask_model='policy_copy')")
        # a copy of the weights, not a reference to ``model``: NLPO's masking policy follows the trained policy only at
        # the agent's periodic refreshes, not at its every optimiser step
        mask.model.load_state_dict(model.state_dict())

    def texts(self, row: int) -> tuple[str, str]:
        tok = self.setup.tokenizer
        p, n = int(self.prompt_lens[row]), int(self.response_lens[row])
        ids = self.contexts[row, p:p + n].tolist()
        # the prompt is the original string (not decoded from ids that may have been left-truncated); the response
        # drops special tokens (the EOS that ended it) and surrounding whitespace: the reward model scores the text
        return self.setup.prompts[self.prompt_index[row]], tok.decode(ids, skip_special_tokens=True).strip()

    def finish(self, rows: np.ndarray) -> list[dict]:
        """Score the finished ``rows`` (one reference pass, one reward call); return their final infos.

        Each info has ``proxy_reward``, ``kl``, ``beta``, ``penalty``, ``terminal_reward``, ``ref_logprob``,
        ``ref_token_logprobs`` (``log pi_ref`` of each response token, float32 [response_length]: what GRPO's KL term
        needs, so agents need not recompute it), ``kl_source``, ``prompt``, ``response_text``, ``response_length``,
        ``eos`` and, for tasks with a gold reward, ``gold_reward`` and ``well_formed``. The KL controller is updated
        afterwards.
        """
        setup = self.setup
        texts = [self.texts(int(r)) for r in rows]
        prompts, responses = [t[0] for t in texts], [t[1] for t in texts]
        # the reference pass reads the columns up to the longest prompt + response of these rows, not the whole budget
        width = int((self.prompt_lens[rows] + self.response_lens[rows]).max())
        contexts, prompt_lens, response_lens = self._device_view(rows, width)
        episodes = score_episodes(setup.ref_model, setup.reward_fn, contexts, prompt_lens, response_lens,
                                  torch.as_tensor(self.policy_logprobs[rows], device=setup.device), prompts, responses,
                                  self.eos[rows].tolist(), setup.config.kl_estimator, setup.config.temperature,
                                  setup.config.no_eos_penalty)
        # the beta these rows are paid with, read before this batch updates the controller (below)
        beta = setup.kl_controller.beta
        has_gold = setup.task is not None and setup.task.gold_reward is not None
        gold = setup.task.gold_scores(prompts, responses) if has_gold else None
        infos = []
        for i, (row, episode, prompt, response) in enumerate(zip(rows.tolist(), episodes, prompts, responses)):
            info = {"proxy_reward": episode.proxy_reward, "kl": episode.kl, "beta": beta, "penalty": episode.penalty,
                    "terminal_reward": episode.terminal_reward(beta), "ref_logprob": episode.ref_logprob,
                    "ref_token_logprobs": episode.ref_token_logprobs,
                    "kl_source": episode.kl_source, "prompt": prompt, "response_text": response,
                    "response_length": int(self.response_lens[row]), "eos": bool(self.eos[row])}
            if gold is not None:
                info["gold_reward"] = float(gold["gold_reward"][i])
                info["well_formed"] = bool(gold["well_formed"][i])
            infos.append(info)
        # One update per scored batch, after its rewards (each row is paid the beta its info reports), weighted by its
        # count (the adaptive step scales with n / horizon). A data-parallel agent's controller only records it here,
        # then applies one update over all processes (agents.parallel.ProcessGroupKLController): one beta everywhere.
        setup.kl_controller.update(float(np.mean([e.kl for e in episodes])), len(episodes))
        return infos

    def rewards(self, rows: np.ndarray, finished: np.ndarray, defer: bool = False) -> tuple[np.ndarray, list[dict]]:
        """Rewards of a step for ``rows`` (``finished`` marks those whose episode ended now) and their infos.

        :param defer: leave the finished rows unscored (``pending``) for :meth:`score_pending`: reward 0, no info.
        """
        rewards = np.zeros(len(rows), dtype=np.float64)
        beta = self.setup.kl_controller.beta
        # per-token placement: every step, the last one included, pays -beta * kl_t of its own token now
        if self.setup.config.kl_placement == "per_token" and len(rows):
            rewards -= beta * self.last_token_kl(rows)
        infos: list[dict] = [{} for _ in rows]
        if defer:
            # reward 0 now; score_pending pays the terminal reward later (deferral requires terminal placement, so
            # no KL was paid above)
            self.pending[rows[finished]] = True
        elif finished.any():
            final = self.finish(rows[finished])
            for j, info in zip(np.flatnonzero(finished), final):
                if self.setup.config.kl_placement == "terminal":
                    rewards[j] += info["terminal_reward"]  # r_phi - beta * KL - penalty, all at the last token
                else:
                    # the KL was paid token by token (this token's above): r_phi and the penalty are what is left. The
                    # episode's sum is terminal_reward only while beta is constant; an adaptive one moves in between.
                    rewards[j] += info["proxy_reward"] - info["penalty"]
                infos[j] = info
        return rewards, infos

    def score_pending(self) -> tuple[np.ndarray, list[dict]]:
        """Score every pending row in one reference pass and one reward call: the rows and their final infos (whose
        ``terminal_reward`` is each row's reward; deferral needs the KL paid at the end)."""
        rows = np.flatnonzero(self.pending)
        self.pending[rows] = False
        return rows, (self.finish(rows) if rows.size else [])

    def render(self, row: int) -> str:
        prompt, response = self.texts(row)
        return f"{prompt} \u2502 {response}"

