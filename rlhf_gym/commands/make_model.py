"""Build an untrained causal LM with its own tokenizer (byte-level BPE, Llama or GPT-2) from a task's text, offline.

The model a practitioner brings, made on this machine: a byte-level BPE tokenizer learnt from the task's prompts and
demonstrations, and a randomly initialised Llama (or GPT-2) on it, saved with ``save_pretrained`` (model, tokenizer and
its chat template). Fine-tune it with ``rlhf-gym sft``, then train it with any algorithm (docs/byo_model.md):

    rlhf-gym make-model --task lists --out-dir models/llama_bpe
    rlhf-gym make-model --task lists --arch gpt2 --tokenizer task --out-dir models/gpt2_words
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks import task_names

TOKENIZERS = ("bpe", "task")


@dataclass
class Args:
    task: str = arg("lists", "the task whose language the tokenizer learns", choices=task_names)
    out_dir: str = arg("models/llama_bpe", "where the model and tokenizer are saved (save_pretrained format)")
    arch: str = arg("llama", "llama (RMSNorm, rotary positions, SwiGLU, grouped-query attention) or gpt2",
                    choices=("llama", "gpt2"))
    tokenizer: str = arg("bpe", "bpe (a byte-level BPE learnt from the task's text, with a chat template) or task (the "
                                "task's own word-level tokenizer)", choices=TOKENIZERS)
    vocab_size: int = arg(512, "BPE: tokens in all (256 bytes, the special tokens, the merges)")
    n_texts: int = arg(20000, "BPE: demonstrations the tokenizer learns from (beside the task's train prompts)")
    width: int = arg(64, "hidden size")
    layers: int = arg(2, "transformer blocks")
    heads: int = arg(4, "attention heads (llama: half as many key/value heads)")
    positions: int = arg(256, "context length in tokens")
    seed: int = arg(0, "seed of the weights and of the sampled texts")
    overwrite: bool = arg(False, "replace what --out-dir holds")

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ConfigError(f"--task must be one of {', '.join(task_names())}, got {self.task!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        if self.arch not in ("llama", "gpt2"):
            raise ConfigError(f"--arch must be llama or gpt2, got {self.arch!r}")
        check_positive_options(self, ("vocab_size", "n_texts", "width", "layers", "heads", "positions"))
        if self.width % self.heads:
            raise ConfigError(f"--width {self.width} must be a multiple of --heads {self.heads}")
        out_dir = Path(self.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out-dir {out_dir}: exists and is not a directory")
        if out_dir.is_dir() and any(out_dir.iterdir()):
            if not self.overwrite:
                raise ConfigError(f"--out-dir {out_dir} is not empty; pass --overwrite to replace it")
            # --overwrite replaces a model, never a directory of something else
            if not (out_dir / "config.json").is_file():
                raise ConfigError(f"--out-dir {out_dir} holds no model (no config.json); --overwrite replaces a model only")


def main(args: Args) -> dict:
    """Build, save (into a staging directory that replaces ``--out-dir`` at the end, so a failure leaves no half-written
    model) and describe the model."""
    import torch

    from rlhf_gym.files import staged_directory
    from rlhf_gym.local_models import causal_lm, corpus, train_byte_level_bpe
    from rlhf_gym.tasks import world_of

    if args.tokenizer == "bpe":
        tokenizer = train_byte_level_bpe(corpus(args.task, args.n_texts, args.seed), args.vocab_size)
    else:
        tokenizer = world_of(args.task).tokenizer()
    torch.manual_seed(args.seed)
    model = causal_lm(args.arch, tokenizer, args.width, args.layers, args.heads, args.positions)
    out_dir = Path(args.out_dir)
    # the previous model stays until the new one is written whole (Args refused a directory that holds no model)
    with staged_directory(out_dir, "config.json", "saved model") as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    summary = {"out_dir": str(out_dir), "architecture": type(model).__name__, "parameters": model.num_parameters(),
               "tokenizer": args.tokenizer, "vocabulary": len(tokenizer),
               "chat_template": tokenizer.chat_template is not None}
    print(f"{summary['architecture']} of {summary['parameters']:,} parameters on a {args.tokenizer} tokenizer of "
          f"{summary['vocabulary']} tokens -> {out_dir}")
    return summary
