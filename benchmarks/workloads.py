"""The benchmarked work: model sizes and PPO shapes, the shared PPO hyper-parameters, and the models.

Synthetic workloads build their models from configs (random-init ``GPT2LMHeadModel`` policy and
``GPT2ForSequenceClassification`` reward model of the same size, a word-level tokenizer; no hub); their responses are
forced to the full length, except on the ``long-*`` workloads, whose policy ends each response at EOS with a fixed
chance per token (``stop_rate``), so that lengths vary as real ones do and most responses end well before the budget.
The ``reviews`` workload is the real one: the embedded default task of ``RLHF-v0`` (its SFT policy, reward model and
train prompts) in the default training shape of ``scripts/train_agent.py``, where responses end at the task's EOS.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks import load_task

if TYPE_CHECKING:  # the models are built with torch and transformers; the workloads (and --help) need neither
    from transformers import PreTrainedTokenizerFast

# The same PPO hyper-parameters on every side (they do not change the amount of work).
LEARNING_RATE, BETA, VF_COEF, CLIP_RANGE, GAE_LAMBDA = 1e-5, 0.05, 0.1, 0.2, 0.95
LORA = {"r": 8, "alpha": 16}
"""The ``ours-lora`` system's adapters (:class:`rlhf_gym.agents.lora.LoraSettings`): rank 8 on every linear layer and
the head."""


@dataclass(frozen=True)
class Workload:
    """One benchmark point: the model size and the PPO shape, identical for every system.

    ``task``: the embedded task whose SFT policy (also the reference), reward model and train prompts are used instead
    of random-init models (the sizes here must be its policy's); its responses end at the task's EOS, so the response
    length is a budget, not the length.

    ``stop_rate``: a synthetic workload whose random-init policy samples EOS with about this chance at every token (its
    final layer norm's bias raises the EOS logit: :func:`raise_stop_logit`), so that responses end at EOS after a
    geometric number of tokens (mean about ``1 / stop_rate``), cut at the budget; None: every response has the full
    length.
    """

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
    task: str | None = None
    stop_rate: float | None = None

    @property
    def ends_at_eos(self) -> bool:
        """Whether responses end at EOS (a task's, or a ``stop_rate`` policy's), so that their length varies."""
        return self.task is not None or self.stop_rate is not None

    @property
    def optimizer_steps(self) -> int:
        return self.minibatches * self.epochs

    @property
    def update_tokens(self) -> int:
        """Tokens through forward + backward per iteration when the update runs one pass per whole full-length sequence
        (systems count the tokens they actually process on a ``task`` workload: :mod:`rlhf_gym.benchmarks.tally`)."""
        return self.epochs * self.rollout_batch * (self.prompt_length + self.response_length)

    def describe(self) -> str:
        models = (f"{self.n_layer} layers, width {self.n_embd}, vocabulary {self.vocab_size}" if self.task is None else
                  f"the {self.task} task's SFT policy ({self.n_layer} layers, width {self.n_embd}, vocabulary "
                  f"{self.vocab_size}), reward model and train prompts")
        response = (f"response {self.response_length}" if not self.ends_at_eos else
                    f"responses of at most {self.response_length} tokens ending at EOS")
        if self.stop_rate is not None:
            response += f" with chance {self.stop_rate:.3g} per token"
        return (f"{models}; prompt {self.prompt_length}, {response}, rollout batch {self.rollout_batch}, "
                f"{self.minibatches} minibatches x {self.epochs} epochs = {self.optimizer_steps} optimizer steps per "
                "iteration")


WORKLOADS = {
    "quick": Workload("quick", n_layer=2, n_embd=32, vocab_size=64, prompt_length=4, response_length=8, rollout_batch=8,
                      minibatches=2, epochs=2),
    "small": Workload("small", n_layer=4, n_embd=128, vocab_size=512),
    "medium": Workload("medium", n_layer=6, n_embd=256, vocab_size=2048),
    "gpt2": Workload("gpt2", n_layer=12, n_embd=768, vocab_size=50257, n_positions=1024),
    # GPT-2's size on a CPU: issue 31's prompt of 32 and response of 64, a rollout of 8 in 2 minibatches x 2 epochs
    "gpt2-cpu": Workload("gpt2-cpu", n_layer=12, n_embd=768, vocab_size=50257, prompt_length=32, response_length=64,
                         rollout_batch=8, minibatches=2, epochs=2, n_positions=1024),
    # long responses of varied length: small's model, EOS with chance 1/40 per token (mean 40), budgets of 128 and 256
    "long-128": Workload("long-128", n_layer=4, n_embd=128, vocab_size=512, response_length=128, n_positions=512,
                         stop_rate=1 / 40),
    "long-256": Workload("long-256", n_layer=4, n_embd=128, vocab_size=512, response_length=256, n_positions=512,
                         stop_rate=1 / 40),
    # RLHF-v0's task in the shape of `python scripts/train_agent.py`: 64 responses per rollout (--n-envs), minibatches of
    # 16 (--batch-size), 4 epochs (ppo's --n-epochs), a budget of 24 tokens (the task's max_new_tokens)
    "reviews": Workload("reviews", n_layer=2, n_embd=128, vocab_size=262, prompt_length=3, n_positions=64,
                        task="reviews"),
}


@dataclass(frozen=True)
class ModelFiles:
    """The saved policy (also the reference) and reward model, and the prompts, of one workload."""

    policy: str
    reward: str
    prompts: list[str]


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer ``<pad>, <eos>, <unk>, w3, ..., w{vocab_size - 1}`` (one id per word)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(len(specials), vocab_size)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_models(workload: Workload, directory: Path, seed: int) -> ModelFiles:
    """Random-init GPT-2 policy and reward model of the workload's size, saved with their tokenizer, and prompts
    of exactly ``prompt_length`` words (so that no system pads them); for a ``task`` workload, the task's files."""
    if workload.task is not None:
        return task_models(workload)
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    tokenizer = word_tokenizer(workload.vocab_size)
    config = {"vocab_size": workload.vocab_size, "n_positions": workload.n_positions, "n_embd": workload.n_embd,
              "n_layer": workload.n_layer, "n_head": max(1, workload.n_embd // 64),
              "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    policy, reward = directory / "policy", directory / "reward_model"
    lm = GPT2LMHeadModel(GPT2Config(**config))
    if workload.stop_rate is not None:
        raise_stop_logit(lm, tokenizer.eos_token_id, workload.stop_rate)
    lm.save_pretrained(policy)
    GPT2ForSequenceClassification(GPT2Config(**config, num_labels=1)).save_pretrained(reward)
    for path in (policy, reward):
        tokenizer.save_pretrained(path)
    rng = random.Random(seed)
    n_prompts = max(512, 2 * workload.rollout_batch)
    prompts = [" ".join(f"w{rng.randrange(3, workload.vocab_size)}" for _ in range(workload.prompt_length))
               for _ in range(n_prompts)]
    return ModelFiles(str(policy), str(reward), prompts)


def raise_stop_logit(lm, eos_id: int, stop_rate: float) -> None:
    """Give a random-init GPT-2 about ``stop_rate`` chance of EOS per token, in its saved weights (so every system
    samples the same model).

    The logits are ``ln_f(h) @ wte.T``, and at init ``|logit| << 1`` for every token: sampling is near-uniform over the
    ``V`` ids. A final layer-norm bias ``b = c * e / |e|^2`` (``e``: EOS's embedding row) adds exactly ``c`` to EOS's
    logit (and ``c * cos(e, e_j) |e_j| / |e|``, near 0, to the others'), and ``c = log(stop_rate * (V - 1) /
    (1 - stop_rate))`` makes EOS's share of a uniform softmax ``stop_rate``.
    """
    import math

    import torch

    vocab = lm.config.vocab_size
    embedding = lm.get_output_embeddings().weight[eos_id].detach()
    lift = math.log(stop_rate * (vocab - 1) / (1 - stop_rate))
    with torch.no_grad():
        lm.transformer.ln_f.bias.copy_(lift * embedding / embedding.dot(embedding))


def task_models(workload: Workload) -> ModelFiles:
    """The files of ``workload.task``: its SFT policy directory (policy and reference), its reward model directory and
    its train prompts, checked against the workload's sizes, response budget and prompt length (all prompts of that
    length: no system pads them).

    :raises ConfigError: if the task's policy, budget or prompts do not have the workload's shape.
    """
    task = load_task(workload.task)
    config = json.loads((task.policy_dir / "config.json").read_text())
    sizes = ("n_layer", "n_embd", "vocab_size", "n_positions")
    actual = {**{key: config[key] for key in sizes}, "response_length": task.max_new_tokens}
    expected = {**{key: getattr(workload, key) for key in sizes}, "response_length": workload.response_length}
    if actual != expected:
        raise ConfigError(f"task {task.name!r} (policy and response budget) is not the {workload.name!r} workload: "
                          f"{actual} != {expected}")
    tokenizer = task.load_tokenizer()
    lengths = {len(ids) for ids in tokenizer(task.train_prompts, add_special_tokens=False)["input_ids"]}
    if lengths != {workload.prompt_length}:
        raise ConfigError(f"task {task.name!r}'s train prompts have {sorted(lengths)} tokens, the {workload.name!r} "
                          f"workload {workload.prompt_length}")
    return ModelFiles(str(task.policy_dir), str(task.reward_dir), list(task.train_prompts))
