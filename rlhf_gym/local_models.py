"""Untrained causal LMs and tokenizers built on this machine from a task's text: a practitioner's model, without a hub.

"Bring your own model" means a tokenizer that is not the task's word-level one. To test that path offline, this module
trains a **byte-level BPE** tokenizer (GPT-2's and Llama 3's kind, Sennrich et al. 2016; Radford et al. 2019) on a
task's text with the ``tokenizers`` library and builds a small **Llama** (Touvron et al. 2023: RMSNorm, rotary
positions, SwiGLU, grouped-query attention) or GPT-2 on it, saved in ``save_pretrained`` format: what
``AutoModelForCausalLM.from_pretrained`` loads from a hub id, at toy sizes.

The tokenizer has a chat template (:data:`CHAT_TEMPLATE`), so conversational data can be used with it, and the special
tokens ``<s>`` (BOS), ``</s>`` (EOS), ``<pad>``. It adds no special token when encoding (no post-processor): rlhf-gym
encodes prompts with ``add_special_tokens=False`` everywhere, and a template writes BOS where it wants one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .errors import ConfigError
from .tasks import world_of

BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
ARCHITECTURES = ("llama", "gpt2")

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""``<s><|user|> hi <|assistant|> hello</s>``: one role token before each turn, EOS after the assistant's (the token
that ends an episode in the env), and the assistant's role token as the generation prompt."""


def corpus(task: str, n_texts: int, seed: int = 0) -> list[str]:
    """``n_texts`` texts of ``task``'s language: its train prompts and its generator's demonstrations
    (``prompt response``), as the task build samples them."""
    world = world_of(task)
    rng = random.Random(seed)
    train_prompts = world.prompt_split()[0]
    return train_prompts + [" ".join(world.sample_text(rng)) for _ in range(n_texts)]


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens (the 256 byte symbols, the merges, the special tokens)
    learnt from ``texts``, with :data:`CHAT_TEMPLATE`.

    Byte level: any string encodes (no unknown token); a word's leading space is part of its token (``Ġword``), so
    a response encoded on its own after the prompt, with its leading space, decodes back to the same text.
    """
    special = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *ROLE_TOKENS]
    if vocab_size < 256 + len(special):
        raise ConfigError(f"--vocab-size {vocab_size}: a byte-level BPE needs at least {256 + len(special)} tokens "
                          "(256 bytes and the special tokens)")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                                        pad_token=PAD_TOKEN, additional_special_tokens=list(ROLE_TOKENS),
                                        clean_up_tokenization_spaces=False, model_max_length=1024)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def causal_lm(architecture: str, tokenizer: PreTrainedTokenizerFast, width: int, layers: int, heads: int = 4,
              positions: int = 256):
    """A randomly initialised causal LM on ``tokenizer``'s vocabulary (initialise under ``torch.manual_seed``).

    ``llama``: ``heads`` query heads sharing :func:`key_value_heads` key/value heads (grouped-query attention), a
    SwiGLU feed-forward of ``8/3 * width`` rounded to 8, tied embeddings. ``gpt2``: GPT-2's blocks, dropout off.
    """
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if architecture == "llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=-(-8 * width // 24) * 8,
                             num_hidden_layers=layers, num_attention_heads=heads,
                             num_key_value_heads=key_value_heads(heads), max_position_embeddings=positions,
                             tie_word_embeddings=True, **ids)
        return LlamaForCausalLM(config)
    if architecture == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids)
        return GPT2LMHeadModel(config)
    raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")


def key_value_heads(heads: int) -> int:
    """The key/value heads of grouped-query attention for ``heads`` query heads: the largest divisor of ``heads`` that
    is at most half of it (each key/value head serves the same number of query heads), 1 for one head."""
    return max(d for d in range(1, max(1, heads // 2) + 1) if heads % d == 0)
