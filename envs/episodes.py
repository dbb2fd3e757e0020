"""The state of a batch of RLHF episodes, kept as tensors on the device, and the reward at their end.

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


MAX_LOGPROB = 1e-5
"""The largest log-probability an agent may report: 0, plus room for rounding."""
LOGPROB_RULE = "a log-probability is a finite number <= 0"


class EpisodeBatch:
    """``num_rows`` episodes stepped together; each row starts, grows by one token a step, and finishes."""

    def __init__(self, setup: EnvSetup, num_rows: int):
        self.setup, self.num_rows = setup, num_rows
        device, length = setup.device, setup.context_length
        # contexts[i] = [prompt_i (prompt_lens[i] tokens), response_i (response_lens[i] tokens), pad...]  [N, P + T]
        self.contexts = torch.full((num_rows, length), setup.pad_token_id, dtype=torch.long, device=device)
        self.prompt_lens = torch.zeros(num_rows, dtype=torch.long, device=device)
        self.response_lens = torch.zeros(num_rows, dtype=torch.long, device=device)
        # policy_logprobs[i, t] = the reported log pi of response token t of row i (NaN: not reported)  [N, T]
        self.policy_logprobs = torch.full((num_rows, setup.max_new_tokens), float("nan"), device=device)
        self.reported = torch.full((num_rows,), float("nan"), device=device)  # for the next action only
        self.prompt_index = np.zeros(num_rows, dtype=np.int64)
        self.done = np.ones(num_rows, dtype=bool)
        self.eos = np.zeros(num_rows, dtype=bool)

    def start(self, rows: np.ndarray, prompt_indices: np.ndarray) -> None:
        """Begin new episodes in ``rows`` with the given prompts."""
        for row, index in zip(rows.tolist(), prompt_indices.tolist()):
            ids = self.setup.prompt_ids[index]
            self.contexts[row].fill_(self.setup.pad_token_id)
            self.contexts[row, : len(ids)] = torch.tensor(ids, device=self.setup.device)
            self.prompt_lens[row] = len(ids)
            self.prompt_index[row] = index
        rows_t = torch.as_tensor(rows, device=self.setup.device)
        self.response_lens[rows_t] = 0
        self.policy_logprobs[rows_t] = float("nan")
        self.reported[rows_t] = float("nan")
        self.done[rows] = False
        self.eos[rows] = False

    def report(self, logprobs) -> None:
        """Store ``log pi(a_t | s_t)`` of the actions about to be taken (NaN: not reported).

        :raises ConfigError: for a value that is no log-probability (inf, -inf, > 0), which would make the reward infinite
            or reward the KL, naming the row.
        """
        if torch.is_tensor(logprobs):
            values = logprobs.detach().float().reshape(-1).to(self.setup.device)
        else:
            try:
                values = torch.as_tensor(np.asarray(logprobs, dtype=np.float32).reshape(-1), device=self.setup.device)
            except (TypeError, ValueError):
                raise ConfigError(f"report_logprobs: expected {self.num_rows} numbers, got {logprobs!r}") from None
        if values.shape[0] != self.num_rows:
            raise ValueError(f"expected {self.num_rows} log-probs, got {values.shape[0]}")
        bad = torch.isinf(values) | (values > MAX_LOGPROB)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise ConfigError(f"report_logprobs: row {row}: {values[row].item()}; {LOGPROB_RULE} "
                              "(NaN: no report for that row)")
        self.reported.copy_(values)

    def observation(self) -> dict[str, np.ndarray]:
        lengths = (self.prompt_lens + self.response_lens)[:, None]
        mask = torch.arange(self.setup.context_length, device=self.setup.device)[None, :] < lengths
        return {"input_ids": self.contexts.cpu().numpy().copy(), "attention_mask": mask.long().cpu().numpy().copy()}

    def append(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add one token to each of ``rows``; return the (terminated, truncated) flags of those rows."""
        rows_t = torch.as_tensor(rows, device=self.setup.device)
        tokens = torch.as_tensor(actions, dtype=torch.long, device=self.setup.device)
        steps = self.response_lens[rows_t]  # index of the new token within each response
        # the new token's column in the right-padded context: just after the prompt and the response so far
        self.contexts[rows_t, self.prompt_lens[rows_t] + steps] = tokens
        self.policy_logprobs[rows_t, steps] = self.reported[rows_t]  # the report made before this step
        self.reported[rows_t] = float("nan")
        self.response_lens[rows_t] = steps + 1
        terminated = np.asarray(actions) == self.setup.stop_token_id
        truncated = ~terminated & (self.response_lens[rows_t].cpu().numpy() >= self.setup.max_new_tokens)
        self.eos[rows] = terminated
        self.done[rows] = terminated | truncated
        return terminated, truncated

    def last_token_kl(self, rows: np.ndarray) -> np.ndarray:
        """Per-token mode: the KL estimate of each row's newest token (one reference pass for the rows)."""
        rows_t = torch.as_tensor(rows, device=self.setup.device)
        steps = self.response_lens[rows_t]
        ref = reference_logprobs(self.setup.ref_model, self.contexts[rows_t], self.prompt_lens[rows_t],
                                 int(steps.max()), self.setup.config.temperature)
        # ref[:, t] is log pi_ref of response token t; the newest token of each row is at t = response_len - 1
        ref_last = ref.gather(1, (steps - 1)[:, None]).squeeze(1)
        policy_last = self.policy_logprobs[rows_t].gather(1, (steps - 1)[:, None]).squeeze(1)
        return kl_per_token(torch.nan_to_num(policy_last, nan=0.0), ref_last, self.setup.config.kl_estimator).cpu().numpy()

    @torch.no_grad()
    def action_masks(self) -> torch.Tensor:
        """NLPO masks [N, V] of every row's next token, from one forward of the masking model over the contexts."""
        mask = self.setup.mask
        if mask is None:
            raise RuntimeError("this env has no action masks: create it with mask_top_p=... (and/or mask_top_k=...)")
        lengths = self.prompt_lens + self.response_lens
        attention = (torch.arange(self.setup.context_length, device=self.setup.device)[None, :] < lengths[:, None]).long()
        logits = mask.model(input_ids=self.contexts, attention_mask=attention, position_ids=positions(attention)).logits
        # the next-token distribution of each row sits at its last real position (right padding follows it)
        last = logits[torch.arange(self.num_rows, device=logits.device), (lengths - 1).clamp(min=0)]
        return top_p_mask(last / self.setup.config.temperature, mask.top_p, mask.top_k, mask.min_tokens, mask.always_allowed)

    def refresh_mask_model(self, model) -> None:
        """Copy ``model``'s weights into the masking model (NLPO's periodic refresh)."""
        mask = self.setup.mask
        if mask is None or not mask.refreshable:
            raise RuntimeError("the masking model is not a refreshable copy (mask_model='policy_copy')")
        mask.model.load_state_dict(model.state_dict())

    def texts(self, row: int) -> tuple[str, str]:
        tok = self.setup.tokenizer
        p, n = int(self.prompt_lens[row]), int(self.response_lens[row])
        ids = self.contexts[row, p:p + n].tolist()
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
        rows_t = torch.as_tensor(rows, device=setup.device)
        texts = [self.texts(int(r)) for r in rows]
        prompts, responses = [t[0] for t in texts], [t[1] for t in texts]
        episodes = score_episodes(setup.ref_model, setup.reward_fn, self.contexts[rows_t], self.prompt_lens[rows_t],
                                  self.response_lens[rows_t], self.policy_logprobs[rows_t], prompts, responses,
                                  self.eos[rows].tolist(), setup.config.kl_estimator, setup.config.temperature,
                                  setup.config.no_eos_penalty)
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
        setup.kl_controller.update(float(np.mean([e.kl for e in episodes])), len(episodes))
        return infos

    def rewards(self, rows: np.ndarray, finished: np.ndarray) -> tuple[np.ndarray, list[dict]]:
        """Rewards of a step for ``rows`` (``finished`` marks those whose episode ended now) and their infos."""
        rewards = np.zeros(len(rows), dtype=np.float64)
        beta = self.setup.kl_controller.beta
        if self.setup.config.kl_placement == "per_token" and len(rows):
            rewards -= beta * self.last_token_kl(rows)
        infos: list[dict] = [{} for _ in rows]
        if finished.any():
            final = self.finish(rows[finished])
            for j, info in zip(np.flatnonzero(finished), final):
                if self.setup.config.kl_placement == "terminal":
                    rewards[j] += info["terminal_reward"]
                else:
                    rewards[j] += info["proxy_reward"] - info["penalty"]
                infos[j] = info
        return rewards, infos

    def render(self, row: int) -> str:
        prompt, response = self.texts(row)
        return f"{prompt} \u2502 {response}"

