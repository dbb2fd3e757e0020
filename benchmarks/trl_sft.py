"""TRL 0.29.1's SFTTrainer against rlhf-gym's SFT on the reviews task's demonstrations, same model, data and settings.

Per seed, both sides start from the same fresh GPT-2 (the reviews build's 128 x 2 on the task's word-level tokenizer,
initialised once with the seed and copied), learn the same demonstrations (``--n-demonstrations`` drawn from the
task's generator with the seed, as the build draws them; the same ``--eval-fraction`` held out) with the same settings:
``--epochs`` epochs in batches of ``--batch-size``, AdamW at ``--learning-rate`` (betas 0.9 / 0.999, eps 1e-8) with no
weight decay, linear decay to 0 without warm-up, gradient norm clipped at 1.0, loss on the completion tokens only, no
packing, at most 64 tokens an example (the model's positions; no demonstration is longer), fp32, dropout off.

Reported per side and seed: the final train loss (the mean of the last 50 steps' losses, :func:`rlhf_gym.sft.final_loss`;
TRL's from its per-step log), the held-out loss (:func:`rlhf_gym.sft.evaluation_loss` of both trained models, the mean
negative log-likelihood per completion token; TRL's own ``eval_loss``, a mean of per-batch means, is recorded too), and
the gold reward and well-formed share of samples on held-out prompts after SFT (the build's prompts and sampling seed,
:func:`rlhf_gym.commands.sft.gold_figures`); then each metric's mean over the seeds with its 95 % interval.

    python -m rlhf_gym.benchmarks.trl_sft --seeds 0,1,2 --out runs/trl_sft.json
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg, run
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import atomic_write_json

if TYPE_CHECKING:  # torch, transformers and TRL only once a run starts: --help stays fast
    from rlhf_gym.sft_data import Demonstration, SFTConfig

TASK = "reviews"
MAX_LENGTH = 64
"""Tokens per example on both sides: the fresh model's positions (a reviews demonstration has at most 30)."""
SYSTEMS = ("ours", "trl")
METRICS = ("train_loss", "eval_loss", "gold_reward", "well_formed")

ADAPTATIONS = [
    "the records are TRL's prompt-completion {'prompt', 'completion'} from rlhf_gym.sft_data.task_demonstrations, the "
    "completion with its leading space: TRL tokenises prompt + completion as one string, ours the two apart; the "
    "word-level tokenizer gives the same ids either way (checked for every demonstration at start).",
    "TRL appends the EOS token's text to each completion (add_eos) and tokenises it to the EOS id; ours appends the id. "
    "TRL tokenises with the tokenizer's default add_special_tokens=True, ours with False: the word-level tokenizer adds "
    "no special token, so the ids agree (a BOS-adding tokenizer would get a BOS from TRL only: docs/sft.md).",
    "weight_decay=0.0 on both sides: HF's Trainer exempts biases and LayerNorm weights from decay, while ours (the task "
    "build's AdamW) decays every parameter, so the two agree only without decay (TRL's default).",
    "optim='adamw_torch' (not the fused variant), bf16=False, activation_checkpointing=False (transformers 5's name of "
    "gradient_checkpointing, which TRL turns on by default), use_cpu=True (the benchmark runs on the CPU), "
    "report_to='none', save_strategy='no', logging_steps=1 (TRL's per-step losses give its final train loss).",
    "max_length=64 on both sides (TRL's default 1024 exceeds the model's positions; no demonstration reaches 64), "
    "packing=False, completion_only_loss=True, warmup_steps=0, lr_scheduler_type='linear' (TRL's factor "
    "(steps - step) / steps, ours 1 - step / steps: equal up to rounding).",
    "data order: the same in the first epoch. TRL's sampler (Accelerate's SeedableRandomSampler) draws torch.randperm "
    "with a generator seeded with data_seed + epoch, ours torch.randperm with a generator seeded once with the seed, so "
    "both see the same batches in the same order in epoch 1 (per-step losses equal: tests/test_sft_trl_parity.py); "
    "from the 2nd epoch on the orders differ (ours continues its generator, as the task build always has).",
    "the held-out loss of both trained models is measured by rlhf_gym.sft.evaluation_loss (per completion token); "
    "TRL's trainer.evaluate() eval_loss (the mean of per-batch means, batches of 8) is recorded as trl_eval_loss.",
]
"""Where TRL needed adapting (or could not be matched), and why."""


