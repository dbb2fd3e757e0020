"""TRL 0.29.1's DPO, RLOO, GRPO, online DPO, KTO and SimPO trainers on RLHF-v0 with our settings, scored by our evaluation.

The trainers are ``DPOTrainer``, ``RLOOTrainer``, ``GRPOTrainer`` and, from ``trl.experimental``, ``OnlineDPOTrainer``,
``KTOTrainer`` and ``CPOTrainer`` (``loss_type="simpo"``).

Each run starts from the reviews task's SFT policy, trains with TRL offline (no hub, ``report_to="none"``, no
checkpoints), exports a plain Hugging Face policy directory (``<out-dir>/policy``, model + tokenizer) and scores it
with the benchmark protocol of ``rlhf-gym evaluate`` (:func:`rlhf_gym.agents.evaluate.main`). ``<out-dir>/result.json`` holds
the settings, the TRL config values that matter, every place where TRL needed adapting, wall times, TRL's log
history and the evaluation metrics (gold reward, KL, proxy, well-formed, ...).

Matched settings (the defaults; our DPO / RLOO / GRPO / online DPO / KTO / SimPO use the same):

* RLOO (Ahmadian et al. 2024, arXiv 2402.14740): 64 responses per generation batch (16 prompts x k=4), 4 optimizer
  steps of 16 responses per generation batch, one pass (``num_iterations=1``), clip 0.2, ``beta=0.1`` with the KL
  in the reward (``r - beta * sum_t [log pi(y_t) - log pi_ref(y_t)]``, as the env's terminal reward), no advantage
  normalisation; budget 12,800 responses = 800 optimizer steps.
* GRPO (Shao et al. 2024, arXiv 2402.03300): the same sampling and batching; reward = reward-model score only,
  group-normalised advantages (``scale_rewards="group"``), ``beta=0.04`` on the per-token k3 estimator
  ``exp(ref - logp) - (ref - logp) - 1`` in the loss, ``loss_type="dapo"`` (TRL's default).
* Online DPO (Guo et al. 2024, arXiv 2402.04792): 2 responses per prompt judged by the reward model (the higher
  score is chosen, no missing-EOS penalty), DPO's sigmoid loss with our online DPO's ``beta`` (0.5), 16 responses
  (8 pairs) per optimizer step; budget 12,800 responses = 800 optimizer steps. TRL samples each step's pairs;
  ours samples 64 responses (32 pairs) per rollout and takes 4 steps on them (see ``ADAPTATIONS``).
* DPO (Rafailov et al. 2023, arXiv 2305.18290): ``-log sigmoid(beta * margin)``, ``beta=0.5``, one epoch over the
  reward model's 9,000 training comparisons (``Task.reward_model_comparisons``), batch 64, learning rate 3e-4,
  reference log-probs precomputed once.
* KTO (Ethayarajh et al. 2024, arXiv 2402.01306): the same comparisons unpaired (chosen: desirable, rejected:
  undesirable), one epoch over the 18,000 examples, reference log-probs precomputed once; ``beta``, the desirable /
  undesirable weights, learning rate and batch size (in examples) are our KTO's defaults, read at run time.
* SimPO (Meng et al. 2024, arXiv 2405.14734): the same comparisons, one epoch, no reference model, the loss
  ``-log sigmoid(beta * (avg logp_w - avg logp_l) - gamma)`` with no NLL term (``cpo_alpha=0``); ``beta``, ``gamma``,
  learning rate and batch size are our SimPO's defaults, read at run time.
* All: AdamW as our TransformerPolicy's optimizer (eps 1e-5, weight decay 0.01), learning rate 1e-4 (RL, online DPO) constant
  (no warm-up), gradient norm clipped at 1.0, fp32, responses of at most 24 tokens ending at the task's EOS, sampled at
  temperature 1 with no top-k / top-p, plain-text prompts (no chat template, no special tokens added).

    python scripts/trl_baselines.py --algo rloo --out-dir runs/trl/rloo_s0 --seed 0
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks import load_task
from rlhf_gym.files import atomic_write_json, read_json

if TYPE_CHECKING:  # torch and transformers only once a run starts, with TRL: --help stays fast
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhf_gym.reward_model import RewardModel
    from rlhf_gym.tasks import Task

ALGOS = ("dpo", "rloo", "grpo", "online_dpo", "kto", "simpo")
ENV_ID = "RLHF-v0"
"""The benchmark id whose task (reviews) and reward model the runs use."""

ADAPTATIONS: dict[str, list[str]] = {
    "all": [
        "gradient_checkpointing=False and bf16=False: TRL's BaseConfig defaults to checkpointing and to bf16 "
        "(unless fp16); ours trains in fp32 without checkpointing.",
        "adam_epsilon=1e-5, weight_decay=0.01: the AdamW of our TransformerPolicy (TRL's default: eps 1e-8, no decay).",
        "lr_scheduler_type='constant', warmup 0: TRL's default schedule decays linearly.",
    ],
    "sampled": [
        "reward function: our RewardModel scores join_text(prompt, completion.strip()), as the env does; TRL's "
        "built-in reward-model path tokenises prompt + completion with no separator, which glues the last prompt "
        "word to the first response word (an <unk> for the task's word-level tokenizer).",
        "TRL forwards the policy without position_ids, so left-padded prompts of unequal length would shift GPT-2's "
        "positions; every reviews prompt has 3 tokens (checked at start), so no prompt is padded.",
    ],
    "rl": [
        "top_k=0, top_p=1.0, temperature=1.0, max_completion_length=24, eos/pad from the task's tokenizer: "
        "TRL's GenerationConfig then has no logits warper, and completions are cut after the first EOS (kept).",
    ],
    "grpo": [
        "loss_type='dapo' normalises by the completion tokens of the whole 64-response generation batch, so each "
        "16-response optimizer step sees about a quarter of a token-mean loss (Adam is scale-free, but gradient "
        "clipping at 1.0 then bites less than with a per-step mean).",
    ],
    "online_dpo": [
        "OnlineDPOTrainer and OnlineDPOConfig come from trl.experimental.online_dpo (0.29.1 has no stable import).",
        "the judge is reward_funcs=[the reward function above] (TRL takes the higher score as chosen), not a "
        "BasePairwiseJudge; missing_eos_penalty=None, as our online DPO's judge subtracts the env's no_eos_penalty, "
        "0 by default.",
        "temperature=1.0 (OnlineDPOConfig's default: 0.9), top_k=0, top_p=1.0, max_new_tokens=24 (its name for the "
        "completion length; default 64), eos/pad from the task's tokenizer: completions are cut after the first EOS, "
        "which stays in the loss's mask as in ours; max_length left at 512 (no truncation).",
        "beta: our online DPO's dpo_beta, read at run time; per_device_train_batch_size counts prompts here (TRL "
        "samples 2 completions of each inside every training step), so 8 prompts = 16 responses per optimizer step "
        "and max_steps = responses / 16.",
        "not matched: TRL samples every optimizer step's 8 pairs from the current policy (OnlineDPOTrainer has no "
        "generation batch), while ours samples 32 pairs per rollout and takes 4 steps of 8 pairs on them, the last "
        "three slightly off-policy.",
        "not matched: TRL makes a tie (equal scores, e.g. two identical completions) the first completion's win and "
        "keeps it in the loss's mean; ours leaves tied pairs out of the mean. Identical completions give no "
        "gradient either way.",
        "TRL computes log pi_ref with a frozen copy of the SFT policy on each step's pairs; ours takes them from the "
        "env's scoring pass (the same values, not the same cost).",
    ],
    "offline": [
        "responses (DPO's and SimPO's chosen and rejected, KTO's completions) get a leading space: TRL tokenises "
        "prompt + response as one string, so without it the first response word fuses with the last prompt word. "
        "TRL appends the EOS token to each (checked).",
        "no truncation: DPO's max_length=None, KTO's and CPO's left at their 1024 (their None falls back to 512 with "
        "a warning); a prompt and response need at most 28 tokens.",
    ],
    "kto": [
        "KTOTrainer and KTOConfig come from trl.experimental.kto (trl.KTOTrainer is a deprecated alias that warns).",
        "the comparisons are unpaired by TRL's unpair_preference_dataset (chosen: desirable, rejected: undesirable) "
        "and shuffled once with the seed: KTOTrainer reads its examples in order (a SequentialSampler, so that each "
        "batch keeps its mismatched pairs) and unpair_preference_dataset writes 1,000 desirable then 1,000 "
        "undesirable examples, so unshuffled almost every batch would hold one label only. Ours reshuffles every "
        "epoch with the seed (one epoch here).",
        "beta, desirable_weight, undesirable_weight, learning rate and batch size (examples per step) are our KTO's "
        "defaults, read at run time; loss_type='kto'.",
        "not matched: TRL's reference point z0 pairs each example with the completion of the one before it in its "
        "batch (the first with the last), which may share its prompt; ours pairs each with a seeded example of "
        "another prompt. Both: z0 = max(0, batch mean of log pi - log pi_ref of the mismatched pairs), detached.",
        "precompute_ref_log_probs=True, and the precomputation runs when the trainer is built (TRL runs it in the "
        "first get_train_dataloader, inside train()): train_runtime leaves it out, as ours computes its reference "
        "log-probs before learn().",
    ],
    "simpo": [
        "CPOTrainer and CPOConfig come from trl.experimental.cpo: loss_type='simpo' with cpo_alpha=0.0 (CPO's "
        "default 1.0 adds an NLL term on the chosen responses), alpha=0.0 (no AlphaPO reward shaping), "
        "label_smoothing=0.0.",
        "beta (our SimPO's dpo_beta), simpo_gamma, learning rate and batch size are our SimPO's defaults, read at run "
        "time; TRL's logits are (avg logp_w - avg logp_l) - simpo_gamma / beta, so its loss is ours, averaged over "
        "the response tokens and the EOS as ours. No reference model is built or run, as in ours.",
    ],
}
"""Where TRL needed adapting (or could not be matched), and why, by group; :func:`adaptations` gives an algorithm's list."""

