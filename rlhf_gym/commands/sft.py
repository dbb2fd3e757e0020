"""Supervised fine-tuning of any causal LM on demonstrations (JSONL, a saved dataset, or a task's generator).

    rlhf-gym sft --data reviews                              # a fresh small GPT-2 on the reviews task's demonstrations
    rlhf-gym sft --data demos.jsonl --model gpt2 --max-length 512 --batch-size 8
    rlhf-gym sft --data chats.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --packing --max-length 1024

Demonstrations are records of TRL's formats (rlhf_gym.sft_data): prompt-completion ``{"prompt", "completion"}``,
language modelling ``{"text"}``, or conversational ``{"messages": [...]}`` (and prompt / completion as message lists,
rendered by the tokenizer's chat template). A task name as ``--data`` (reviews, lists, ...) draws ``--n-demonstrations``
from its generator as the task build does. Prompt and completion are tokenised apart without special tokens (no BOS:
what the env feeds the policy at RL time), the EOS is appended to every completion, and the loss is on the completion
tokens only (``--no-completion-only-loss``: every token). ``--packing`` packs whole examples into blocks of
``--max-length`` tokens, each example attending to itself only (rlhf_gym.sft). ``--eval-fraction`` of the
demonstrations are held out and their loss reported after each epoch.

Writes ``<out-dir>/<data>__<exp-name>__<seed>__<time>/``: args.json, TensorBoard logs (train/loss, train/learning_rate,
train/grad_norm, eval/loss), the fine-tuned model and its tokenizer (``policy/``, written whole or not at all) and
summary.json (final train and held-out loss; with a task as ``--data`` or ``--task``, the gold reward and the
well-formed share of samples on held-out prompts before and after). A malformed record stops the run with its file and
line and the field; so does a NaN/inf loss, and a model with NaN/inf parameters is never saved.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.checks import check_option, check_positive_options, check_seed
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.files import atomic_write_json, create_run_directory
from rlhf_gym.sft_data import LR_SCHEDULES, SFTConfig
from rlhf_gym.tasks import task_names

if TYPE_CHECKING:  # torch and transformers only once the command runs: --help stays fast
    from rlhf_gym.sft_data import Demonstration, Example
    from rlhf_gym.tasks.world import TaskWorld

PRETRAINED_LEARNING_RATE = 2e-5
"""``--learning-rate`` with ``--model``: TRL's SFTConfig default (a pretrained model)."""


@dataclass
class Args:
    data: str = arg("reviews", "demonstrations: a JSONL file, a saved datasets directory, or a task name (its "
                               "generator's demonstrations)")
    model: str | None = arg(None, "HF causal LM (hub id or directory) to fine-tune (default: a fresh small GPT-2 on the "
                                  "task's word-level tokenizer)")
    task: str | None = arg(None, "the task whose gold reward scores samples of held-out prompts before and after, and "
                                 "whose tokenizer the default model reads (default: --data's, when it is a task)",
                           choices=task_names)
    n_demonstrations: int | None = arg(None, "with a task as --data: demonstrations to draw (default: the task build's "
                                             "n_sft_texts)")
    width: int | None = arg(None, "the default model's width (default: the task build's policy_width)")
    layers: int | None = arg(None, "the default model's transformer layers (default: the task build's policy_layers)")
    epochs: int = arg(SFTConfig.epochs, "passes over the demonstrations")
    batch_size: int = arg(SFTConfig.batch_size, "examples per optimizer step (with --packing: blocks)")
    learning_rate: float | None = arg(None, f"peak AdamW learning rate (default: {SFTConfig.learning_rate:g} for the "
                                            f"default fresh model, as the task build; {PRETRAINED_LEARNING_RATE:g} with "
                                            "--model, TRL's)")
    lr_schedule: str = arg(SFTConfig.lr_schedule, "after the warm-up: linear decay to 0, or constant",
                           choices=LR_SCHEDULES)
    warmup_ratio: float = arg(SFTConfig.warmup_ratio, "share of the steps over which the learning rate rises from 0")
    weight_decay: float = arg(SFTConfig.weight_decay, "AdamW weight decay (every parameter)")
    max_length: int | None = arg(None, "tokens per example, longer ones cut from the right; the block length with "
                                       "--packing (default: the model's context length)")
    completion_only_loss: bool = arg(SFTConfig.completion_only_loss, "learn the completion tokens only (a text "
                                                                     "record's: all); --no-completion-only-loss: every "
                                                                     "token")
    packing: bool = arg(SFTConfig.packing, "pack whole examples into blocks of --max-length tokens (each attends to "
                                           "itself only)")
    eval_fraction: float = arg(0.05, "share of the demonstrations held out for the eval loss (0: none)")
    n_eval_prompts: int = arg(256, "held-out prompts of the task whose samples measure the gold reward before and after")
    out_dir: str = arg("runs", "where run directories are created")
    exp_name: str = arg("sft", "name of this experiment (part of the run directory's name)")
    seed: int = arg(0, "seed of the demonstrations drawn from a task, the split, the initialisation and the shuffling")
    device: str = arg("auto", "cpu, cuda[:N] or auto (CUDA when present)")
    progress_bar: bool = arg(True, "show a progress bar")

    def __post_init__(self) -> None:
        check_positive_options(self, ("n_demonstrations", "width", "layers", "epochs", "batch_size", "learning_rate",
                                      "max_length", "n_eval_prompts"))
        check_option("weight_decay", self.weight_decay)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.task is not None and self.task not in task_names():
            raise ConfigError(f"--task must be one of {', '.join(task_names())}, got {self.task!r}")
        if self.model is not None:
            given = [f"--{name}" for name in ("width", "layers") if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: options of the default model; --model brings its own")
        if self.n_demonstrations is not None and self.data_task is None:
            raise ConfigError(f"--n-demonstrations: only with a task as --data (a file gives its own), got {self.data!r}")
        if self.data_task is not None and self.task not in (None, self.data_task):
            raise ConfigError(f"--task {self.task}: the demonstrations are the {self.data_task} task's")
        if self.model is None and self.task_name is None:
            raise ConfigError("the default fresh model reads a task's tokenizer: pass --task, or --model with a tokenizer "
                              "of its own")
        check_seed(self.seed)

    @property
    def data_task(self) -> str | None:
        """The task named by ``--data`` (a path of that name wins), else None."""
        return self.data if self.data in task_names() and not Path(self.data).exists() else None

    @property
    def task_name(self) -> str | None:
        """The task of the gold figures and of the default model's tokenizer: ``--task`` or ``--data``'s."""
        return self.task or self.data_task

    def sft_config(self, max_length: int | None) -> SFTConfig:
        """The loop's settings, with the ``max_length`` in force (``--max-length`` or the model's context length)."""
        learning_rate = self.learning_rate or (PRETRAINED_LEARNING_RATE if self.model else SFTConfig.learning_rate)
        return SFTConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=learning_rate,
                         weight_decay=self.weight_decay, seed=self.seed, lr_schedule=self.lr_schedule,
                         warmup_ratio=self.warmup_ratio, completion_only_loss=self.completion_only_loss,
                         packing=self.packing, max_length=max_length)


