"""Rebuild a task's artifacts (reviews by default, or a suite task) from a seed, deterministically, on the CPU.

    rlhf-gym build-task                          # the reviews task, into the package (what ships)
    rlhf-gym build-task --task lists             # a suite task, into the package
    rlhf-gym build-task --out-dir /tmp/rv        # somewhere else
    rlhf-gym build-task --out-dir /tmp/rv --n-comparisons 20000 --seed 1
    rlhf-gym build-task --task lists --out-dir /tmp/lists --sft-from rlhf_gym/tasks/lists/artifacts/policy \
        --pairs mixed --annotator-ties label          # new comparisons and reward model on the shipped SFT policy

Writes policy/, reward_model/, preferences.jsonl and metadata.json (the measured figures, also printed);
the previous artifacts are replaced only once the new ones are complete. An option left out takes the task's value
(its world's ``build_defaults``, else :class:`~rlhf_gym.tasks.building.BuildConfig`'s).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhf_gym.checks import check_positive_options, check_seed, check_temperature
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.labelers import TIE_POLICIES, check_tie_policy
from rlhf_gym.pairing import PAIRINGS, Pairing
from rlhf_gym.reward_settings import REWARD_POOLINGS
from rlhf_gym.tasks import task_names, world_of

if TYPE_CHECKING:  # the build loads torch and transformers: --help needs neither
    from rlhf_gym.tasks.building import BuildConfig
    from rlhf_gym.tasks.world import TaskWorld

TASK_DEFAULT = "(default: the task's)"
REWARD_INITS = ("scratch", "sft")


@dataclass
class Args:
    """The task, the output directory, and :class:`~rlhf_gym.tasks.building.BuildConfig` (one option per field)."""

    task: str = arg("reviews", "task to build", choices=task_names)
    out_dir: str | None = arg(None, "output directory (default: the package's artifacts of the task)")
    seed: int | None = arg(None, f"seed of everything (grammar samples, initialisation, sampling, annotator) {TASK_DEFAULT}")
    n_sft_texts: int | None = arg(None, f"generator samples the SFT policy is trained on {TASK_DEFAULT}")
    sft_epochs: int | None = arg(None, f"SFT passes {TASK_DEFAULT}")
    policy_width: int | None = arg(None, f"hidden size of the SFT policy {TASK_DEFAULT}")
    policy_layers: int | None = arg(None, f"transformer blocks of the SFT policy {TASK_DEFAULT}")
    reward_width: int | None = arg(None, f"hidden size of the reward model {TASK_DEFAULT}")
    reward_layers: int | None = arg(None, f"transformer blocks of the reward model {TASK_DEFAULT}")
    reward_pooling: str | None = arg(None, "how the reward model reads its score: last (the last token), sum or mean "
                                           f"(over the response's tokens) {TASK_DEFAULT}", choices=REWARD_POOLINGS)
    reward_init: str | None = arg(None, f"reward model's start: scratch or sft (the SFT policy) {TASK_DEFAULT}",
                                  choices=REWARD_INITS)
    n_comparisons: int | None = arg(None, f"labelled SFT pairs the reward model is trained on {TASK_DEFAULT}")
    reward_epochs: int | None = arg(None, f"reward-model passes {TASK_DEFAULT}")
    reward_standardise: bool | None = arg(None, "divide the reward model's scores by their std on SFT samples of train "
                                                f"prompts (Ziegler et al. 2019) {TASK_DEFAULT}")
    reward_content_epochs: int | None = arg(None, "reward-model passes over the counterfactual comparisons alone, before "
                                                  f"--reward-epochs over all (0: none) {TASK_DEFAULT}")
    reward_contrast_epochs: int | None = arg(None, "reward-model passes over the contrast comparisons alone, before the "
                                                   f"content passes (0: none) {TASK_DEFAULT}")
    annotator_temperature: float | None = arg(None, f"Bradley-Terry temperature of the simulated annotators {TASK_DEFAULT}")
    annotator_flip_rate: float | None = arg(None, f"label-flip rate of the simulated annotators {TASK_DEFAULT}")
    annotator_bias_weights: str | None = arg(None, "comma-separated bias weights, one annotator each; 'none' for one "
                                                   f"unbiased annotator {TASK_DEFAULT}")
    annotator_ties: str | None = arg(None, "a pair the annotators value equally: coin (a random label) or label (a tie, "
                                           f"left out of reward-model training) {TASK_DEFAULT}", choices=TIE_POLICIES)
    pairs: str | None = arg(None, f"pair sampling: sft, counterfactual or mixed {TASK_DEFAULT}", choices=PAIRINGS)
    counterfactual_share: float | None = arg(None, f"--pairs mixed: the share of counterfactual pairs {TASK_DEFAULT}")
    cut_share: float | None = arg(None, "the share of ordinary pairs made cut pairs: a sample against an ill-formed "
                                        f"prefix of itself {TASK_DEFAULT}")
    cut_empty: bool | None = arg(None, "a cut pair may put a sample against the empty response (needed by "
                                       f"--reward-pooling sum, which scores it 0) {TASK_DEFAULT}")
    cut_ends: bool | None = arg(None, "a cut pair may keep the sample's end instead of its start: an ill-formed suffix, "
                                      f"down to a lone last token (needed by --reward-pooling mean) {TASK_DEFAULT}")
    contrast_share: float | None = arg(None, "the share of counterfactual pairs made contrast pairs: a sample against "
                                             f"its words in another order that gold scores differently {TASK_DEFAULT}")
    garble_share: float | None = arg(None, "the share of ordinary pairs (after the cuts) made garbled pairs: a sample "
                                           f"against itself with one word edited so that it is ill-formed {TASK_DEFAULT}")
    sft_from: str | None = arg(None, "a saved SFT policy of the task to build on instead of training one (e.g. "
                                     "rlhf_gym/tasks/<task>/artifacts/policy): new comparisons and reward model only")
    max_new_tokens: int | None = arg(None, f"response budget when sampling from the SFT policy {TASK_DEFAULT}")
    n_eval_samples: int | None = arg(None, f"SFT samples (and fresh pairs) used to measure the figures {TASK_DEFAULT}")

    def __post_init__(self) -> None:
        """Check every number before the build starts (it takes minutes): :class:`ConfigError` naming the option."""
        from rlhf_gym.gpt2 import gpt2_config  # transformers: the checks build the task's tokenizer and model configs

        world = world_of(self.task)
        config = self.build_config()
        check_positive_options(config, ("n_sft_texts", "sft_epochs", "policy_width", "policy_layers", "reward_width",
                                        "reward_layers", "n_comparisons", "reward_epochs", "max_new_tokens",
                                        "n_eval_samples"))
        check_seed(config.seed)
        if config.sft_from is not None and not Path(config.sft_from, "config.json").is_file():
            raise MissingFileError(f"--sft-from: no saved policy (config.json) in {config.sft_from}")
        if config.reward_pooling not in REWARD_POOLINGS:
            raise ConfigError(f"--reward-pooling must be one of {', '.join(REWARD_POOLINGS)}, got {config.reward_pooling!r}")
        if config.reward_init not in REWARD_INITS:
            raise ConfigError(f"--reward-init must be one of {', '.join(REWARD_INITS)}, got {config.reward_init!r}")
        if config.n_comparisons < 2:
            raise ConfigError(f"--n-comparisons must be >= 2 (a reward model needs two), got {config.n_comparisons}")
        tokenizer = world.tokenizer()
        for name in ("policy_width", "reward_width"):
            heads = gpt2_config(tokenizer, getattr(config, name), 1).n_head
            if getattr(config, name) % heads:
                raise ConfigError(f"--{name.replace('_', '-')} must be a multiple of {heads} (the attention heads), "
                                  f"got {getattr(config, name)}")
        train_prompts, eval_prompts = world.prompt_split()
        if config.n_eval_samples > len(eval_prompts):
            raise ConfigError(f"--n-eval-samples must be <= {len(eval_prompts)} (the held-out prompts), "
                              f"got {config.n_eval_samples}")
        check_temperature(config.annotator_temperature, "--annotator-temperature", sampling=False)
        if not 0 <= config.annotator_flip_rate <= 1:
            raise ConfigError(f"--annotator-flip-rate must be in [0, 1], got {config.annotator_flip_rate}")
        check_tie_policy(config.annotator_ties)
        check_build_pairing(world, config)
        if config.annotator_bias_weights and world.annotator_bias is None:
            raise ConfigError(f"--annotator-bias-weights: task {self.task!r} has no annotator bias feature")
        longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in train_prompts + eval_prompts)
        positions = gpt2_config(tokenizer, config.policy_width, config.policy_layers).n_positions
        if longest + config.max_new_tokens > positions:
            raise ConfigError(f"--max-new-tokens must be <= {positions - longest} (the policy's {positions} positions "
                              f"less the longest prompt's {longest} tokens), got {config.max_new_tokens}")

    def bias_weights(self) -> tuple[float, ...] | None:
        """``--annotator-bias-weights`` parsed (None when left out)."""
        if self.annotator_bias_weights is None:
            return None
        if self.annotator_bias_weights.strip().lower() == "none":
            return ()
        try:
            weights = tuple(float(w) for w in self.annotator_bias_weights.split(","))
        except ValueError:
            raise ConfigError("--annotator-bias-weights must be comma-separated numbers or 'none', "
                              f"got {self.annotator_bias_weights!r}") from None
        if not all(math.isfinite(w) for w in weights):
            raise ConfigError(f"--annotator-bias-weights must be finite, got {self.annotator_bias_weights!r}")
        return weights

    def build_config(self) -> BuildConfig:
        """The task's :class:`BuildConfig` with the options given here."""
        from rlhf_gym.tasks.building import BuildConfig

        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(BuildConfig)
                 if f.name != "annotator_bias_weights" and getattr(self, f.name) is not None}
        weights = self.bias_weights()
        if weights is not None:
            given["annotator_bias_weights"] = weights
        return BuildConfig.for_world(world_of(self.task), **given)