ADAPTATION_GROUPS: dict[str, tuple[str, ...]] = {
    "dpo": ("all", "offline"), "rloo": ("all", "sampled", "rl"), "grpo": ("all", "sampled", "rl", "grpo"),
    "online_dpo": ("all", "sampled", "online_dpo"), "kto": ("all", "offline", "kto"), "simpo": ("all", "offline", "simpo"),
}
"""The groups of :data:`ADAPTATIONS` that apply to each algorithm, in order."""


def adaptations(algo: str) -> list[str]:
    """The adaptations of ``algo``: those of its groups (:data:`ADAPTATION_GROUPS`)."""
    return [line for group in ADAPTATION_GROUPS[algo] for line in ADAPTATIONS[group]]


@dataclass
class Settings:
    """Training settings of the TRL baselines; the defaults are the matched settings of the module docstring (KTO's and
    SimPO's other settings are our trainers' defaults, read at run time)."""

    learning_rate: float = arg(1e-4, "AdamW learning rate (constant, no warm-up)")
    max_grad_norm: float = arg(1.0, "gradient-norm clipping")
    adam_epsilon: float = arg(1e-5, "AdamW epsilon (our TransformerPolicy's)")
    weight_decay: float = arg(0.01, "AdamW weight decay (torch's AdamW default, our TransformerPolicy's)")
    responses: int = arg(12800, "RLOO/GRPO/online DPO budget: sampled responses (optimizer steps = responses / responses "
                                "per step)")
    prompts_per_generation: int = arg(16, "RLOO/GRPO: prompts per generation batch")
    num_generations: int = arg(4, "RLOO/GRPO: responses per prompt (k)")
    steps_per_generation: int = arg(4, "RLOO/GRPO: optimizer steps per generation batch")
    epsilon: float = arg(0.2, "RLOO/GRPO: clip range of the probability ratio")
    rloo_beta: float = arg(0.1, "RLOO: KL coefficient (sequence-level k1 KL in the reward)")
    grpo_beta: float = arg(0.04, "GRPO: KL coefficient (per-token k3 KL in the loss)")
    dpo_beta: float = arg(0.5, "DPO: beta of the sigmoid loss (our DPO's default)")
    dpo_batch_size: int = arg(64, "DPO: comparisons per optimizer step (our DPO's default)")
    dpo_learning_rate: float = arg(3e-4, "DPO: AdamW learning rate (our DPO's default)")
    comparisons: int = arg(0, "DPO/KTO/SimPO: use the first N training comparisons (0: all 9,000)")
    kto_batch_size: int = arg(0, "KTO: examples per optimizer step (0: our KTO's default)")
    simpo_batch_size: int = arg(0, "SimPO: comparisons per optimizer step (0: our SimPO's default)")
    device: str = arg("cpu", "cpu, cuda or auto (training and evaluation)")

    def __post_init__(self) -> None:
        batch = self.prompts_per_generation * self.num_generations
        if min(self.responses, self.prompts_per_generation, self.steps_per_generation, self.dpo_batch_size) <= 0:
            raise ConfigError("--responses, --prompts-per-generation, --steps-per-generation and --dpo-batch-size must be > 0")
        if self.num_generations < 2:
            raise ConfigError("--num-generations must be >= 2 (a leave-one-out / group baseline needs two responses)")
        if batch % self.steps_per_generation:
            raise ConfigError(f"--steps-per-generation {self.steps_per_generation} must divide the generation batch "
                              f"of {batch} responses")
        if self.responses % self.responses_per_step:
            raise ConfigError(f"--responses {self.responses} must be a multiple of the {self.responses_per_step} "
                              "responses of one optimizer step")
        if min(self.comparisons, self.kto_batch_size, self.simpo_batch_size) < 0 or self.learning_rate <= 0 \
                or self.dpo_learning_rate <= 0:
            raise ConfigError("--comparisons, --kto-batch-size and --simpo-batch-size must be >= 0 and --learning-rate > 0")

    @property
    def responses_per_step(self) -> int:
        """Responses in one optimizer step: RLOO's and GRPO's ``per_device_train_batch_size`` (they count completions;
        online DPO's counts prompts, half as many)."""
        return self.prompts_per_generation * self.num_generations // self.steps_per_generation


