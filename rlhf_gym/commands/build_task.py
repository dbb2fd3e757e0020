"""Rebuild the artifacts of the embedded default task ("reviews") from a seed, deterministically, on CPU.

    rlhf-gym build-task                        # into the package (what ships)
    rlhf-gym build-task --out-dir /tmp/rv      # somewhere else
    rlhf-gym build-task --out-dir /tmp/rv --n-comparisons 20000 --seed 1

Writes policy/, reward_model/, preferences.jsonl and metadata.json (the measured figures, also printed);
the previous artifacts are replaced only once the new ones are complete.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from rlhf_gym.cli import arg
from rlhf_gym.checks import check_positive_options, check_seed, check_temperature
from rlhf_gym.errors import ConfigError
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.tasks.reviews.build import BuildConfig, build
from rlhf_gym.tasks.reviews.task import ARTIFACTS_DIR, prompt_split
from rlhf_gym.tasks.reviews.tokenizer import build_tokenizer

DEFAULTS = BuildConfig()


@dataclass
class Args:
    """:class:`rlhf_gym.tasks.reviews.build.BuildConfig` (one option per field) and the output directory."""

    out_dir: str = arg(str(ARTIFACTS_DIR), "output directory (default: the package's artifacts)")
    seed: int = arg(DEFAULTS.seed, "seed of everything (grammar samples, initialisation, sampling, annotator)")
    n_sft_texts: int = arg(DEFAULTS.n_sft_texts, "grammar samples the SFT policy is trained on")
    sft_epochs: int = arg(DEFAULTS.sft_epochs, "SFT passes")
    policy_width: int = arg(DEFAULTS.policy_width, "hidden size of the SFT policy")
    policy_layers: int = arg(DEFAULTS.policy_layers, "transformer blocks of the SFT policy")
    reward_width: int = arg(DEFAULTS.reward_width, "hidden size of the reward model")
    reward_layers: int = arg(DEFAULTS.reward_layers, "transformer blocks of the reward model")
    n_comparisons: int = arg(DEFAULTS.n_comparisons, "labelled SFT pairs the reward model is trained on")
    reward_epochs: int = arg(DEFAULTS.reward_epochs, "reward-model passes")
    annotator_temperature: float = arg(DEFAULTS.annotator_temperature, "Bradley-Terry temperature of the simulated annotator")
    annotator_flip_rate: float = arg(DEFAULTS.annotator_flip_rate, "label-flip rate of the simulated annotator")
    max_new_tokens: int = arg(DEFAULTS.max_new_tokens, "response budget when sampling from the SFT policy")
    n_eval_samples: int = arg(DEFAULTS.n_eval_samples, "SFT samples (and fresh pairs) used to measure the figures")

    def __post_init__(self) -> None:
        """Check every number before the build starts (it takes minutes): :class:`ConfigError` naming the option."""
        check_positive_options(self, ("n_sft_texts", "sft_epochs", "policy_width", "policy_layers", "reward_width",
                                      "reward_layers", "n_comparisons", "reward_epochs", "max_new_tokens", "n_eval_samples"))
        check_seed(self.seed)
        if self.n_comparisons < 2:
            raise ConfigError(f"--n-comparisons must be >= 2 (a reward model needs two), got {self.n_comparisons}")
        tokenizer = build_tokenizer()
        for name in ("policy_width", "reward_width"):
            heads = gpt2_config(tokenizer, getattr(self, name), 1).n_head
            if getattr(self, name) % heads:
                raise ConfigError(f"--{name.replace('_', '-')} must be a multiple of {heads} (the attention heads), "
                                  f"got {getattr(self, name)}")
        train_prompts, eval_prompts = prompt_split()
        if self.n_eval_samples > len(eval_prompts):
            raise ConfigError(f"--n-eval-samples must be <= {len(eval_prompts)} (the held-out prompts), "
                              f"got {self.n_eval_samples}")
        check_temperature(self.annotator_temperature, "--annotator-temperature", sampling=False)
        if not 0 <= self.annotator_flip_rate <= 1:
            raise ConfigError(f"--annotator-flip-rate must be in [0, 1], got {self.annotator_flip_rate}")
        longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in train_prompts + eval_prompts)
        positions = gpt2_config(tokenizer, self.policy_width, self.policy_layers).n_positions
        if longest + self.max_new_tokens > positions:
            raise ConfigError(f"--max-new-tokens must be <= {positions - longest} (the policy's {positions} positions "
                              f"less the longest prompt's {longest} tokens), got {self.max_new_tokens}")

    def build_config(self) -> BuildConfig:
        return BuildConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BuildConfig)})


def main(args: Args) -> dict:
    metadata = build(args.out_dir, args.build_config())
    print(json.dumps(metadata, indent=2))
    return metadata