def check_build_pairing(world: TaskWorld, config: BuildConfig) -> None:
    """A :class:`ConfigError` naming the option for pair sampling the world cannot do, or reward-model passes over
    comparisons the pairing makes none of."""
    for name in ("reward_content_epochs", "reward_contrast_epochs"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(config, name)}")
    if config.reward_content_epochs and config.pairs == "sft":
        raise ConfigError("--reward-content-epochs needs counterfactual comparisons: --pairs counterfactual or mixed")
    if config.reward_contrast_epochs and not config.contrast_share:
        raise ConfigError("--reward-contrast-epochs needs contrast comparisons: --contrast-share > 0")
    # no families, no contrasts or a bad share: refused
    Pairing.for_world(world, config.pairs, config.counterfactual_share, config.cut_share,
                      contrast_share=config.contrast_share, garble_share=config.garble_share)
    for name in ("cut_empty", "cut_ends"):
        if getattr(config, name) and not config.cut_share:
            raise ConfigError(f"--{name.replace('_', '-')} shapes cut pairs: it needs --cut-share > 0")


def main(args: Args) -> dict:
    from rlhf_gym.tasks.building import build

    world = world_of(args.task)
    metadata = build(world, args.out_dir or world.artifacts_dir, args.build_config())
    print(json.dumps(metadata, indent=2))
    return metadata
