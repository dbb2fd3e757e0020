"""Small GPT-2-style models built from a config, with no model hub: the embedded task's policy and reward models.

GPT-2 (Radford et al. 2019) at toy sizes on a task's own tokenizer; dropout is off, so training is deterministic for
a seed. Initialise under ``torch.manual_seed``: the weights are drawn when the model is built.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerBase

from .reward_model import RewardModel


def gpt2_config(tokenizer: PreTrainedTokenizerBase, width: int, layers: int, heads: int = 4, positions: int = 64,
                **overrides) -> GPT2Config:
    """A ``width`` x ``layers`` GPT-2 config on ``tokenizer``'s vocabulary (its EOS as BOS and EOS), dropout off."""
    return GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **overrides)


def gpt2_reward_model(tokenizer: PreTrainedTokenizerBase, width: int, layers: int, heads: int = 4,
                      device: str | torch.device = "cpu", pooling: str = "last") -> RewardModel:
    """A randomly initialised ``GPT2ForSequenceClassification(num_labels=1)`` on ``tokenizer``, as a :class:`RewardModel`
    reading its score by ``pooling`` (one of :data:`~rlhf_gym.reward_settings.REWARD_POOLINGS`)."""
    model = GPT2ForSequenceClassification(gpt2_config(tokenizer, width, layers, heads, num_labels=1))
    return RewardModel(model.to(device), tokenizer, pooling=pooling)
