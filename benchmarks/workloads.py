"""The benchmarked work: model sizes and PPO shapes, the shared PPO hyper-parameters, and the locally built models.

Models are built from configs (random-init ``GPT2LMHeadModel`` policy and ``GPT2ForSequenceClassification`` reward
model of the same size, a word-level tokenizer); no hub.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

# The same PPO hyper-parameters on every side (they do not change the amount of work).
LEARNING_RATE, BETA, VF_COEF, CLIP_RANGE, GAE_LAMBDA = 1e-5, 0.05, 0.1, 0.2, 0.95
LORA = {"r": 8, "alpha": 16}
"""The ``ours-lora`` system's adapters (:class:`agents.lora.LoraSettings`): rank 8 on every linear layer and the head."""


@dataclass(frozen=True)
class Workload:
    """One benchmark point: the model size and the PPO shape, identical for every system."""

    name: str
    n_layer: int
    n_embd: int
    vocab_size: int
    prompt_length: int = 8
    response_length: int = 24
    rollout_batch: int = 64  # responses per PPO iteration
    minibatches: int = 4  # optimizer steps per epoch
    epochs: int = 4
    n_positions: int = 128

    @property
    def optimizer_steps(self) -> int:
        return self.minibatches * self.epochs

    @property
    def update_tokens(self) -> int:
        """Tokens through forward + backward per iteration when the update runs one pass per whole sequence."""
        return self.epochs * self.rollout_batch * (self.prompt_length + self.response_length)

    def describe(self) -> str:
        return (f"{self.n_layer} layers, width {self.n_embd}, vocabulary {self.vocab_size}; prompt {self.prompt_length}, "
                f"response {self.response_length}, rollout batch {self.rollout_batch}, {self.minibatches} minibatches x "
                f"{self.epochs} epochs = {self.optimizer_steps} optimizer steps per iteration")


WORKLOADS = {
    "quick": Workload("quick", n_layer=2, n_embd=32, vocab_size=64, prompt_length=4, response_length=8, rollout_batch=8,
                      minibatches=2, epochs=2),
    "small": Workload("small", n_layer=4, n_embd=128, vocab_size=512),
    "medium": Workload("medium", n_layer=6, n_embd=256, vocab_size=2048),
    "gpt2": Workload("gpt2", n_layer=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


@dataclass(frozen=True)
class ModelFiles:
    """The saved policy (also the reference) and reward model, and the prompts, of one workload."""

    policy: str
    reward: str
    prompts: list[str]


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer ``<pad>, <eos>, <unk>, w3, ..., w{vocab_size - 1}`` (one id per word)."""
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(len(specials), vocab_size)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_models(workload: Workload, directory: Path, seed: int) -> ModelFiles:
    """Random-init GPT-2 policy and reward model of the workload's size, saved with their tokenizer, and prompts
    of exactly ``prompt_length`` words (so that no system pads them)."""
    tokenizer = word_tokenizer(workload.vocab_size)
    config = {"vocab_size": workload.vocab_size, "n_positions": workload.n_positions, "n_embd": workload.n_embd,
              "n_layer": workload.n_layer, "n_head": max(1, workload.n_embd // 64),
              "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    policy, reward = directory / "policy", directory / "reward_model"
    GPT2LMHeadModel(GPT2Config(**config)).save_pretrained(policy)
    GPT2ForSequenceClassification(GPT2Config(**config, num_labels=1)).save_pretrained(reward)
    for path in (policy, reward):
        tokenizer.save_pretrained(path)
    rng = random.Random(seed)
    n_prompts = max(512, 2 * workload.rollout_batch)
    prompts = [" ".join(f"w{rng.randrange(3, workload.vocab_size)}" for _ in range(workload.prompt_length))
               for _ in range(n_prompts)]
    return ModelFiles(str(policy), str(reward), prompts)