def load_demonstrations(args: Args, world: TaskWorld | None) -> list[Demonstration]:
    """``--data``'s demonstrations: a task's, drawn as the build draws them, or a file's / saved dataset's."""
    from rlhf_gym.sft_data import read_demonstrations, task_demonstrations
    from rlhf_gym.tasks.building import BuildConfig

    if args.data_task is not None:
        return task_demonstrations(world, args.n_demonstrations or BuildConfig.for_world(world).n_sft_texts, args.seed)
    if not Path(args.data).exists():
        raise MissingFileError(f"--data: no such file, directory or task: {args.data} (tasks: {', '.join(task_names())})")
    return read_demonstrations(args.data)


def model_and_tokenizer(args: Args, world: TaskWorld | None):
    """``(model, tokenizer, description)``: ``--model`` and its tokenizer, or a fresh GPT-2 on the task's tokenizer
    (initialised after ``seed_everything(seed)``, as the task build's policy). A tokenizer without a padding token pads
    with its EOS; one without an EOS is refused (the policy could not learn to stop)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from rlhf_gym.gpt2 import gpt2_config
    from rlhf_gym.tasks.building import BuildConfig
    from rlhf_gym.utils import load_model, load_pretrained, seed_everything

    seed_everything(args.seed)
    if args.model is not None:
        model = load_model(args.model, "policy", "--model")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, args.model, "--model's tokenizer")
        description = args.model
    else:
        build = BuildConfig.for_world(world)
        width, layers = args.width or build.policy_width, args.layers or build.policy_layers
        tokenizer = world.tokenizer()
        model = GPT2LMHeadModel(gpt2_config(tokenizer, width, layers))
        description = f"a fresh GPT-2 ({width} wide, {layers}-layer) on the {world.name} task's tokenizer"
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"--model {args.model}: its tokenizer has no EOS token; the policy could not learn to stop")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, description


def tokenized(demonstrations: list[Demonstration], tokenizer, where: str) -> list[Example]:
    """The examples of ``demonstrations``; :class:`ConfigError` when more than
    :data:`rlhf_gym.commands.train_rm.MAX_UNKNOWN_SHARE` of their tokens are the tokenizer's unknown token."""
    from rlhf_gym.commands.train_rm import MAX_UNKNOWN_SHARE
    from rlhf_gym.sft_data import tokenize

    examples = [tokenize(d, tokenizer) for d in demonstrations]
    ids = [i for e in examples for i in e.input_ids]
    share = sum(i == tokenizer.unk_token_id for i in ids) / len(ids)
    if tokenizer.unk_token_id is not None and share > MAX_UNKNOWN_SHARE:
        raise ConfigError(f"--data {where}: {share:.0%} of its tokens are unknown to the tokenizer: the model would "
                          "learn <unk>; pass the data's --task, or --model with a tokenizer of its own")
    return examples


