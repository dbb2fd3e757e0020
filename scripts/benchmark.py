"""Throughput benchmark: our TokenPPO on the batched env vs TRL's PPOTrainer vs plain SB3 PPO per token.

One invocation runs the same PPO work through every system, one after the other on the same machine, each
in a fresh process (so that its peak RSS is its own):

* ``ours``: :class:`agents.TokenPPO` on :class:`envs.RLHFVecEnv` -- one rollout samples ``rollout_batch``
  responses in lock step with a KV cache; the update runs one forward pass per whole sequence per minibatch;
  the value head sits on the policy's trunk;
* ``ours-separate-critic``: the same with a separate value trunk initialised from the reward model
  (TRL's layout: two transformers are trained);
* ``trl``: ``trl.experimental.ppo.PPOTrainer`` (TRL 0.29), which needs a separate value model (here a copy of
  the reward model, as in TRL's examples);
* ``sb3-per-token``: ``stable_baselines3.PPO`` with :class:`agents.TransformerPolicy` on a ``DummyVecEnv`` of
  single :class:`envs.RLHFEnv` envs -- one full forward pass per (state, action) sample, in the rollout and in
  every update epoch (the design that the closest prior library measured at about 16 tokens/s).

Models are built locally from configs (random-init ``GPT2LMHeadModel`` policy and ``GPT2ForSequenceClassification``
reward model of the same size, a word-level tokenizer); no hub. Responses always have the full length: our env
gets a stop token outside the vocabulary (``stop_token=vocab_size``), TRL gets ``stop_token_id=None`` (its "no stop
token"), and SB3 runs episodes of exactly ``response_length`` steps. Optimizer steps are counted with a global
``torch.optim`` hook and reported per iteration: rollout batch 64, 4 minibatches of 16 responses, 4 epochs = 16
optimizer steps per iteration on every side (TRL: ``per_device_train_batch_size=64``,
``gradient_accumulation_steps=1``, ``num_mini_batches=4``; SB3: ``batch_size = 64 * 24 / 4`` (state, action) samples).

    python scripts/benchmark.py                                   # small + medium, all systems, scaling sweep
    python scripts/benchmark.py --quick --systems ours            # smoke test, under a minute
    python scripts/benchmark.py --configs gpt2 --device cuda --amp bf16 --sweep false

Writes ``benchmark.json`` and ``benchmark.md`` to ``--out-dir`` and prints the tables.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import multiprocessing
import os
import platform
import random
import resource
import shlex
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3
import torch
import transformers
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, GPT2Config,
                          GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast)
from transformers.utils import logging as hf_logging

from agents import TokenPPO, TransformerPolicy
from envs import RLHFEnv, RLHFVecEnv
from rlhf_gym.cli import arg, parse_dataclass
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.utils import atomic_write_json, atomic_write_text, resolve_device

SYSTEMS = {
    "ours": "rlhf-gym TokenPPO + RLHFVecEnv (value head on the policy trunk)",
    "ours-separate-critic": "rlhf-gym TokenPPO, separate value trunk (TRL's layout)",
    "trl": "TRL PPOTrainer (separate value model)",
    "sb3-per-token": "SB3 PPO + TransformerPolicy on DummyVecEnv(RLHFEnv), one forward per (state, action)",
}
PHASES = ("sampling", "scoring", "update")
TARGETS = (("small", "trl", 3.0), ("medium", "trl", 2.5), ("small", "sb3-per-token", 100.0),
           ("medium", "sb3-per-token", 100.0))
# Dense peak TFLOP/s per card, (bf16, fp32 without TF32), from NVIDIA's data sheets; the first name found in
# torch.cuda.get_device_name() wins.
PEAK_TFLOPS = {"H100 PCIe": (756.0, 51.0), "H100 NVL": (835.0, 60.0), "H100": (989.0, 67.0), "H200": (989.0, 67.0)}
# The same PPO hyper-parameters on every side (they do not change the amount of work).
LEARNING_RATE, BETA, VF_COEF, CLIP_RANGE, GAE_LAMBDA = 1e-5, 0.05, 0.1, 0.2, 0.95


@dataclass
class Args:
    configs: str = arg("small,medium", "comma-separated workloads: small, medium, gpt2 (CUDA only)")
    systems: str = arg("ours,ours-separate-critic,trl,sb3-per-token", f"comma-separated systems: {', '.join(SYSTEMS)}")
    iterations: int = arg(5, "timed PPO iterations per system (the median is reported)")
    warmup: int = arg(1, "untimed PPO iterations run first")
    sb3_iterations: int = arg(1, "timed iterations of the (slow) per-token SB3 baseline")
    sweep: bool = arg(True, "also run the scaling sweep of ours over response length and rollout batch")
    sweep_config: str = arg("small", "workload whose model the sweep uses")
    sweep_response_lengths: str = arg("12,24,48,96", "response lengths of the sweep (at the workload's rollout batch)")
    sweep_rollout_batches: str = arg("16,64,256", "rollout batches of the sweep (at the workload's response length)")
    quick: bool = arg(False, "tiny workload, 2 iterations, tiny sweep, 1 thread unless --threads: a smoke test "
                             "(overrides --configs, the iteration counts and the sweep sizes)")
    device: str = arg("auto", "auto, cpu or cuda")
    amp: str = arg("none", "mixed precision on CUDA: bf16 or none (float32); ignored on CPU")
    peak_tflops: float | None = arg(None, "peak TFLOP/s of the card for the update's MFU (default: by device name "
                                          "for H100/H200, for --amp's precision)")
    threads: int = arg(0, "torch CPU threads per process (0: torch's default)")
    seed: int = arg(0, "seed of model initialisation, prompts and sampling")
    out_dir: str = arg("benchmark_results", "where benchmark.json and benchmark.md are written")

    def __post_init__(self) -> None:
        if self.quick:
            self.configs, self.sweep_config = "quick", "quick"
            self.iterations, self.warmup, self.sb3_iterations = 1, 1, 1
            self.sweep_response_lengths, self.sweep_rollout_batches = "4,8", "4,8"
            self.threads = self.threads or 1  # tiny models gain nothing from threads, and lose a lot on a busy machine
        unknown = [c for c in split(self.configs) + [self.sweep_config] if c not in WORKLOADS]
        if unknown:
            raise ValueError(f"--configs/--sweep-config: unknown workload {unknown[0]!r} (known: {', '.join(WORKLOADS)})")
        unknown = [s for s in split(self.systems) if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"--systems: unknown system {unknown[0]!r} (known: {', '.join(SYSTEMS)})")
        for name in ("iterations", "sb3_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.threads < 0:
            raise ValueError("--warmup and --threads must be >= 0")
        if self.amp not in ("bf16", "none"):
            raise ValueError(f"--amp must be bf16 or none, got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, got {self.device!r}")


def split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


# ------------------------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    """One benchmark point: the model size and the PPO shape, identical for every system."""

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

    @property
    def optimizer_steps(self) -> int:
        return self.minibatches * self.epochs

    def describe(self) -> str:
        return (f"{self.n_layer} layers, width {self.n_embd}, vocabulary {self.vocab_size}; prompt {self.prompt_length}, "
                f"response {self.response_length}, rollout batch {self.rollout_batch}, {self.minibatches} minibatches x "
                f"{self.epochs} epochs = {self.optimizer_steps} optimizer steps per iteration")


WORKLOADS = {
    "quick": Workload("quick", n_layer=2, n_embd=32, vocab_size=64, prompt_length=4, response_length=8, rollout_batch=8,
                      minibatches=2, epochs=2),
    "small": Workload("small", n_layer=4, n_embd=128, vocab_size=512),
    "medium": Workload("medium", n_layer=6, n_embd=256, vocab_size=2048),
    "gpt2": Workload("gpt2", n_layer=12, n_embd=768, vocab_size=50257, n_positions=1024),
}


@dataclass(frozen=True)
class ModelFiles:
    """The saved policy (also the reference) and reward model, and the prompts, of one workload."""

    policy: str
    reward: str
    prompts: list[str]


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer ``<pad>, <eos>, <unk>, w3, ..., w{vocab_size - 1}`` (one id per word)."""
    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(len(specials), vocab_size)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_models(workload: Workload, directory: Path, seed: int) -> ModelFiles:
    """Random-init GPT-2 policy and reward model of the workload's size, saved with their tokenizer, and prompts
    of exactly ``prompt_length`` words (so that no system pads them)."""
    tokenizer = word_tokenizer(workload.vocab_size)
    config = dict(vocab_size=workload.vocab_size, n_positions=workload.n_positions, n_embd=workload.n_embd,
                  n_layer=workload.n_layer, n_head=max(1, workload.n_embd // 64), bos_token_id=tokenizer.eos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    policy, reward = directory / "policy", directory / "reward_model"
    GPT2LMHeadModel(GPT2Config(**config)).save_pretrained(policy)
    GPT2ForSequenceClassification(GPT2Config(**config, num_labels=1)).save_pretrained(reward)
    for path in (policy, reward):
        tokenizer.save_pretrained(path)
    rng = random.Random(seed)
    n_prompts = max(512, 2 * workload.rollout_batch)
    prompts = [" ".join(f"w{rng.randrange(3, workload.vocab_size)}" for _ in range(workload.prompt_length))
               for _ in range(n_prompts)]
    return ModelFiles(str(policy), str(reward), prompts)


# ------------------------------------------------------------------------------------------- timing
class PhaseClock:
    """Wall-clock time of each PPO iteration and of the phases inside it.

    ``lap()`` closes the current iteration and opens the next (time before the first lap is not recorded).
    ``timed(fn, phase)`` adds the time spent in ``fn`` to ``phase``, less the time of timed calls nested in it,
    in the iteration where the call returns.
    ``mark(phase)`` is for code that cannot be wrapped: the phase lasts from its first to its last mark in the
    iteration. ``count(name)`` counts events. On CUDA the clock synchronises before every reading.
    """

    def __init__(self, device: torch.device):
        self.sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.iterations: list[dict[str, float]] = []
        self._started: float | None = None
        self._nested: list[float] = []  # per open timed call: the time of the timed calls nested in it
        self._reset()

    def _reset(self) -> None:
        self._times: dict[str, float] = defaultdict(float)
        self._marks: dict[str, tuple[float, float]] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def lap(self) -> None:
        now = self.now()
        if self._started is not None:
            times = dict(self._times)
            for phase, (first, last) in self._marks.items():
                times[phase] = times.get(phase, 0.0) + last - first
            record = {"seconds": now - self._started, **{p: times.get(p, 0.0) for p in PHASES}, **self._counts}
            # Clamped: a timed call that began just before the lap makes the rest a few microseconds negative.
            record["other"] = max(0.0, record["seconds"] - sum(record[p] for p in PHASES))
            self.iterations.append(record)
        self._started = now
        self._reset()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        self._nested.append(0.0)
        try:
            yield
        finally:
            elapsed = self.now() - start
            self._times[name] += elapsed - self._nested.pop()
            if self._nested:
                self._nested[-1] += elapsed

    def timed(self, fn: Callable, name: str) -> Callable:
        def wrapper(*args, **kwargs):
            with self.phase(name):
                return fn(*args, **kwargs)
        return wrapper

    def mark(self, name: str) -> None:
        now = self.now()
        self._marks[name] = (self._marks.get(name, (now, now))[0], now)

    def count(self, name: str) -> None:
        self._counts[name] += 1


class LapAtRolloutStart(BaseCallback):
    """SB3 callback: one PPO iteration runs from one rollout's start to the next."""

    def __init__(self, clock: PhaseClock):
        super().__init__()
        self.clock = clock

    def _on_rollout_start(self) -> None:
        self.clock.lap()

    def _on_step(self) -> bool:
        return True


@dataclass
class Run:
    """What one system measured."""

    iterations: list[dict[str, float]]
    trainable_parameters: int
    mean_response_length: float
    update_tokens: int  # tokens through forward + backward per iteration, all minibatches and epochs


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------- systems
def run_ours(workload: Workload, files: ModelFiles, args: Args, device: torch.device, clock: PhaseClock,
             separate_critic: bool = False) -> Run:
    """TokenPPO on the batched env: KV-cached sampling, one reference and one reward pass per rollout."""
    env = RLHFVecEnv(num_envs=workload.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                     prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                     max_new_tokens=workload.response_length, beta=BETA, stop_token=workload.vocab_size, device=device)
    policy_kwargs: dict[str, Any] = {"model_name_or_path": files.policy}
    if separate_critic:
        policy_kwargs.update(share_trunk=False, value_init="reward_model", reward_model_path=files.reward)
    model = TokenPPO("TransformerPolicy", env, learning_rate=LEARNING_RATE,
                     batch_size=workload.rollout_batch // workload.minibatches, n_epochs=workload.epochs,
                     gae_lambda=GAE_LAMBDA, clip_range=CLIP_RANGE, clip_range_vf=CLIP_RANGE, vf_coef=VF_COEF,
                     amp=None if args.amp == "none" else args.amp, seed=args.seed, device=device,
                     policy_kwargs=policy_kwargs)
    # The sampling phase is the rollout less the scoring of finished responses nested in it.
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")
    env.vector_env.state.finish = clock.timed(env.vector_env.state.finish, "scoring")
    model.train = clock.timed(model.train, "update")
    n_iterations = args.warmup + args.iterations
    model.learn(n_iterations * workload.rollout_batch * workload.response_length, callback=LapAtRolloutStart(clock),
                progress_bar=False)
    clock.lap()
    lengths = [info["response_length"] for info in model.last_rollout_infos]
    update_tokens = workload.epochs * workload.rollout_batch * (workload.prompt_length + workload.response_length)
    return Run(clock.iterations, trainable(model.policy), float(np.mean(lengths)), update_tokens)


def run_trl(workload: Workload, files: ModelFiles, args: Args, device: torch.device, clock: PhaseClock) -> Run:
    """TRL's PPOTrainer with the same models, batch shape and PPO epochs (and its own separate value model)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

    class LapAtStepEnd(TrainerCallback):
        def on_train_begin(self, *_, **__):
            clock.lap()

        def on_step_end(self, *_, **__):
            clock.lap()

    tokenizer = AutoTokenizer.from_pretrained(files.policy, padding_side="left")
    n_iterations = args.warmup + args.iterations
    config = PPOConfig(
        output_dir=str(Path(files.policy).parent / "trl_output"), seed=args.seed, report_to="none", save_strategy="no",
        disable_tqdm=True, num_sample_generations=0, gradient_checkpointing=False,
        bf16=args.amp == "bf16" and device.type == "cuda", use_cpu=device.type == "cpu",
        total_episodes=n_iterations * workload.rollout_batch, per_device_train_batch_size=workload.rollout_batch,
        gradient_accumulation_steps=1, num_mini_batches=workload.minibatches, num_ppo_epochs=workload.epochs,
        local_rollout_forward_batch_size=workload.rollout_batch, response_length=workload.response_length,
        stop_token=None, stop_token_id=None, temperature=1.0, learning_rate=LEARNING_RATE, kl_coef=BETA,
        kl_estimator="k1", cliprange=CLIP_RANGE, cliprange_value=CLIP_RANGE, vf_coef=VF_COEF, gamma=1.0, lam=GAE_LAMBDA,
    )
    prompts = Dataset.from_dict({"input_ids": [tokenizer(p, add_special_tokens=False)["input_ids"] for p in files.prompts]})
    trainer = PPOTrainer(
        args=config, processing_class=tokenizer, train_dataset=prompts,
        model=AutoModelForCausalLM.from_pretrained(files.policy),
        ref_model=AutoModelForCausalLM.from_pretrained(files.policy),
        reward_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        value_model=AutoModelForSequenceClassification.from_pretrained(files.reward),
        callbacks=[LapAtStepEnd()],
    )
    trainer.remove_callback(PrinterCallback)
    # TRL's train() is one function; time it through the module-level helpers it calls. The update is the span
    # from the first forward pass with gradients to the last optimizer step of the iteration.
    generated_lengths: list[int] = []
    generate = ppo_trainer.batch_generation

    def batch_generation(model, queries, *rest):
        with clock.phase("sampling"):
            query_responses, logits = generate(model, queries, *rest)
        generated_lengths.append(query_responses.shape[1] - queries.shape[1])
        return query_responses, logits

    forward = ppo_trainer.forward

    def timed_forward(model, query_responses, pad_token_id):
        if torch.is_grad_enabled():
            clock.mark("update")
            return forward(model, query_responses, pad_token_id)
        with clock.phase("scoring"):
            return forward(model, query_responses, pad_token_id)

    ppo_trainer.batch_generation, ppo_trainer.forward = batch_generation, timed_forward
    ppo_trainer.get_reward = clock.timed(ppo_trainer.get_reward, "scoring")
    register_optimizer_step_post_hook(lambda *_: clock.mark("update"))
    trainer.train()
    update_tokens = workload.epochs * workload.rollout_batch * (workload.prompt_length + workload.response_length)
    return Run(clock.iterations, trainable(trainer.model), float(np.mean(generated_lengths)), update_tokens)


def run_sb3_per_token(workload: Workload, files: ModelFiles, args: Args, device: torch.device, clock: PhaseClock) -> Run:
    """Plain SB3 PPO on single envs: every (state, action) sample is a full forward pass over its context."""
    tokenizer = AutoTokenizer.from_pretrained(files.policy)
    ref_model = AutoModelForCausalLM.from_pretrained(files.policy)
    reward_model = RewardModel.from_pretrained(files.reward, device=device)

    def make_env() -> Monitor:
        return Monitor(RLHFEnv(task=None, ref_model=ref_model, tokenizer=tokenizer, reward_model=reward_model,
                               prompts=files.prompts, max_prompt_tokens=workload.prompt_length,
                               max_new_tokens=workload.response_length, beta=BETA, stop_token=workload.vocab_size,
                               device=device))

    vec_env = DummyVecEnv([make_env] * workload.rollout_batch)
    samples = workload.rollout_batch * workload.response_length
    model = PPO(TransformerPolicy, vec_env, learning_rate=LEARNING_RATE, n_steps=workload.response_length,
                batch_size=samples // workload.minibatches, n_epochs=workload.epochs, gamma=1.0, gae_lambda=GAE_LAMBDA,
                clip_range=CLIP_RANGE, clip_range_vf=CLIP_RANGE, vf_coef=VF_COEF, max_grad_norm=1.0, seed=args.seed,
                device=device, policy_kwargs={"model_name_or_path": files.policy})
    model.collect_rollouts = clock.timed(model.collect_rollouts, "sampling")
    for env in vec_env.envs:
        env.unwrapped.state.finish = clock.timed(env.unwrapped.state.finish, "scoring")
    model.train = clock.timed(model.train, "update")
    model.learn((args.warmup + args.sb3_iterations) * samples, callback=LapAtRolloutStart(clock), progress_bar=False)
    clock.lap()
    lengths = [episode["l"] for episode in model.ep_info_buffer]
    update_tokens = workload.epochs * samples * (workload.prompt_length + workload.response_length)
    return Run(clock.iterations, trainable(model.policy), float(np.mean(lengths)), update_tokens)


# ------------------------------------------------------------------------------------------- measuring
def quiet() -> None:
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def peak_tflops(args: Args, device: torch.device) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for card, (bf16, fp32) in PEAK_TFLOPS.items():
        if card in name:
            return bf16 if args.amp == "bf16" else fp32
    return None


def measure(system: str, workload: Workload, files: ModelFiles, args: Args, device_name: str) -> dict[str, Any]:
    """Run one system on one workload (in its own process) and summarise its timings and memory."""
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(device_name)
    rss_after_imports, load_before = peak_rss_mb(), os.getloadavg()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = PhaseClock(device)
    hook = register_optimizer_step_post_hook(lambda *_: clock.count("optimizer_steps"))
    try:
        if system == "trl":
            run = run_trl(workload, files, args, device, clock)
        elif system == "sb3-per-token":
            run = run_sb3_per_token(workload, files, args, device, clock)
        else:
            run = run_ours(workload, files, args, device, clock, separate_critic=system == "ours-separate-critic")
    finally:
        hook.remove()
    timed = run.iterations[args.warmup:]
    median = {key: float(np.median([it.get(key, 0.0) for it in timed])) for key in ("seconds", *PHASES, "other",
                                                                                      "optimizer_steps")}
    tokens = workload.rollout_batch * run.mean_response_length
    update_flops = 6 * run.trainable_parameters * run.update_tokens
    peak = peak_tflops(args, device)
    return {
        "config": workload.name, "system": system, "description": SYSTEMS[system],
        "seconds_per_iteration": median["seconds"], "response_tokens_per_second": tokens / median["seconds"],
        "phases": {key: median[key] for key in (*PHASES, "other")},
        "optimizer_steps_per_iteration": int(median["optimizer_steps"]),
        "mean_response_length": run.mean_response_length, "trainable_parameters": run.trainable_parameters,
        "update_tokens_per_iteration": run.update_tokens,
        "update_tflops_per_second": update_flops / median["update"] / 1e12,
        "update_mfu": update_flops / median["update"] / (peak * 1e12) if peak else None,
        "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": rss_after_imports,
        "cuda_max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "timed_iterations": len(timed), "iterations": run.iterations, "threads": torch.get_num_threads(),
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
    }


def measure_sweep(base: Workload, files: ModelFiles, args: Args, device_name: str) -> list[dict[str, Any]]:
    """Ours over response lengths (at the base rollout batch) and rollout batches (at the base response length)."""
    points = [(length, base.rollout_batch) for length in map(int, split(args.sweep_response_lengths))]
    points += [(base.response_length, batch) for batch in map(int, split(args.sweep_rollout_batches))]
    rows = []
    for length, batch in dict.fromkeys(points):
        workload = dataclasses.replace(base, response_length=length, rollout_batch=batch)
        result = measure("ours", workload, files, args, device_name)
        rows.append({"response_length": length, "rollout_batch": batch, **{k: result[k] for k in (
            "seconds_per_iteration", "response_tokens_per_second", "phases", "optimizer_steps_per_iteration")}})
    return rows


def in_fresh_process(fn: Callable, *fn_args: Any) -> Any:
    """``fn(*fn_args)`` in a new process: its own peak RSS, torch state and monkey-patches. Where it can, the process
    forks from a server that has imported this script once (so it starts in a moment) and never ran a torch op."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context(method)) as pool:
        return pool.submit(fn, *fn_args).result()


# ------------------------------------------------------------------------------------------- report
def growth_exponent(rows: list[dict], key: str) -> float | None:
    """Slope of log(seconds per iteration) against log(key): 1 is linear growth, 2 quadratic."""
    if len(rows) < 2:
        return None
    x = np.log([row[key] for row in rows])
    y = np.log([row["seconds_per_iteration"] for row in rows])
    return float(np.polyfit(x, y, 1)[0])


def check_targets(results: list[dict]) -> list[dict]:
    by_key = {(r["config"], r["system"]): r for r in results}
    checks = []
    for config, baseline, required in TARGETS:
        if (config, "ours") in by_key and (config, baseline) in by_key:
            ours, other = by_key[config, "ours"], by_key[config, baseline]
            speedup = ours["response_tokens_per_second"] / other["response_tokens_per_second"]
            checks.append({"config": config, "baseline": baseline, "required": required, "measured": speedup,
                           "met": speedup >= required})
    return checks


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    versions = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "stable_baselines3": stable_baselines3.__version__}
    if importlib.util.find_spec("trl"):
        from importlib.metadata import version

        versions["trl"] = version("trl")
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "versions": versions}