@dataclass
class Args:
    seeds: str = arg("0,1,2", "comma-separated seeds (data, split, initialisation, shuffling)")
    n_demonstrations: int = arg(3000, "demonstrations drawn from the reviews generator per seed")
    eval_fraction: float = arg(0.1, "share held out for the eval loss")
    epochs: int = arg(1, "passes over the demonstrations")
    batch_size: int = arg(32, "demonstrations per optimizer step")
    learning_rate: float = arg(3e-3, "peak AdamW learning rate (the task build's)")
    n_eval_prompts: int = arg(500, "held-out prompts whose samples measure the gold reward")
    out: str = arg("runs/trl_sft.json", "the result: settings, adaptations, per-seed figures and the table")

    def __post_init__(self) -> None:
        check_positive_options(self, ("n_demonstrations", "epochs", "batch_size", "learning_rate", "n_eval_prompts"))
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")
        try:
            self.seed_list()
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {self.seeds!r}") from None

    def seed_list(self) -> list[int]:
        return [int(seed) for seed in self.seeds.split(",")]

    def sft_config(self, seed: int) -> SFTConfig:
        """Our side's settings (the module docstring's)."""
        from rlhf_gym.sft_data import SFTConfig

        return SFTConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                         weight_decay=0.0, seed=seed, completion_only_loss=True, max_length=MAX_LENGTH)


def fresh_model(tokenizer, seed: int):
    """The reviews build's policy architecture, initialised after ``seed_everything(seed)`` (as the build and
    ``rlhf-gym sft``'s default model)."""
    from transformers import GPT2LMHeadModel

    from rlhf_gym.gpt2 import gpt2_config
    from rlhf_gym.tasks import world_of
    from rlhf_gym.tasks.building import BuildConfig
    from rlhf_gym.utils import seed_everything

    build = BuildConfig.for_world(world_of(TASK))
    seed_everything(seed)
    return GPT2LMHeadModel(gpt2_config(tokenizer, build.policy_width, build.policy_layers))


def check_same_ids(demonstrations: list[Demonstration], tokenizer) -> None:
    """TRL's ids (``prompt + completion + eos`` tokenised as one string) are ours (:func:`rlhf_gym.sft_data.tokenize`)."""
    from rlhf_gym.sft_data import tokenize

    for d in demonstrations:
        theirs = tokenizer(d.record["prompt"] + d.record["completion"] + tokenizer.eos_token)["input_ids"]
        if theirs != tokenize(d, tokenizer).input_ids:
            raise ConfigError(f"{d.where}: TRL would tokenise it to other ids than ours")