@dataclass
class Args(Settings):
    algo: str = arg("rloo", "the TRL trainer to run", choices=ALGOS)
    out_dir: str = arg("runs/trl_baselines", "run directory: policy/ (the exported HF policy) and result.json")
    seed: int = arg(0, "training seed")
    n_eval_prompts: int = arg(256, "held-out prompts of the evaluation (the full protocol uses 1024)")
    eval_seed: int = arg(0, "sampling seed of the evaluation (the protocol's default)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algo not in ALGOS:
            raise ConfigError(f"--algo must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.n_eval_prompts <= 0:
            raise ConfigError("--n-eval-prompts must be > 0")


def proxy_reward_function(reward_model: RewardModel) -> Callable[..., list[float]]:
    """Our reward model as a TRL reward function ``f(prompts, completions, **kw) -> list[float]``.

    It scores what the env scores (``EpisodeBatch.finish``): the prompt and the decoded response, stripped.
    TRL decodes completions with ``skip_special_tokens=True``, like the env, so the EOS is not in the text.
    """
    from rlhf_gym.scoring import checked_scores

    def proxy_reward(prompts: Sequence[str], completions: Sequence[str], **_) -> list[float]:
        responses = [c.strip() for c in completions]
        return checked_scores(reward_model(list(prompts), responses), prompts).tolist()

    return proxy_reward


def dpo_records(task: Task, comparisons: int = 0) -> dict[str, list[str]]:
    """The reward model's training comparisons as TRL's columns, responses with a leading space (see ADAPTATIONS)."""
    train = task.reward_model_comparisons()
    train = train[:comparisons] if comparisons else train
    return {"prompt": [r["prompt"] for r in train], "chosen": [" " + r["chosen"] for r in train],
            "rejected": [" " + r["rejected"] for r in train]}


def check_equal_prompt_lengths(tokenizer, prompts: Sequence[str]) -> None:
    """TRL forwards the policy without position ids, so its left-padded prompts must all have the same length."""
    lengths = {len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    if len(lengths) > 1:
        raise ConfigError(f"the prompts have {sorted(lengths)} tokens; TRL's RLOO/GRPO/online DPO would shift the "
                          "positions of the left-padded ones (it passes no position_ids)")


def common_config(out_dir: Path, seed: int, settings: Settings) -> dict:
    """TrainingArguments shared by the three trainers."""
    from rlhf_gym.utils import resolve_device

    device = resolve_device(settings.device)
    return dict(output_dir=str(out_dir / "trainer"), seed=seed, data_seed=seed, report_to="none", save_strategy="no",
                disable_tqdm=True, logging_steps=10, use_cpu=device.type == "cpu", bf16=False, fp16=False,
                gradient_checkpointing=False, gradient_accumulation_steps=1, learning_rate=settings.learning_rate,
                lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", adam_epsilon=settings.adam_epsilon,
                weight_decay=settings.weight_decay, max_grad_norm=settings.max_grad_norm, disable_dropout=True)


def our_defaults(algo: str) -> Any:
    """Our trainer's defaults for ``algo`` (its registered ``Config()``), read at run time so that TRL's follow them."""
    from rlhf_gym.agents.registry import get_algorithm

    return get_algorithm(algo).Config()


def build_trainer(algo: str, out_dir: Path, seed: int, settings: Settings, task: Task):
    """The configured TRL trainer for ``algo``, starting from the task's SFT policy."""
    from datasets import Dataset

    from rlhf_gym.utils import resolve_device

    common = common_config(out_dir, seed, settings)
    tokenizer, policy = task.load_tokenizer(), task.load_policy()
    if algo in ("dpo", "kto", "simpo"):
        comparisons = Dataset.from_dict(dpo_records(task, settings.comparisons))
        return offline_trainer(algo, policy, tokenizer, comparisons, common, settings)
    check_equal_prompt_lengths(tokenizer, task.train_prompts)
    dataset = Dataset.from_dict({"prompt": task.train_prompts})
    reward = proxy_reward_function(task.load_reward_model(str(resolve_device(settings.device))))
    sampling = dict(temperature=1.0, top_k=0, top_p=1.0, max_steps=settings.responses // settings.responses_per_step)
    if algo == "online_dpo":
        from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

        if settings.responses_per_step % 2:
            raise ConfigError(f"online DPO's optimizer steps take whole pairs: {settings.responses_per_step} responses "
                              "per step is odd")
        config = OnlineDPOConfig(**common, **sampling, beta=our_defaults(algo).dpo_beta, loss_type="sigmoid",
                                 per_device_train_batch_size=settings.responses_per_step // 2,
                                 max_new_tokens=task.max_new_tokens, missing_eos_penalty=None)
        return OnlineDPOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=dataset,
                                processing_class=tokenizer)
    rl = dict(**common, **sampling, per_device_train_batch_size=settings.responses_per_step,
              steps_per_generation=settings.steps_per_generation, num_generations=settings.num_generations,
              num_iterations=1, epsilon=settings.epsilon, max_completion_length=task.max_new_tokens)
    if algo == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        config = RLOOConfig(**rl, beta=settings.rloo_beta, normalize_advantages=False)
        return RLOOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer)
    from trl import GRPOConfig, GRPOTrainer

    config = GRPOConfig(**rl, beta=settings.grpo_beta, scale_rewards="group", loss_type="dapo")
    return GRPOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer)


def offline_trainer(algo: str, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, comparisons: Dataset,
                    common: dict, settings: Settings):
    """TRL's DPO, KTO or SimPO (CPO) trainer for one epoch over ``comparisons`` (the columns of :func:`dpo_records`)."""
    common = {**common, "num_train_epochs": 1}
    if algo == "dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**{**common, "learning_rate": settings.dpo_learning_rate}, beta=settings.dpo_beta,
                           loss_type=["sigmoid"], label_smoothing=0.0, per_device_train_batch_size=settings.dpo_batch_size,
                           max_length=None, precompute_ref_log_probs=True)
        return DPOTrainer(model=policy, args=config, train_dataset=comparisons, processing_class=tokenizer)
    ours = our_defaults(algo)
    common["learning_rate"] = ours.learning_rate
    if algo == "kto":
        from trl import unpair_preference_dataset
        from trl.experimental.kto import KTOConfig, KTOTrainer

        config = KTOConfig(**common, beta=ours.dpo_beta, loss_type="kto", desirable_weight=ours.desirable_weight,
                           undesirable_weight=ours.undesirable_weight, precompute_ref_log_probs=True,
                           per_device_train_batch_size=settings.kto_batch_size or ours.batch_size)
        examples = unpair_preference_dataset(comparisons).shuffle(seed=common["seed"])  # see ADAPTATIONS["kto"]
        trainer = KTOTrainer(model=policy, args=config, train_dataset=examples, processing_class=tokenizer)
        trainer.get_train_dataloader()  # the reference log-probs, now rather than inside train()
        return trainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    config = CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, alpha=0.0, label_smoothing=0.0, beta=ours.dpo_beta,
                       simpo_gamma=ours.simpo_gamma, per_device_train_batch_size=settings.simpo_batch_size or ours.batch_size)
    return CPOTrainer(model=policy, args=config, train_dataset=comparisons, processing_class=tokenizer)