def markdown(report: dict[str, Any]) -> str:
    cuda = report["machine"]["gpu"] is not None
    threads = sorted({r["threads"] for r in report["results"]})
    lines = [f"Benchmark of {report['date']} on {report['machine']['cpu']} ({report['machine']['cpu_cores']} CPU cores, "
             f"torch threads {', '.join(map(str, threads))}, device {report['machine']['device']}"
             + (f", {report['machine']['gpu']}" if cuda else "") + f", precision {report['precision']}).",
             f"Command: `{report['command']}`", "",
             "Medians over the timed iterations. Phases: sampling = generating the responses, scoring = reference "
             "log-probs and reward (and TRL's value model), update = the PPO epochs; other = the rest of the iteration. "
             "update GFLOP/s = 6 x trained parameters x tokens through the update / update time. "
             "load = the 1-minute load average when the system started.", ""]
    for config in dict.fromkeys(r["config"] for r in report["results"]):
        rows = [r for r in report["results"] if r["config"] == config]
        ours = next((r for r in rows if r["system"] == "ours"), None)
        lines += [f"### {config}: {WORKLOADS[config].describe()}", "",
                  "| system | s / iteration | response tokens / s | sampling s | scoring s | update s | other s "
                  "| optimizer steps | update GFLOP/s | peak RSS MB |" + (" CUDA peak MB | update MFU |" if cuda else "")
                  + " ours is x faster | load |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if cuda else "") + "---:|---:|"]
        for r in rows:
            phases = r["phases"]
            speedup = ours["response_tokens_per_second"] / r["response_tokens_per_second"] if ours else float("nan")
            row = (f"| {r['system']} | {r['seconds_per_iteration']:.3f} | {r['response_tokens_per_second']:,.0f} "
                   f"| {phases['sampling']:.3f} | {phases['scoring']:.3f} | {phases['update']:.3f} | {phases['other']:.3f} "
                   f"| {r['optimizer_steps_per_iteration']} | {1000 * r['update_tflops_per_second']:,.1f} "
                   f"| {r['peak_rss_mb']:,.0f} |")
            if cuda:
                mfu = f"{100 * r['update_mfu']:.1f}%" if r["update_mfu"] is not None else "n/a"
                row += f" {r['cuda_max_memory_allocated_mb']:,.0f} | {mfu} |"
            lines.append(row + f" {speedup:,.1f} | {r['load_average']['before']:.1f} |")
        lines.append("")
    if report["sweep"]:
        lines += [f"### Scaling of ours ({report['sweep_config']} model)", "",
                  "| response length | rollout batch | s / iteration | response tokens / s | sampling s | scoring s "
                  "| update s |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in report["sweep"]:
            p = r["phases"]
            lines.append(f"| {r['response_length']} | {r['rollout_batch']} | {r['seconds_per_iteration']:.3f} "
                         f"| {r['response_tokens_per_second']:,.0f} | {p['sampling']:.3f} | {p['scoring']:.3f} "
                         f"| {p['update']:.3f} |")
        exponents = report["growth_exponents"]
        lines += ["", "Growth of s / iteration (slope on log-log axes; 1 = linear, 2 = quadratic): "
                  + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in exponents.items() if v is not None), ""]
    if report["targets"]:
        lines += ["### Targets (ours' response tokens / s over the baseline's)", "",
                  "| config | baseline | required | measured | met |", "|---|---|---:|---:|---|"]
        for t in report["targets"]:
            lines.append(f"| {t['config']} | {t['baseline']} | {t['required']:g}x | {t['measured']:.1f}x "
                         f"| {'yes' if t['met'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main
def main(args: Args) -> dict[str, Any]:
    quiet()
    device = resolve_device(args.device)
    configs, systems = split(args.configs), split(args.systems)
    if "gpt2" in configs and device.type != "cuda":
        raise SystemExit("--configs gpt2 runs on CUDA only (--device cuda)")
    if "trl" in systems and importlib.util.find_spec("trl") is None:
        print("trl is not installed (pip install trl==0.29.1): skipping the TRL baseline")
        systems.remove("trl")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; device {device}")
    results, sweep = [], []
    base = WORKLOADS[args.sweep_config]
    with tempfile.TemporaryDirectory(prefix="rlhf-gym-benchmark-") as tmp:
        files = {}
        for config in configs:
            files[config] = build_models(WORKLOADS[config], Path(tmp) / config, args.seed)
            for system in systems:
                print(f"[{config}] {system} ...", flush=True)
                results.append(in_fresh_process(measure, system, WORKLOADS[config], files[config], args, str(device)))
                print(f"[{config}] {system}: {results[-1]['seconds_per_iteration']:.3f} s/iteration", flush=True)
        if args.sweep:
            if base.name not in files:
                files[base.name] = build_models(base, Path(tmp) / base.name, args.seed)
            print(f"[sweep] ours on {base.name} ...", flush=True)
            sweep = in_fresh_process(measure_sweep, base, files[base.name], args, str(device))
    by_length = [r for r in sweep if r["rollout_batch"] == base.rollout_batch]
    by_batch = [r for r in sweep if r["response_length"] == base.response_length]
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "scripts/benchmark.py", *sys.argv[1:]]),
        "machine": machine_info(device),
        "precision": "bf16 autocast" if args.amp == "bf16" and device.type == "cuda" else "float32",
        "args": dataclasses.asdict(args), "workloads": {c: dataclasses.asdict(WORKLOADS[c]) for c in configs},
        "results": results, "targets": check_targets(results), "sweep": sweep, "sweep_config": args.sweep_config,
        "growth_exponents": {"response_length": growth_exponent(by_length, "response_length"),
                             "rollout_batch": growth_exponent(by_batch, "rollout_batch")},
    }
    table = markdown(report)
    out_dir = Path(args.out_dir)
    atomic_write_json(out_dir / "benchmark.json", report)
    atomic_write_text(out_dir / "benchmark.md", table + "\n")
    print(table)
    print(f"wrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}")
    return report


if __name__ == "__main__":
    main(parse_dataclass(Args, __doc__))
