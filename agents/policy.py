"""A Hugging Face causal LM as a Stable-Baselines3 actor-critic policy over tokens.

Actor: ``pi(a | s) = softmax(logits(s) / temperature)``, the LM's next-token distribution.
Critic: a linear value head on the LM's last hidden state (shared trunk, the default), or on a separate
copy of the trunk (``share_trunk=False``), optionally initialised from a reward model
(``value_init="reward_model"``, Ouyang et al. 2022). The zero-initialised head starts at ``V = 0``.

With ``lora`` settings (:mod:`rlhf_gym.agents.lora`), the actor is the given model itself with LoRA adapters (Hu et al. 2021)
through PEFT: only the adapters and the value head train, and :attr:`TransformerPolicy.reference_model` is the same
model with the adapters off (the env's ``pi_ref``, one copy of the base weights for both).

Two ways in: SB3's per-observation interface (``forward``, ``evaluate_actions``, ``predict``; one full
forward per observation — what plain ``PPO`` uses), and the sequence interface of :class:`rlhf_gym.agents.TokenPPO`
(``start``/``advance`` sample with a KV cache; ``evaluate_sequences`` runs one forward per sequence).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import BasePolicy
from transformers import AutoTokenizer, PreTrainedModel

from rlhf_gym.generation import cache_kwargs, output_cache, positions, query_response_inputs, response_slice
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import write_errors_name
from rlhf_gym.fused import fuse_gelu
from rlhf_gym.masking import apply_mask
from rlhf_gym.tokenizers import save_tokenizer_for_export
from rlhf_gym.utils import load_model

from .buckets import length_buckets
from .lora import AdaptersDisabled, LoraSettings, adapts_tied_head, apply_lora, lora_base, merged_copy


OPTIMIZER_KWARGS = {"eps": 1e-5, "fused": True}
"""AdamW settings of every trainer (torch's weight decay 0.01, eps 1e-5 as in the N implementation details of PPO), with
torch's fused implementation (one kernel for all parameters, CPU and CUDA; the default loops over them)."""


def describe_model(model_name_or_path: str | nn.Module) -> str:
    """How error messages name a model: its path, or its class and the path it was loaded from."""
    if isinstance(model_name_or_path, nn.Module):
        return f"{type(model_name_or_path).__name__}({getattr(model_name_or_path, 'name_or_path', '') or 'in memory'})"
    return repr(str(model_name_or_path))


def load_causal_lm(model_name_or_path: str | nn.Module) -> PreTrainedModel:
    """A trainable copy of a causal LM given as an HF id, a directory, or a model object."""
    if isinstance(model_name_or_path, nn.Module):
        lm = copy.deepcopy(model_name_or_path)
        # the model given is usually the env's frozen reference: the copy must train
        for p in lm.parameters():
            p.requires_grad_(True)
        fuse_gelu(lm)  # our copy: the same function in one kernel (rlhf_gym.fused)
        return lm
    return load_model(model_name_or_path, "policy", "the policy model")


def disable_dropout(module: nn.Module) -> None:
    """Dropout off for good, so the rollout and the update see the same function (first ratio = 1)."""
    # p = 0 rather than eval(): SB3's set_training_mode(True) calls train() before every update, which would turn
    # dropout back on. With it on, the update's log-probs would not be the sampler's even before any step
    for sub in module.modules():
        if isinstance(sub, nn.Dropout):
            sub.p = 0.0


class TransformerPolicy(BasePolicy):
    """Actor-critic policy whose actor is a causal LM.

    :param observation_space: ``Dict(input_ids, attention_mask)`` of the RLHF env (right-padded contexts).
    :param action_space: ``Discrete(vocab)``.
    :param lr_schedule: learning-rate schedule (SB3).
    :param model_name_or_path: HF causal LM id or directory, or a model object (copied, or adapted in place with
        ``lora``). :class:`rlhf_gym.agents.TokenPPO` fills it with the env's reference model when it is not given.
    :param temperature: sampling temperature of the action distribution.
    :param share_trunk: value head on the actor's trunk (True) or on a separate copy (False).
    :param value_init: ``"zero"`` or ``"reward_model"`` (needs ``share_trunk=False`` and ``reward_model_path``).
    :param reward_model_path: reward model whose trunk and score head initialise the critic.
    :param lora: train LoRA adapters instead of the whole actor (:class:`rlhf_gym.agents.lora.LoraSettings` or a dict of its
        fields; None: full fine-tuning). A model object is then adapted in place, not copied: the policy shares its
        base weights, and :attr:`reference_model` runs them with the adapters off.
    :param max_length_buckets: the update's forward pass over responses of very different lengths runs in up to this
        many length buckets (:mod:`rlhf_gym.agents.buckets`); 1 (the default): one pass padded to the longest response.
        Each pass
        has a fixed cost, so 4 buckets pay where compute dominates (a third of the update pass of an 8-layer, width-512
        model on responses of 12 to 96 tokens) and hardly on the default task's small model (``python -m
        rlhf_gym.benchmarks.length_buckets``).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule,
        model_name_or_path: str | PreTrainedModel | None = None,
        temperature: float = 1.0,
        share_trunk: bool = True,
        value_init: str = "zero",
        reward_model_path: str | None = None,
        lora: LoraSettings | dict[str, Any] | None = None,
        max_length_buckets: int = 1,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
    ):
        # BasePolicy directly: MaskableTransformerPolicy puts sb3-contrib's maskable policy after us in the MRO,
        # and its __init__ (which builds MLPs) must not run.
        BasePolicy.__init__(self, observation_space, action_space, optimizer_class=optimizer_class,
                            optimizer_kwargs=optimizer_kwargs or dict(OPTIMIZER_KWARGS))
        if value_init not in ("zero", "reward_model"):
            raise ValueError(f"value_init must be 'zero' or 'reward_model', got {value_init!r}")
        if model_name_or_path is None:
            raise ConfigError("TransformerPolicy needs model_name_or_path (TokenPPO fills it with the env's reference model)")
        # a model object is where the actor comes from (copied, or adapted in place with LoRA), not a part of this
        # module: kept out of the module tree, or its weights would be in the state dict (and moved, trained) twice
        self.__dict__["model_name_or_path"] = (model_name_or_path if isinstance(model_name_or_path, nn.Module)
                                               else str(model_name_or_path))
        self.temperature, self.share_trunk, self.value_init = float(temperature), share_trunk, value_init
        self.reward_model_path = reward_model_path
        self.lora = LoraSettings.parse(lora)
        if not isinstance(max_length_buckets, int) or max_length_buckets < 1:
            raise ConfigError(f"max_length_buckets must be an integer >= 1, got {max_length_buckets!r}")
        self.max_length_buckets = max_length_buckets
        if self.lora is not None and isinstance(model_name_or_path, nn.Module):
            self.lm = lora_base(model_name_or_path)  # the model itself: its weights are shared, not copied
        else:
            self.lm = load_causal_lm(model_name_or_path)
        # transformers' causal LMs take logits_to_keep (the output head on the last positions only); a custom one may not
        self._lm_keeps_logits = "logits_to_keep" in inspect.signature(self.lm.forward).parameters
        vocab = self.lm.get_output_embeddings().weight.shape[0]
        if action_space.n != vocab:
            raise ConfigError(f"the env's action space Discrete({action_space.n}) does not match the policy "
                              f"{describe_model(model_name_or_path)} (vocabulary {vocab})")
        self.critic_trunk: nn.Module | None = None
        hidden = self.lm.config.hidden_size
        if value_init == "reward_model":
            if share_trunk or reward_model_path is None:
                raise ConfigError("value_init='reward_model' needs share_trunk=False and reward_model_path")
            reward = load_model(reward_model_path, "reward_model", "the reward model for the critic")
            self.critic_trunk = reward.base_model
            head = getattr(reward, "score", None) or getattr(reward, "classifier", None)
            if not isinstance(head, nn.Linear) or head.out_features != 1:
                raise ValueError(f"cannot take a linear score head from {type(reward).__name__}")
            self.value_head = nn.Linear(head.in_features, 1)
            with torch.no_grad():
                self.value_head.weight.copy_(head.weight)
                self.value_head.bias.copy_(head.bias if head.bias is not None else torch.zeros(1))
        else:
            if not share_trunk:  # a separate, trainable copy of the actor's trunk (its initial weights, without adapters)
                self.critic_trunk = copy.deepcopy(self.lm.base_model).requires_grad_(True)
            # zero-initialised: the first values are 0, not the noise of a random head on the LM's hidden states, so
            # the first advantages are the (gamma * lambda)-discounted rewards to go
            self.value_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        # the PEFT wrapper is kept out of the module tree too: its layers are lm's
        self.__dict__["peft_model"] = None if self.lora is None else apply_lora(self.lm, self.lora)
        disable_dropout(self)  # after everything is built, so that it covers the critic's trunk too
        self.action_dist = CategoricalDistribution(vocab)
        trainable = [p for p in self.parameters() if p.requires_grad]  # with LoRA: the adapters and the value head
        self.optimizer = self.optimizer_class(trainable, lr=lr_schedule(1), **self.optimizer_kwargs)

    @property
    def reference_model(self) -> AdaptersDisabled:
        """A LoRA policy's base model with its adapters off (a view sharing the weights): the reference ``pi_ref``."""
        if self.peft_model is None:
            raise ConfigError("reference_model is the base of a LoRA policy; this policy fine-tunes the whole model")
        return AdaptersDisabled(self.peft_model)

    def plain_lm(self, same_layout: bool = False) -> PreTrainedModel:
        """The actor as a plain HF causal LM: ``lm`` itself, or for a LoRA policy a copy with the adapters merged.

        :param same_layout: the model must have the reference's layout, because its weights go into a copy of the
            reference (NLPO's masking model): a :class:`ConfigError` for a LoRA policy that adapts an output head tied
            to the input embeddings, whose merged model unties them.
        """
        if self.peft_model is None:
            return self.lm
        if same_layout and adapts_tied_head(self.peft_model):
            raise ConfigError("this LoRA policy adapts the output head, which the model ties to its input embeddings: "
                              "its merged weights do not fit a copy of the tied reference (NLPO's masking model); "
                              "leave the head out (--lora-target-modules all-linear)")
        return merged_copy(self.peft_model)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(model_name_or_path=self.model_name_or_path, temperature=self.temperature, share_trunk=self.share_trunk,
                    value_init=self.value_init, reward_model_path=self.reward_model_path,
                    lora=None if self.lora is None else self.lora.as_dict(), max_length_buckets=self.max_length_buckets)
        return data

    # ------------------------------------------------------------------------------------ core forward
    def _run(self, input_ids, attention_mask, position_ids, cache=None, critic_cache=None, logits_to_keep: int = 0):
        """Logits (of the last ``logits_to_keep`` positions; 0: all), values (all positions) and KV caches."""
        use_cache = cache is not False  # False: a full forward with no cache (the update); None: start a cache
        # HF's logits_to_keep runs the output head on those positions only (it is a vocabulary-wide matmul)
        keep = {"logits_to_keep": logits_to_keep} if logits_to_keep and self._lm_keeps_logits else {}
        # the hidden states are only asked for when the value head reads the actor's trunk (they cost memory)
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache,
                      output_hidden_states=self.critic_trunk is None, **keep,
                      **({} if cache in (None, False) else cache_kwargs(self.lm, cache)))
        if self.critic_trunk is None:
            hidden, new_critic_cache = out.hidden_states[-1], None
        else:
            critic = self.critic_trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                       use_cache=use_cache,
                                       **({} if critic_cache is None else cache_kwargs(self.critic_trunk, critic_cache)))
            hidden, new_critic_cache = critic.last_hidden_state, (output_cache(critic) if use_cache else None)
        # the head in its own dtype (a half-precision trunk would not multiply with a float32 head outside autocast),
        # values in float32 for GAE and the value loss
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        new_cache = output_cache(out) if use_cache else None
        # a model without logits_to_keep returned every position: cut to the same positions
        logits = out.logits if keep or not logits_to_keep else out.logits[:, -logits_to_keep:]
        # float32 for the log-softmax over the vocabulary (the PPO ratio compares log-probs of two passes, so their
        # rounding matters); the temperature belongs to the policy, so sampling and the update both see it
        return logits.float() / self.temperature, values, new_cache, new_critic_cache

    # ------------------------------------------------------------------ sequence interface (TokenPPO)
    def start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """First sampling step on left-padded prompts: next-token logits [B, V], values [B], caches."""
        # only the last column predicts the next token (left padding puts every row's last prompt token there)
        logits, values, cache, critic_cache = self._run(input_ids, attention_mask, positions(attention_mask), cache=None,
                                                        logits_to_keep=1)
        return logits[:, -1], values[:, -1], (cache, critic_cache)

    def advance(self, tokens: torch.Tensor, attention_mask: torch.Tensor, caches):
        """One incremental step with the KV caches; ``attention_mask`` covers everything seen so far."""
        cache, critic_cache = caches
        # one new token per row; its position id counts only the real tokens before it (left padding is skipped)
        logits, values, cache, critic_cache = self._run(tokens[:, None], attention_mask, positions(attention_mask)[:, -1:],
                                                        cache=cache, critic_cache=critic_cache)
        return logits[:, -1], values[:, -1], (cache, critic_cache)

    def evaluate_sequences(self, queries, query_mask, responses, response_mask, action_masks=None,
                           entropy_grad: bool = True):
        """One forward per sequence ``[query; response]``: log-probs, entropies and values of every response token.

        ``queries`` are left-padded [B, P]; returns three [B, T] tensors (values of the state before each token; entries
        past a response's end are not meaningful and must be masked). ``action_masks`` [B, T, V] restricts each step's
        distribution (NLPO). ``entropy_grad=False`` computes the entropies outside the autograd graph (for logging, when
        the loss has no entropy bonus): no [B, T, V] backward. Rows of very different lengths may run in length buckets
        (:mod:`rlhf_gym.agents.buckets`, ``max_length_buckets``), each forward cut to its bucket's longest response.
        """
        lengths = response_mask.sum(1)  # right-padded responses: a row's live tokens are its first `length` columns
        buckets = length_buckets(lengths, queries.shape[1], self.max_length_buckets)
        if len(buckets) == 1:
            return self._evaluate(queries, query_mask, responses, response_mask, action_masks, entropy_grad)
        outputs = []
        for rows in buckets:
            n = int(lengths[rows].max())
            used = int(query_mask[rows].any(0).long().argmax())  # left padding that no row of the bucket uses is cut
            outputs.append(self._evaluate(queries[rows, used:], query_mask[rows, used:], responses[rows, :n],
                                          response_mask[rows, :n], None if action_masks is None else action_masks[rows, :n],
                                          entropy_grad))
        # back to one [B, T] tensor per output, rows in their original order, zeros past each bucket's length
        inverse = torch.argsort(torch.cat(buckets))
        width = responses.shape[1]
        return tuple(torch.cat([F.pad(part[i], (0, width - part[i].shape[1])) for part in outputs])[inverse]
                     for i in range(3))

    def _evaluate(self, queries, query_mask, responses, response_mask, action_masks, entropy_grad):
        """:meth:`evaluate_sequences` in one forward pass."""
        prompt_len, n_tokens = queries.shape[1], responses.shape[1]
        # the output head runs on the positions that predict the response tokens only: the last T + 1 positions of
        # [query; response] less the very last (response_slice's rows), so the prompt's positions are skipped
        logits, values, _, _ = self._run(*query_response_inputs(queries, query_mask, responses, response_mask), cache=False,
                                         logits_to_keep=n_tokens + 1)
        # the last kept position predicts the token after the response: dropped. The NLPO masks are the rollout's, so
        # the log-probs are those of the masked distribution that sampled
        logits = apply_mask(logits[:, :-1], action_masks)
        logp_all = F.log_softmax(logits, dim=-1)
        logprobs = logp_all.gather(-1, responses[:, :, None]).squeeze(-1)  # log pi of the tokens taken  [B, T]
        with contextlib.nullcontext() if entropy_grad else torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logprobs, entropy, response_slice(values, prompt_len)

    # ------------------------------------------------------------ SB3 observation interface (slow path)
    def _last_position(self, obs: dict[str, torch.Tensor]):
        # SB3's path: right-padded observations, no cache: slow (a full forward per step) but exact, since causal
        # attention keeps the padding after the last real token from changing it
        input_ids, mask = obs["input_ids"].long(), obs["attention_mask"].long()
        if input_ids.dim() == 1:
            input_ids, mask = input_ids[None], mask[None]
        logits, values, _, _ = self._run(input_ids, mask, positions(mask), cache=False)
        last = (mask.sum(-1) - 1).clamp(min=0)  # right-padded: the last real token is at (number of tokens - 1)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return logits[rows, last], values[rows, last]

    def _distribution(self, logits: torch.Tensor, action_masks=None) -> CategoricalDistribution:
        if action_masks is not None:
            masks = torch.as_tensor(action_masks, device=logits.device).reshape(logits.shape).bool()
            logits = apply_mask(logits, masks)
        return self.action_dist.proba_distribution(action_logits=logits)

    def get_distribution(self, obs, action_masks=None) -> CategoricalDistribution:
        logits, _ = self._last_position(obs)
        return self._distribution(logits, action_masks)

    def forward(self, obs, deterministic: bool = False, action_masks=None):
        logits, values = self._last_position(obs)
        distribution = self._distribution(logits, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values[:, None], distribution.log_prob(actions)  # values [B, 1], as SB3's policies return them

    def evaluate_actions(self, obs, actions: torch.Tensor, action_masks=None):
        logits, values = self._last_position(obs)
        distribution = self._distribution(logits, action_masks)
        return values[:, None], distribution.log_prob(actions.reshape(-1)), distribution.entropy()

    def predict_values(self, obs) -> torch.Tensor:
        return self._last_position(obs)[1][:, None]

    def _predict(self, observation, deterministic: bool = False, action_masks=None) -> torch.Tensor:
        return self.get_distribution(observation, action_masks).get_actions(deterministic=deterministic)

    # ------------------------------------------------------------------------------------ export
    def export_pretrained(self, directory: str | Path, tokenizer=None) -> None:
        """Write the actor as a plain HF model directory (with its tokenizer) that ``pipeline`` loads; a LoRA policy's
        adapters are merged into the weights (in a copy: training can go on); the tokenizer is saved so that generated
        text keeps its spaces (:func:`rlhf_gym.tokenizers.save_tokenizer_for_export`)."""
        if tokenizer is None:
            if not isinstance(self.model_name_or_path, str):
                raise ConfigError("export_pretrained needs the tokenizer of a policy built from a model object")
            tokenizer = AutoTokenizer.from_pretrained(self.model_name_or_path)
        with write_errors_name(directory):
            self.plain_lm().save_pretrained(directory)
            save_tokenizer_for_export(tokenizer, directory)


class MaskableTransformerPolicy(TransformerPolicy, MaskableActorCriticPolicy):
    """:class:`TransformerPolicy` for ``sb3_contrib.MaskablePPO``: the same model, with masked distributions.

    MaskablePPO checks ``isinstance(policy, MaskableActorCriticPolicy)`` and passes ``action_masks`` to
    ``forward``, ``evaluate_actions`` and ``predict``; every method it calls is TransformerPolicy's.
    """