def trl_trainer(model, tokenizer, train: list[Demonstration], held_out: list[Demonstration], config: SFTConfig,
                out_dir: Path):
    """TRL's SFTTrainer with the matched settings (:data:`ADAPTATIONS`)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    args = TRLConfig(output_dir=str(out_dir), seed=config.seed, data_seed=config.seed, report_to="none", save_strategy="no",
                     disable_tqdm=True, logging_steps=1, use_cpu=True, bf16=False, fp16=False,
                     activation_checkpointing=False, num_train_epochs=config.epochs,
                     per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                     lr_scheduler_type=config.lr_schedule, warmup_steps=0, weight_decay=config.weight_decay,
                     optim="adamw_torch", max_grad_norm=config.max_grad_norm, max_length=config.max_length, packing=False,
                     completion_only_loss=config.completion_only_loss)
    return SFTTrainer(model=model, args=args, processing_class=tokenizer,
                      train_dataset=Dataset.from_list([d.record for d in train]),
                      eval_dataset=Dataset.from_list([d.record for d in held_out]))


def run_seed(args: Args, seed: int, out_dir: Path) -> dict:
    """Both sides on one seed: ``{"ours": figures, "trl": figures}``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import PrinterCallback

    from rlhf_gym.commands.sft import gold_figures
    from rlhf_gym.sft import evaluation_loss, final_loss, train_sft
    from rlhf_gym.sft_data import split_held_out, task_demonstrations, tokenize
    from rlhf_gym.tasks import world_of

    world = world_of(TASK)
    tokenizer = world.tokenizer()
    train, held_out = split_held_out(task_demonstrations(world, args.n_demonstrations, seed), args.eval_fraction, seed)
    check_same_ids(train + held_out, tokenizer)
    train_examples, held_examples = ([tokenize(d, tokenizer) for d in part] for part in (train, held_out))
    config = args.sft_config(seed)
    initial = fresh_model(tokenizer, seed).state_dict()
    figures = {}
    for system in SYSTEMS:
        model = fresh_model(tokenizer, seed)
        model.load_state_dict(initial)
        started = time.perf_counter()
        if system == "ours":
            losses, extra = train_sft(model, train_examples, config, tokenizer.pad_token_id, progress=False).losses, {}
        else:
            trainer = trl_trainer(model, tokenizer, train, held_out, config, out_dir / f"trl_seed{seed}")
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
            extra = {"trl_eval_loss": trainer.evaluate()["eval_loss"], "trl_steps": trainer.state.global_step}
            with contextlib.suppress(OSError):  # TRL's output_dir stays empty (save_strategy="no"): remove it
                Path(trainer.args.output_dir).rmdir()
        seconds = time.perf_counter() - started
        gold = gold_figures(world, model, tokenizer, args.n_eval_prompts, seed)
        figures[system] = {"train_loss": final_loss(losses),
                           "eval_loss": evaluation_loss(model, held_examples, tokenizer.pad_token_id, True),
                           "gold_reward": gold["gold_reward_mean"], "well_formed": gold["well_formed_share"],
                           "steps": len(losses), "train_seconds": round(seconds, 1), **extra}
        print(f"seed {seed} {system}: " + ", ".join(f"{k} {figures[system][k]:.4f}" for k in METRICS))
    return figures


def table(per_seed: dict[int, dict]) -> str:
    """The markdown table: each metric's mean over the seeds with its 95 % interval, by side, and the largest difference
    between the two sides on one seed."""
    from rlhf_gym.statistics import mean_interval

    lines = ["| metric | " + " | ".join(SYSTEMS) + " | max abs difference |", "|---|" + "---:|" * (len(SYSTEMS) + 1)]
    for metric in METRICS:
        cells = [mean_interval([figures[s][metric] for figures in per_seed.values()]).format(3) for s in SYSTEMS]
        gap = max(abs(figures["ours"][metric] - figures["trl"][metric]) for figures in per_seed.values())
        lines.append(f"| {metric} | " + " | ".join(cells) + f" | {gap:.1e} |")
    return "\n".join(lines)


def main(args: Args) -> dict:
    import trl

    out = Path(args.out)
    per_seed = {seed: run_seed(args, seed, out.parent / f"{out.stem}_trainer") for seed in args.seed_list()}
    markdown = table(per_seed)
    result = {"args": asdict(args), "sft_config": {**asdict(args.sft_config(0)), "seed": "each seed"},
              "adaptations": ADAPTATIONS, "per_seed": per_seed, "table": markdown, "trl_version": trl.__version__}
    atomic_write_json(out, result)
    print(markdown)
    return result


if __name__ == "__main__":
    run(main, Args, __doc__, prog="python -m rlhf_gym.benchmarks.trl_sft")
