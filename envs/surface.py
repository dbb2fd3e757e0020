"""The public surface of the RLHF environments: what agents, scripts and wrappers may rely on.

Both :class:`rlhf_gym.envs.RLHFEnv` and :class:`rlhf_gym.envs.RLHFVectorEnv` have it (reach it through ``env.unwrapped``).
Everything else on an env (``_setup``, ``_episodes``) is internal and may change without notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlhf_gym.errors import ConfigError
from rlhf_gym.scoring import RewardFn
from rlhf_gym.tasks import Task

from .config import RLHFEnvConfig
from .episodes import EpisodeBatch
from .setup import EnvSetup


def check_reset_options(options: Any, known: tuple[str, ...]) -> dict:
    """``reset``'s ``options`` as a dict (None: ``{}``); :class:`ConfigError` for anything else or a key not in ``known``.

    An unknown key is refused, not ignored: a misspelt ``prompt_index`` would otherwise reset to a random prompt.
    """
    names = ", ".join(map(repr, known))
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"options must be a dict (keys {names}), got {type(options).__name__}")
    unknown = [key for key in options if key not in known]
    if unknown:
        raise ConfigError(f"unknown reset option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                          f"known: {names}")
    return dict(options)


def is_index(value: Any) -> bool:
    """A Python or NumPy integer, not a bool (NumPy would read True as index 1, 2.5 as 2)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class RLHFEnvSurface:
    """Read-only views of the env's world, the log-prob channel, the KL controller and NLPO masks."""

    # A mixin: RLHFEnv and RLHFVectorEnv set these two. Everything below is a property without a setter (or a
    # checked method) because the episode state depends on them: a tokenizer or budget swapped mid-run would make
    # the stored token ids and lengths mean something else.
    _setup: EnvSetup
    _episodes: EpisodeBatch

    # ------------------------------------------------------------------------------ what the env is
    @property
    def config(self) -> RLHFEnvConfig:
        """The configuration the env was built from."""
        return self._setup.config

    @property
    def task(self) -> Task | None:
        """The task (prompt split, gold reward, well-formedness), or None for an env built from explicit models."""
        return self._setup.task

    @property
    def tokenizer(self):
        """The policy's tokenizer; actions are its token ids."""
        return self._setup.tokenizer

    @property
    def ref_model(self):
        """The frozen reference policy ``pi_ref`` (eval mode, no gradients): the KL anchor and a policy's default start."""
        return self._setup.ref_model

    def share_reference(self, model) -> None:
        """Score against ``model`` as ``pi_ref`` from now on, in place of :attr:`ref_model` (and of the NLPO masking
        model where that is the reference itself).

        For an agent whose policy is built on the reference's own weights: a LoRA policy (Hu et al. 2021) passes its
        base model with the adapters off (``rlhf_gym.agents.lora.AdaptersDisabled``), so one copy of the weights serves both.
        ``model`` must compute the same function as the reference it replaces (the env cannot check that): the same
        tokenizer, and no gradients needed. Only its output vocabulary is checked.
        """
        # the one thing that can be checked cheaply: another vocabulary width would give log-probs over another
        # support, or fail on action ids past it
        vocab = model.get_output_embeddings().weight.shape[0]
        if vocab != self._setup.vocab_size:
            raise ConfigError(f"the shared reference has a vocabulary of {vocab}, the env's actions {self._setup.vocab_size}")
        mask = self._setup.mask
        # with mask_model="reference" the masking model is the reference object itself, so it follows the swap (and
        # the old copy can be freed); a "policy_copy" masking model is its own copy and stays as it is
        if mask is not None and mask.model is self._setup.ref_model:
            mask.model = model
        self._setup.ref_model = model

    @property
    def reward_fn(self) -> RewardFn:
        """``r_phi`` as ``f(prompts, responses) -> scores`` (a :class:`rlhf_gym.RewardModel` for HF reward models)."""
        return self._setup.reward_fn

    @property
    def prompts(self) -> list[str]:
        """The training prompts, indexed by ``info["prompt_index"]``."""
        return self._setup.prompts

    @property
    def prompt_ids(self) -> list[list[int]]:
        """The token ids of each prompt (after any truncation), without special tokens."""
        return self._setup.prompt_ids

    @property
    def max_new_tokens(self) -> int:
        """The response budget: an episode is truncated after this many tokens."""
        return self._setup.max_new_tokens

    @property
    def stop_token_id(self) -> int:
        """The token that ends an episode (``terminated``)."""
        return self._setup.stop_token_id

    @property
    def pad_token_id(self) -> int:
        """The padding token of observations."""
        return self._setup.pad_token_id

    @property
    def temperature(self) -> float:
        """Temperature of the reference log-probs (agents should sample at the same temperature)."""
        return self._setup.config.temperature

    @property
    def vocab_size(self) -> int:
        """Size of the action space ``Discrete(vocab_size)``."""
        return self._setup.vocab_size

    @property
    def device(self) -> torch.device:
        """Where the reference and the reward model run; the episode state (NumPy, on the host) is copied there for
        their passes."""
        return self._setup.device

    # ---------------------------------------------------------------------------------- KL leash
    @property
    def kl_controller(self):
        """The beta controller; ``state_dict()`` / ``load_state_dict()`` save and restore it."""
        # exposed (not only beta) because an adaptive beta is training state: a resumed run must restore it, or it
        # restarts from the initial beta
        return self._setup.kl_controller

    @property
    def beta(self) -> float:
        """The current KL coefficient."""
        # read through the controller every time: an adaptive controller changes it after each scored batch
        return self._setup.kl_controller.beta

    # -------------------------------------------------------------------------------- NLPO masks
    @property
    def has_action_masks(self) -> bool:
        """Whether ``action_masks()`` is available (the env was built with ``mask_top_p`` or ``mask_top_k``)."""
        return self._setup.mask is not None

    @property
    def mask_model_refreshable(self) -> bool:
        """Whether the masking model is a copy that :meth:`refresh_mask_model` updates (``mask_model="policy_copy"``)."""
        return self._setup.mask is not None and self._setup.mask.refreshable

    def refresh_mask_model(self, model) -> None:
        """Load ``model``'s weights into the NLPO masking model."""
        self._episodes.refresh_mask_model(model)

    def _masks(self, as_tensor: bool) -> Any:
        # NumPy is what Gymnasium-style callers (sb3-contrib's MaskablePPO) expect; an agent that applies the masks on
        # the device (TokenPPO) asks for the tensor and saves a [N, V] round trip through the host
        masks = self._episodes.action_masks()
        return masks if as_tensor else masks.cpu().numpy()

