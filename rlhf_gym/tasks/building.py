"""Build every artifact of a task from its :class:`~rlhf_gym.tasks.world.TaskWorld`, deterministically from a seed, on CPU.

tokenizer -> SFT policy (GPT-2 style, trained on the world's generator texts) -> comparisons of SFT samples
labelled by a noisy simulated annotator (or a pool of biased ones) -> Bradley–Terry reward model ->
``metadata.json`` with the measured figures. The same code builds every task: a task only supplies its world.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2LMHeadModel

from ..collect import collect_preferences
from ..generation import generate_texts
from ..gpt2 import gpt2_config, gpt2_reward_model
from ..labelers import AnnotatorPool, Labeler, SimulatedAnnotator
from ..pair_types import agreement_by_type, content_probes, form_probe, gold_order_agreement, markdown_agreement
from ..pairing import Pairing, contrast_records, counterfactual_records
from ..preferences import load_preferences
from ..provenance import machine, versions
from ..reward_model import RewardModel
from ..reward_training import REWARD_EPOCHS, RewardTrainingConfig, save_reward_model, train_reward_model
from ..sft import SFTResult, final_loss, train_sft
from ..sft_data import SFTConfig, task_demonstrations, tokenize
from ..utils import load_model, seed_everything
from ..errors import ConfigError
from ..files import atomic_write_json, write_errors_name
from . import DEFAULT_MAX_NEW_TOKENS
from .world import TaskWorld


class SeedStream(IntEnum):
    """The build's random streams besides the base seed, as offsets from it: :meth:`BuildConfig.seed_for`.

    The offsets are part of the shipped artifacts (``rlhf-gym build-ensemble`` measures its members on the same
    streams): changing one changes what a rebuild produces.
    """

    EVAL_SAMPLE = 1
    """Which held-out prompts the SFT policy and the reward models are measured on."""
    SFT_FIGURES = 2
    """Sampling of the SFT responses whose figures are measured."""
    COMPARISON_PROMPTS = 3
    """Order of the train prompts that the comparisons are collected on."""
    GOLD_AGREEMENT = 4
    """Sampling of the fresh SFT pairs on which reward models are checked against the gold reward."""
    ENSEMBLE_NORM = 5
    """Prompts and sampling of the SFT responses that standardise the ensemble's members and a reward model's scale
    (:func:`standardisation_samples`)."""


@dataclass
class BuildConfig:
    """Sizes of a task's artifacts and its annotators (defaults: the reviews task's; a world overrides some in
    ``build_defaults``, see :meth:`for_world`)."""

    seed: int = 0
    """Seed of everything (grammar samples, initialisation, sampling, annotator)."""
    n_sft_texts: int = 30000
    """Grammar samples the SFT policy is trained on."""
    sft_epochs: int = 2
    """SFT passes."""
    policy_width: int = 128
    """Hidden size of the SFT policy."""
    policy_layers: int = 2
    """Transformer blocks of the SFT policy."""
    reward_width: int = 64
    """Hidden size of the reward model."""
    reward_layers: int = 2
    """Transformer blocks of the reward model."""
    reward_pooling: str = "last"
    """How the reward model reads its score: at the last token (``last``), or summed (``sum``) or averaged (``mean``)
    over the response's tokens (:class:`~rlhf_gym.reward_model.RewardModel`)."""
    reward_init: str = "scratch"
    """``scratch``: a fresh ``reward_width`` x ``reward_layers`` model; ``sft``: the SFT policy's transformer with a new
    score head, as InstructGPT's reward model starts from its SFT model (Ouyang et al. 2022; the sizes are the
    policy's)."""
    n_comparisons: int = 10000
    """Labelled SFT pairs the reward model is trained on."""
    reward_epochs: int = REWARD_EPOCHS
    """Reward-model passes."""
    reward_standardise: bool = False
    """Divide the trained reward model's score head by the std of its scores on SFT samples of train prompts, so that
    they have std 1 there (:func:`standardise_reward_scale`)."""
    reward_content_epochs: int = 0
    """Reward-model passes over the counterfactual (and contrast) comparisons alone, before the ``reward_epochs``
    passes over all of them: content first, so that the length the ordinary pairs also teach does not become the
    model's first and only feature (0: none)."""
    reward_contrast_epochs: int = 0
    """Reward-model passes over the contrast comparisons alone, before the content passes: a rule that only the order
    of the words shows (describe's negation against the prompt's ``but not``) learnt first, on the comparisons that
    show nothing else (0: none; :mod:`rlhf_gym.pairing`)."""
    annotator_temperature: float = 0.5
    """Bradley–Terry temperature of the simulated annotator."""
    annotator_flip_rate: float = 0.1
    """Label-flip rate of the simulated annotator."""
    annotator_bias_weights: tuple[float, ...] = ()
    """A pool of annotators, one per weight ``w_i``, each judging by ``G + w_i * b`` (the world's bias feature);
    empty: one unbiased annotator."""
    annotator_ties: str = "coin"
    """A pair the annotators value equally (equal gold and bias): ``coin``, a random label (rlhf-gym 0.9's builds), or
    ``label``, recorded as a tie and left out of reward-model training (:class:`~rlhf_gym.labelers.SimulatedAnnotator`)."""
    pairs: str = "sft"
    """Stage 1's pair sampling (:mod:`rlhf_gym.pairing`): ``sft``, ``counterfactual`` or ``mixed``."""
    counterfactual_share: float = 0.5
    """``pairs="mixed"``: the share of counterfactual comparisons."""
    cut_share: float = 0.0
    """The share of the ordinary pairs made *cut* pairs: a sample against an ill-formed prefix of itself
    (:mod:`rlhf_gym.pairing`)."""
    cut_empty: bool = False
    """A cut may leave the empty response (a policy's EOS first): needed by a reward summed over the response's
    tokens, which scores it 0 whatever it learnt (:mod:`rlhf_gym.pairing`)."""
    cut_ends: bool = False
    """A cut may keep a sample's end instead of its start (an ill-formed suffix, down to a lone last token): needed by a
    reward averaged over the response's tokens, which reads a one-token answer where a clause ends
    (:mod:`rlhf_gym.pairing`)."""
    contrast_share: float = 0.0
    """The share of the counterfactual pairs made *contrast* pairs: a sample against its words in another order that
    gold scores differently (``TaskWorld.contrasts``, :mod:`rlhf_gym.pairing`)."""
    garble_share: float = 0.0
    """The share of the ordinary pairs (after the cuts) made *garbled* pairs: a sample against itself with one word
    edited so that it is ill-formed (:mod:`rlhf_gym.pairing`)."""
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    """Response budget when sampling from the SFT policy."""
    n_eval_samples: int = 1000
    """SFT samples (and fresh pairs) used to measure the figures."""
    sft_from: str | None = None
    """A saved SFT policy of the task to build on instead of training one (e.g. the shipped
    ``rlhf_gym/tasks/<task>/artifacts/policy``): a new reward model on new comparisons, for the same SFT policy; the SFT
    settings above are then unused."""

    def seed_for(self, stream: SeedStream) -> int:
        """The seed of one of the build's random streams."""
        return self.seed + stream

    @classmethod
    def for_world(cls, world: TaskWorld, **overrides) -> BuildConfig:
        """The world's build settings (its ``build_defaults`` and response budget), then ``overrides``."""
        return cls(**{"max_new_tokens": world.max_new_tokens, **world.build_defaults, **overrides})


