"""Stage 2: train a Bradley-Terry reward model on preference JSONL (or a Hugging Face dataset on disk).

    rlhf-gym train-rm --data prefs.jsonl --out-dir rm/
    rlhf-gym train-rm --data prefs.jsonl --task lists --width 128 --layers 3 --out-dir rm/   # a proxy of another size
    rlhf-gym train-rm --data prefs.jsonl --model distilbert-base-uncased --out-dir rm/  # any HF model

The default model is a small GPT-2-style classifier (``--width`` x ``--layers``, by default the task build's) on a
task's word-level tokenizer: ``--task``'s, or the task whose vocabulary covers the data best. Data of which more than a
tenth of the words would be unknown to that tokenizer is refused (a model that reads ``<unk>`` for every content word
learns length and nothing else): pass ``--model`` with a tokenizer of its own instead. Writes the model in
save_pretrained format plus reward_metadata.json (data hash, seed, held-out accuracy; with the default model also the
agreement with the task's gold reward on fresh SFT pairs, overall and by pair type: rlhf_gym.pair_types), and
TensorBoard logs;
an existing --out-dir (a previous reward model) is replaced only once the new model is complete. Duplicate
records are left out and the held-out comparisons are split off by pair (rlhf_gym.reward_training.split_records);
comparisons whose chosen equals rejected are counted in a warning, and refused when all are.
A malformed line stops the run with its file and line (or is skipped with --skip-bad-lines); so does a NaN/inf
loss, and a model with NaN/inf parameters is never saved. Conversational data (messages: rlhf_gym.conversation) is
rendered with --model's chat template; the default model's word-level tokenizers have none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.cli import arg
from rlhf_gym.checks import check_positive_options, check_seed
from rlhf_gym.conversation import ChatTemplateError
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.preferences import PreferenceDataError, load_preferences
from rlhf_gym.reward_settings import REWARD_POOLINGS, RewardTrainingConfig
from rlhf_gym.tasks import task_names

if TYPE_CHECKING:  # torch and transformers only once the command runs: --help stays fast
    import torch

    from rlhf_gym.reward_model import RewardModel


@dataclass
class Args:
    data: str = arg("preferences.jsonl", "preference JSONL (prompt, chosen, rejected[, margin]) or a saved datasets directory")
    out_dir: str = arg("reward_model", "output directory (save_pretrained format)")
    model: str | None = arg(None, "HF model id or directory (default: a small GPT-2 on a task's word-level tokenizer)")
    task: str | None = arg(None, "the task whose tokenizer the default model reads (default: the one whose vocabulary "
                                 "covers the data best)", choices=task_names)
    width: int | None = arg(None, "the default model's width (default: the task build's reward_width)")
    layers: int | None = arg(None, "the default model's transformer layers (default: the task build's reward_layers)")
    pooling: str = arg("last", "how the model reads its score: last (the last token), sum or mean (over the response's "
                               "tokens; these need a per-position score head, as decoders' classifiers have)",
                       choices=REWARD_POOLINGS)
    epochs: int = arg(RewardTrainingConfig.epochs, "passes over the data")
    batch_size: int = arg(RewardTrainingConfig.batch_size, "comparisons per step")
    learning_rate: float = arg(RewardTrainingConfig.learning_rate, "AdamW learning rate")
    eval_fraction: float = arg(RewardTrainingConfig.eval_fraction, "held-out share")
    center_rewards_coef: float = arg(RewardTrainingConfig.center_rewards_coef, "reward-centering weight (0: off)")
    gold_check: bool = arg(True, "with the default model: measure the agreement with the task's gold reward on fresh "
                                 "SFT pairs of its held-out prompts, overall and by pair type (a few seconds)")
    skip_bad_lines: bool = arg(False, "skip malformed JSONL lines (and report how many) instead of stopping")
    seed: int = arg(RewardTrainingConfig.seed, "seed of split, shuffling and initialisation")
    device: str = arg("cpu", "cpu, cuda or auto")

    def __post_init__(self) -> None:
        if not 0 < self.eval_fraction < 1:
            raise ConfigError(f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")
        check_positive_options(self, ("epochs", "batch_size", "learning_rate", "width", "layers"))
        if self.pooling not in REWARD_POOLINGS:
            raise ConfigError(f"--pooling must be one of {', '.join(REWARD_POOLINGS)}, got {self.pooling!r}")
        if self.model is not None:
            given = [f"--{name}" for name in ("task", "width", "layers") if getattr(self, name) is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: options of the default model; --model brings its own")
        if self.task is not None and self.task not in task_names():
            raise ConfigError(f"--task must be one of {', '.join(task_names())}, got {self.task!r}")
        if not (math.isfinite(self.center_rewards_coef) and self.center_rewards_coef >= 0):
            raise ConfigError(f"--center-rewards-coef must be >= 0 and finite, got {self.center_rewards_coef}")
        check_seed(self.seed)


def load_records(args: Args, tokenizer=None) -> list[dict]:
    """The comparisons of ``--data``, conversations rendered with ``tokenizer``'s chat template (``--model``'s; None:
    the default model, which has none); errors name the file and line (and the option that skips bad lines)."""
    path = Path(args.data)
    if not path.exists():
        raise MissingFileError(f"--data: file not found: {path}")
    try:  # a JSONL file, or the directory of a saved datasets dataset
        records = load_preferences(path, skip_bad_lines=args.skip_bad_lines, tokenizer=tokenizer)
    except PreferenceDataError as error:
        raise PreferenceDataError(f"{error} (pass --skip-bad-lines to skip malformed lines)") from None
    except ChatTemplateError as error:
        if tokenizer is not None:
            raise
        raise ChatTemplateError(f"{error} (the default reward model's word-level tokenizer has no chat template: pass "
                                "--model with one)") from None
    if len(records) < 2:
        raise DataError(f"{path}: need at least 2 comparisons to train a reward model, got {len(records)}")
    return records


MAX_UNKNOWN_SHARE = 0.1
"""The largest share of the data's words a default model's tokenizer may not know."""
SAMPLED_RECORDS = 500
"""Comparisons whose words are counted to choose and check the tokenizer."""


def unknown_share(tokenizer, records: list[dict]) -> float:
    """The share of the tokens of the first :data:`SAMPLED_RECORDS` comparisons (prompt, chosen, rejected) that are
    ``tokenizer``'s unknown token."""
    ids = [i for record in records[:SAMPLED_RECORDS] for text in (record["prompt"], record["chosen"], record["rejected"])
           for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)