RECORDED_CONFIG = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "optim", "adam_beta1", "adam_beta2", "adam_epsilon",
    "weight_decay", "max_grad_norm", "seed", "bf16", "gradient_checkpointing", "gradient_accumulation_steps",
    "per_device_train_batch_size", "max_steps", "num_train_epochs", "disable_dropout",
    # RLOO / GRPO
    "generation_batch_size", "steps_per_generation", "num_generations", "num_iterations", "epsilon", "epsilon_high",
    "beta", "max_completion_length", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
    "normalize_advantages", "scale_rewards", "loss_type", "importance_sampling_level", "mask_truncated_completions",
    "reward_clip_range", "shuffle_dataset",
    # online DPO
    "max_new_tokens", "missing_eos_penalty",
    # DPO / KTO / SimPO
    "label_smoothing", "max_length", "precompute_ref_log_probs", "truncation_mode", "desirable_weight",
    "undesirable_weight", "cpo_alpha", "simpo_gamma", "alpha",
)


def recorded_config(config) -> dict:
    """The TRL config values that matter (those the config has), as TRL holds them after its own ``__post_init__``."""
    values = {name: getattr(config, name) for name in RECORDED_CONFIG if hasattr(config, name)}
    return {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}  # enums (lr schedule, optim) by value


def train_trl(algo: str, out_dir: str | Path, seed: int = 0, settings: Settings | None = None) -> Path:
    """Train ``algo`` with TRL from the task's SFT policy; return the exported policy directory ``<out_dir>/policy``.

    Also writes ``<out_dir>/train.json``: the settings, the TRL config values, the adaptations, TRL's log history,
    the wall time (loading, set-up and training) and TRL's ``train_runtime`` (training alone).
    """
    if algo not in ALGOS:
        raise ConfigError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never reach for the hub
    from transformers import PrinterCallback

    settings = settings or Settings()
    out_dir, task = Path(out_dir), load_task("reviews")
    start = time.perf_counter()
    trainer = build_trainer(algo, out_dir, seed, settings, task)
    trainer.remove_callback(PrinterCallback)  # the log history goes to train.json instead
    runtime = trainer.train().metrics["train_runtime"]  # train() alone, without loading and TRL's set-up
    wall = time.perf_counter() - start
    with contextlib.suppress(OSError):  # TRL's output_dir stays empty (save_strategy="no"): remove it
        Path(trainer.args.output_dir).rmdir()
    policy_dir = out_dir / "policy"
    trainer.model.save_pretrained(policy_dir)
    task.load_tokenizer().save_pretrained(policy_dir)
    atomic_write_json(out_dir / "train.json", {
        "algo": algo, "seed": seed, "settings": asdict(settings), "trl_config": recorded_config(trainer.args),
        "adaptations": adaptations(algo),
        "optimizer_steps": trainer.state.global_step, "train_wall_s": wall, "train_runtime_s": runtime,
        "seconds_per_step": runtime / max(trainer.state.global_step, 1), "trl_log_history": trainer.state.log_history,
        "versions": versions()})
    return policy_dir


def versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}


def evaluate_trl(policy_dir: str | Path, n_eval_prompts: int = 256, seed: int = 0, device: str = "cpu") -> dict:
    """Our benchmark evaluation (``rlhf-gym evaluate --agent <policy_dir>``) of an exported policy."""
    from rlhf_gym.agents.evaluate import Args as EvaluateArgs
    from rlhf_gym.agents.evaluate import main as evaluate

    return evaluate(EvaluateArgs(agent=str(policy_dir), env_id=ENV_ID, n_eval_prompts=n_eval_prompts, seed=seed,
                                 device=device))


def main(args: Args) -> dict:
    """Train, export, evaluate; write ``<out_dir>/result.json``."""
    settings = Settings(**{name: getattr(args, name) for name in Settings.__dataclass_fields__})
    policy_dir = train_trl(args.algo, args.out_dir, args.seed, settings)
    start = time.perf_counter()
    evaluation = evaluate_trl(policy_dir, args.n_eval_prompts, args.eval_seed, args.device)
    result = {**read_json(Path(args.out_dir) / "train.json", ("train_wall_s",), "a TRL training record"),
              "policy": str(policy_dir), "eval_wall_s": time.perf_counter() - start, "evaluation": evaluation,
              "metrics": evaluation["metrics"], "args": asdict(args)}
    atomic_write_json(Path(args.out_dir) / "result.json", result)
    m = result["metrics"]
    print(f"TRL {args.algo} seed {args.seed}: gold {m['gold_reward']:.3f}, KL {m['kl']:.2f}, proxy {m['proxy_reward']:.3f}, "
          f"well-formed {m['well_formed']:.3f}; {result['optimizer_steps']} steps in {result['train_wall_s']:.0f} s "
          f"({result['seconds_per_step']:.2f} s/step)")
    return result