def annotator(world: TaskWorld, config: BuildConfig) -> Labeler:
    """The world's simulated annotator: a biased :class:`AnnotatorPool` when the config has bias weights."""
    label_ties = config.annotator_ties == "label"
    if config.annotator_bias_weights:
        return AnnotatorPool(world.gold_reward, world.annotator_bias, config.annotator_bias_weights,
                             config.annotator_temperature, config.annotator_flip_rate, seed=config.seed,
                             label_ties=label_ties)
    return SimulatedAnnotator(world.gold_reward, config.annotator_temperature, config.annotator_flip_rate, seed=config.seed,
                              label_ties=label_ties)


ANNOTATOR_SETTINGS = ("annotator_bias_weights", "annotator_temperature", "annotator_flip_rate", "annotator_ties")
"""The build settings that make a task's annotators."""


def task_annotator(task_name: str, recorded: dict, seed: int) -> Labeler:
    """The annotators who labelled a built task's comparisons, drawing a stream of their own (``seed``): the annotator
    settings its build recorded (``metadata.json``'s ``build_config``; a setting it did not record takes the world's
    default)."""
    from . import world_of  # the package's registry of worlds imports this module's users: not at import time

    world = world_of(task_name)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in ANNOTATOR_SETTINGS}
    return annotator(world, BuildConfig.for_world(world, **settings, seed=seed))