def gold_figures(world: TaskWorld, model, tokenizer, n_prompts: int, seed: int) -> dict:
    """Gold reward and well-formed share of samples on ``n_prompts`` held-out prompts of ``world``
    (:func:`rlhf_gym.tasks.building.measure_policy`): the prompts and sampling seed of the SFT figures of a task build
    with ``seed``."""
    import random

    from rlhf_gym.tasks.building import BuildConfig, SeedStream, measure_policy

    build = BuildConfig.for_world(world, seed=seed)
    eval_prompts = world.prompt_split()[1]
    prompts = random.Random(build.seed_for(SeedStream.EVAL_SAMPLE)).sample(eval_prompts, min(n_prompts, len(eval_prompts)))
    # the task's response budget in this tokenizer's tokens: a subword model needs more of them for the same text
    budget = world.task().response_budget(tokenizer)
    return measure_policy(world, model, tokenizer, prompts, budget, build.seed_for(SeedStream.SFT_FIGURES))


def run_name(args: Args) -> str:
    """``<data>__<exp-name>__<seed>__<time>``: the run directory's name (a clash in the same second gets ``-2``...)."""
    name = args.data_task or Path(args.data).stem
    return f"{name}__{args.exp_name}__{args.seed}__{int(time.time())}"


def save_policy(model, tokenizer, directory: Path) -> None:
    """The model and its tokenizer in save_pretrained format, written to a temporary directory then renamed: the
    directory holds a whole policy or none (:func:`rlhf_gym.files.staged_directory`)."""
    from rlhf_gym.divergence import check_finite_parameters
    from rlhf_gym.files import staged_directory
    from rlhf_gym.tokenizers import save_tokenizer_for_export

    check_finite_parameters(model, f"the fine-tuned model to {directory}")
    with staged_directory(directory, "config.json", "saved model") as staging:
        model.save_pretrained(staging)
        save_tokenizer_for_export(tokenizer, staging)


def main(args: Args) -> dict:
    from rlhf_gym.sft import final_loss, train_sft
    from rlhf_gym.sft_data import fit_examples, split_held_out
    from rlhf_gym.tasks import world_of
    from rlhf_gym.utils import context_length, resolve_device

    started = time.time()
    world = world_of(args.task_name) if args.task_name else None
    demonstrations = load_demonstrations(args, world)  # bad data fails before any model is loaded
    device = resolve_device(args.device)
    model, tokenizer, description = model_and_tokenizer(args, world)
    model.to(device)
    limit = context_length(model)
    if args.max_length is not None and limit is not None and args.max_length > limit:
        raise ConfigError(f"--max-length {args.max_length}: the model reads {limit} positions at most")
    if args.packing and (args.max_length or limit) is None:
        raise ConfigError("--packing needs --max-length (the model gives no context length)")
    config = args.sft_config(args.max_length or limit)
    train, held_out = split_held_out(tokenized(demonstrations, tokenizer, args.data), args.eval_fraction, args.seed)
    fitted = fit_examples(train, config.max_length, config.completion_only_loss)
    train, held_out = fitted.examples, fit_examples(held_out, config.max_length, config.completion_only_loss).examples
    if not train:
        raise ConfigError(f"--data {args.data}: no demonstration has a token to learn within --max-length "
                          f"{config.max_length}")

    run_dir = create_run_directory(args.out_dir, run_name(args))
    atomic_write_json(run_dir / "args.json", {**asdict(args), "sft_config": asdict(config), "model_description": description})
    print(f"run directory {run_dir} (device: {device})\n  {description}; {len(train)} demonstrations to learn, "
          f"{len(held_out)} held out; {fitted.n_truncated} cut to {config.max_length} tokens, {fitted.n_left_out} left "
          "out (nothing to learn)")
    before = gold_figures(world, model, tokenizer, args.n_eval_prompts, args.seed) if world else None
    result = train_sft(model, train, config, tokenizer.pad_token_id, args.progress_bar, held_out, run_dir / "tensorboard")
    after = gold_figures(world, model, tokenizer, args.n_eval_prompts, args.seed) if world else None
    save_policy(model, tokenizer, run_dir / "policy")

    summary = {"train_loss": final_loss(result.losses), "eval_loss": result.eval_losses[-1] if result.eval_losses else None,
               "eval_losses": result.eval_losses, "steps": len(result.losses), "n_train": len(train),
               "n_eval": len(held_out), "n_truncated": fitted.n_truncated,
               "n_left_out": fitted.n_left_out, "model": description, "device": str(device),
               "seconds": round(time.time() - started, 1)}
    if world is not None:
        summary["gold"] = {"task": world.name, "before": before, "after": after}
    atomic_write_json(run_dir / "summary.json", summary)
    print(json.dumps({k: summary[k] for k in ("train_loss", "eval_loss", "steps")}))
    if world is not None:
        for name, figures in (("before", before), ("after", after)):
            print(f"{name} SFT: gold reward {figures['gold_reward_mean']:.3f}, well-formed "
                  f"{figures['well_formed_share']:.1%} on {figures['n_samples']} held-out {world.name} prompts")
    print(f"done in {summary['seconds']:.0f} s; policy/, summary.json, tensorboard/ in {run_dir}")
    return {**summary, "run_dir": str(run_dir), "losses": result.losses}