def choose_tokenizer(task: str | None, records: list[dict], where: str):
    """``(task, tokenizer)``: the word-level tokenizer of ``task``, or of the task whose vocabulary covers ``records``
    best; refused when more than :data:`MAX_UNKNOWN_SHARE` of the words would be unknown."""
    from rlhf_gym.tasks import world_of

    shares = {}
    for name in [task] if task is not None else task_names():
        tokenizer = world_of(name).tokenizer()
        shares[name] = (unknown_share(tokenizer, records), tokenizer)
    best = min(shares, key=lambda name: shares[name][0])
    share, tokenizer = shares[best]
    if share > MAX_UNKNOWN_SHARE:
        raise ConfigError(f"--data {where}: {share:.0%} of its words are unknown to the {best} task's tokenizer"
                          f"{'' if task else ' (the best of the tasks)'}: the model would read <unk> for them; pass the "
                          "data's --task, or --model with a tokenizer of its own")
    if task is None:
        print(f"[rlhf_gym] reward model on the {best} task's tokenizer ({share:.1%} of the words unknown)")
    return best, tokenizer


def model_tokenizer(args: Args):
    """``--model``'s tokenizer; None for the default model (a task's, chosen by :func:`choose_tokenizer`)."""
    if not args.model:
        return None
    from transformers import AutoTokenizer

    from rlhf_gym.utils import load_pretrained

    return load_pretrained(AutoTokenizer.from_pretrained, args.model, "--model's tokenizer")


def build_model(args: Args, device: torch.device, records: list[dict], tokenizer=None) -> tuple[str | None, RewardModel]:
    """``(task, model)``: the reward model to train, and the task whose tokenizer it reads (None with ``--model``, whose
    ``tokenizer`` is :func:`model_tokenizer`'s)."""
    import torch

    from rlhf_gym.gpt2 import gpt2_reward_model
    from rlhf_gym.reward_model import RewardModel
    from rlhf_gym.tasks.building import BuildConfig
    from rlhf_gym.utils import load_model

    torch.manual_seed(args.seed)
    if args.model:
        model = load_model(args.model, "reward_model", "--model", from_base=True)  # a causal LM gets a new score head
        return None, RewardModel(model.to(device), tokenizer, pooling=args.pooling)
    build = BuildConfig()
    task, tokenizer = choose_tokenizer(args.task, records, str(args.data))
    return task, gpt2_reward_model(tokenizer, args.width or build.reward_width, args.layers or build.reward_layers,
                                   device=device, pooling=args.pooling)


def main(args: Args) -> dict:
    from rlhf_gym.pair_types import markdown_agreement
    from rlhf_gym.proxies import measure_gold_agreement
    from rlhf_gym.files import staged_directory
    from rlhf_gym.reward_settings import METADATA_FILE
    from rlhf_gym.reward_training import train_reward_model, write_reward_model
    from rlhf_gym.tasks import load_task
    from rlhf_gym.utils import resolve_device

    tokenizer = model_tokenizer(args)
    records = load_records(args, tokenizer)
    task, reward_model = build_model(args, resolve_device(args.device), records, tokenizer)
    config = RewardTrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                  eval_fraction=args.eval_fraction, center_rewards_coef=args.center_rewards_coef,
                                  seed=args.seed)
    # the previous model stays until the new one is complete
    with staged_directory(args.out_dir, METADATA_FILE, "saved reward model") as staging:
        metrics = train_reward_model(reward_model, records, config, log_dir=staging / "tensorboard", where=str(args.data))
        if task is not None and args.gold_check:
            metrics["gold_check"] = {"task": task, **measure_gold_agreement(reward_model, load_task(task))}
        write_reward_model(reward_model, staging, {**metrics, "data": str(args.data)})
    print(f"held-out accuracy {metrics['eval_accuracy']:.3f} on {metrics['n_eval']} comparisons (no pair in both "
          f"train and held-out; {metrics['n_duplicates']} duplicate(s) left out); saved to {args.out_dir}")
    if "gold_check" in metrics:
        check = metrics["gold_check"]
        print(f"agreement with the {task} task's gold reward on {check['n_pairs']} fresh SFT pairs of held-out prompts: "
              f"{check['gold_agreement']:.3f}")
        if "by_type" in check:
            print(markdown_agreement(check["by_type"]))
    return metrics