def initial_reward_model(world: TaskWorld, config: BuildConfig, policy_dir: Path) -> RewardModel:
    """The reward model before training: fresh (``reward_init="scratch"``) or the saved SFT policy with a score head."""
    if config.reward_init == "sft":
        return RewardModel(load_model(policy_dir, "reward_model", "the SFT policy", from_base=True), world.tokenizer(),
                           pooling=config.reward_pooling)
    return gpt2_reward_model(world.tokenizer(), config.reward_width, config.reward_layers, pooling=config.reward_pooling)


def measure_policy(world: TaskWorld, policy, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> dict:
    """Well-formed share, gold reward (mean, median; the mean ceiling when the world has one), length of samples."""
    responses = generate_texts(policy, tokenizer, prompts, max_new_tokens, seed=seed)
    gold = [world.gold_reward(p, r) for p, r in zip(prompts, responses)]
    figures = {
        "well_formed_share": float(np.mean([world.is_well_formed(p, r) for p, r in zip(prompts, responses)])),
        "gold_reward_mean": float(np.mean(gold)),
        "gold_reward_median": float(np.median(gold)),
        "response_words_mean": float(np.mean([len(r.split()) for r in responses])),
        "n_samples": len(prompts),
    }
    if world.gold_ceiling is not None:
        figures["gold_ceiling_mean"] = float(np.mean([world.gold_ceiling(p) for p in prompts]))
    return figures


def gold_agreement(gold_reward, reward_model: RewardModel, policy, tokenizer, prompts: list[str], max_new_tokens: int,
                   seed: int, world: TaskWorld | None = None) -> dict:
    """Share of fresh SFT pairs (gold ties left out) that the reward model orders as the gold reward does; with a
    ``world`` that has content-error families, also ``"by_type"``: the same split by what differs between the two
    responses (:func:`rlhf_gym.pair_types.agreement_by_type`)."""
    a = generate_texts(policy, tokenizer, prompts, max_new_tokens, seed=seed)
    b = generate_texts(policy, tokenizer, prompts, max_new_tokens, seed=seed + 1)
    gold_delta = np.array([gold_reward(p, x) - gold_reward(p, y) for p, x, y in zip(prompts, a, b)])
    score_a, score_b = reward_model.score(prompts, a), reward_model.score(prompts, b)
    agrees, decided = gold_order_agreement(gold_delta, score_a - score_b)
    figures = {"gold_agreement": float(np.mean(agrees[decided])), "n_pairs": int(decided.sum())}
    if world is not None and world.content_errors:
        figures["by_type"] = agreement_by_type(world, prompts, a, b, score_a, score_b)
    return figures


def saved_task_policy(world: TaskWorld, directory: str, option: str = "--sft-from") -> GPT2LMHeadModel:
    """The policy saved in ``directory`` (given as ``option``, named in messages), in eval mode; :class:`ConfigError`
    unless its vocabulary is ``world``'s."""
    policy = load_model(directory, "policy", option)
    if policy.config.vocab_size != len(world.tokenizer()):
        raise ConfigError(f"{option} {directory}: a policy of {policy.config.vocab_size} tokens, not of the "
                          f"{world.name} task's {len(world.tokenizer())}")
    return policy.eval()


def sft_policy(world: TaskWorld, config: BuildConfig, progress: bool = True) -> tuple[GPT2LMHeadModel, SFTResult]:
    """The build's SFT policy: a fresh ``policy_width`` x ``policy_layers`` GPT-2 trained on ``n_sft_texts`` texts of the
    world's generator (:func:`~rlhf_gym.sft_data.task_demonstrations`), every token learnt, with the defaults of
    :class:`~rlhf_gym.sft_data.SFTConfig`. Its weights are drawn here: call it after ``seed_everything(config.seed)``."""
    tokenizer = world.tokenizer()
    examples = [tokenize(d, tokenizer) for d in task_demonstrations(world, config.n_sft_texts, config.seed)]
    policy = GPT2LMHeadModel(gpt2_config(tokenizer, config.policy_width, config.policy_layers))
    result = train_sft(policy, examples, SFTConfig(epochs=config.sft_epochs, seed=config.seed, completion_only_loss=False),
                       tokenizer.pad_token_id, progress)
    return policy, result


N_STANDARDISATION_SAMPLES = 1000
"""SFT samples a reward model's scale is standardised on (``reward_standardise``)."""
MIN_REWARD_SPREAD = 1e-6
"""A smaller std of the scores is a constant reward up to rounding: not standardised."""


def standardisation_samples(train_prompts: list[str], policy, tokenizer, config: BuildConfig,
                            n_samples: int) -> tuple[list[str], list[str]]:
    """``n_samples`` train prompts (drawn with replacement) and the SFT policy's responses to them: the build's
    ENSEMBLE_NORM stream, on which ensemble members and a reward model's scale are standardised."""
    seed = config.seed_for(SeedStream.ENSEMBLE_NORM)
    prompts = random.Random(seed).choices(train_prompts, k=n_samples)
    return prompts, generate_texts(policy, tokenizer, prompts, config.max_new_tokens, seed=seed)


def standardise_reward_scale(reward_model: RewardModel, prompts: list[str], responses: list[str]) -> float:
    """Divide the reward model's score head (a linear layer without bias) by the std of its scores on ``responses``,
    so that they have std 1, and return that std. Ziegler et al. (2019) normalise the reward model on the initial
    policy's samples before RL: then the KL coefficient weighs the same against the reward on every task, whatever the
    scale the Bradley–Terry fit settled on (less noisy annotators give larger margins, hence larger rewards)."""
    std = float(np.std(reward_model.score(prompts, responses)))
    if not std >= MIN_REWARD_SPREAD:  # also NaN
        raise ConfigError(f"the reward model gives the standardisation samples a spread of {std:.3g}: a constant "
                          "reward, nothing to standardise")
    with torch.no_grad():
        reward_model.model.score.weight.div_(std)
    return std


def recorded_config(config: BuildConfig) -> dict:
    """The config as ``metadata.json`` records it: an ``sft_from`` inside the installed package relative to the
    package's parent (``rlhf_gym/tasks/lists/artifacts/policy``), so that shipped metadata names no local path."""
    recorded = asdict(config)
    if config.sft_from is not None:
        root = Path(__file__).resolve().parents[2]  # the directory holding the rlhf_gym package
        source = Path(config.sft_from).resolve()
        recorded["sft_from"] = str(source.relative_to(root)) if source.is_relative_to(root) else config.sft_from
    return recorded


def build(world: TaskWorld, out_dir: str | Path, config: BuildConfig, progress: bool = True) -> dict:
    """Write ``policy/``, ``reward_model/``, ``preferences.jsonl`` and ``metadata.json`` of ``world`` under ``out_dir``."""
    started = time.time()
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed_everything(config.seed)
    train_prompts, eval_prompts = world.prompt_split()
    tokenizer = world.tokenizer()

    if config.sft_from is not None:
        policy, sft_loss = saved_task_policy(world, config.sft_from), None
    else:
        policy, sft = sft_policy(world, config, progress)
        sft_loss = final_loss(sft.losses)
    with write_errors_name(staging / "policy"):
        policy.save_pretrained(staging / "policy")
        tokenizer.save_pretrained(staging / "policy")
    eval_sample = random.Random(config.seed_for(SeedStream.EVAL_SAMPLE)).sample(eval_prompts, config.n_eval_samples)
    sft_figures = measure_policy(world, policy, tokenizer, eval_sample, config.max_new_tokens,
                                 config.seed_for(SeedStream.SFT_FIGURES))
    print(f"SFT policy: {sft_figures['well_formed_share']:.1%} well-formed, mean gold reward "
          f"{sft_figures['gold_reward_mean']:.3f} on {config.n_eval_samples} held-out prompts")

    comparison_prompts = random.Random(config.seed_for(SeedStream.COMPARISON_PROMPTS)).sample(train_prompts,
                                                                                              len(train_prompts))
    collect_preferences(policy, tokenizer, comparison_prompts, annotator(world, config), staging / "preferences.jsonl",
                        config.n_comparisons, config.max_new_tokens, seed=config.seed, progress=progress,
                        pairing=Pairing.for_world(world, config.pairs, config.counterfactual_share, config.cut_share,
                                                  config.cut_empty, config.contrast_share, config.cut_ends,
                                                  config.garble_share))
    records = load_preferences(staging / "preferences.jsonl", allow_empty_responses=config.cut_empty)

    torch.manual_seed(config.seed)
    reward_model = initial_reward_model(world, config, staging / "policy")
    contrasts = contrast_records(records)
    if config.reward_contrast_epochs:
        train_reward_model(reward_model, contrasts,
                           RewardTrainingConfig(epochs=config.reward_contrast_epochs, seed=config.seed), progress=progress)
    if config.reward_content_epochs:
        train_reward_model(reward_model, counterfactual_records(records) + contrasts,
                           RewardTrainingConfig(epochs=config.reward_content_epochs, seed=config.seed), progress=progress)
    metrics = train_reward_model(reward_model, records, RewardTrainingConfig(epochs=config.reward_epochs, seed=config.seed),
                                 progress=progress)
    if config.reward_standardise:
        samples = standardisation_samples(train_prompts, policy, tokenizer, config, N_STANDARDISATION_SAMPLES)
        metrics["standardised_from_std"] = standardise_reward_scale(reward_model, *samples)
    agreement = gold_agreement(world.gold_reward, reward_model, policy, tokenizer, eval_sample, config.max_new_tokens,
                               config.seed_for(SeedStream.GOLD_AGREEMENT), world)
    if world.content_errors:
        agreement["content_probes"] = content_probes(world, reward_model.score, eval_sample, config.seed)
        agreement["form_probe"] = form_probe(world, reward_model.score, eval_sample, config.seed)
    metrics.update(agreement)
    save_reward_model(reward_model, staging / "reward_model", metrics)
    print(f"reward model: held-out accuracy {metrics['eval_accuracy']:.3f} on annotator labels, "
          f"agreement with gold {agreement['gold_agreement']:.3f} on {agreement['n_pairs']} fresh SFT pairs")
    if "by_type" in agreement:
        print(f"agreement with gold by pair type:\n{markdown_agreement(agreement['by_type'])}")

    size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
    metadata = {
        "task": world.name,
        "build_config": recorded_config(config),
        "versions": versions(),
        "machine": machine(),
        "sft": {**sft_figures, "final_loss": sft_loss, "parameters": policy.num_parameters()},
        "reward_model": {"eval_accuracy": metrics["eval_accuracy"], **agreement,
                         "standardised_from_std": metrics.get("standardised_from_std"),
                         "parameters": reward_model.model.num_parameters(), "data_sha256": metrics["data_sha256"]},
        "n_comparisons": len(records),
        "build_seconds": round(time.time() - started, 1),
        "size_bytes": size,
    }
    atomic_write_json(staging / "metadata.json", metadata)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return metadata
