"""Train an RLHF policy with token-level PPO (or NLPO) on a registered env id — the main job of rlhf-gym.

With no arguments it runs the embedded default end to end, offline, on CPU or GPU: build ``RLHF-v0``'s
batched env, train, and write to ``runs/<env_id>__<exp_name>__<seed>__<time>/``: the SB3 agent (agent.zip),
checkpoints, the exported HF policy (policy/), TensorBoard logs, the learning curve (learning_curve.png,
curve.jsonl) and a before/after table on held-out prompts (summary.json).

    rlhf-gym train                                  # or: python scripts/train_agent.py
    rlhf-gym train --beta 0.01 --total-timesteps 200000 --seed 1
    rlhf-gym train --algo nlpo --mask-top-p 0.9     # NLPO (Ramamurthy et al. 2022)
    rlhf-gym train --env-id RLHF-Reviews-Short-v0
    rlhf-gym train --resume runs/<run>/checkpoints/agent_30720_steps.zip
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.evaluation import Evaluation
from rlhf_gym.plots import plot_learning_curve
from rlhf_gym.utils import atomic_write_json

from .callbacks import LearningCurveCallback, read_curve
from .experiment import TrainConfig, build_env_and_agent, env_settings, held_out_evaluator


@dataclass
class Args(TrainConfig):
    """A training run: :class:`agents.experiment.TrainConfig` plus its budget and outputs."""

    exp_name: str = arg("train_agent", "name of this experiment (part of the run directory's name)")
    total_timesteps: int = arg(76800, "environment steps (tokens x rows) to train for")
    n_eval_prompts: int = arg(256, "held-out prompts for the before/after table")
    out_dir: str = arg("runs", "where run directories are created")
    checkpoint_freq: int = arg(240, "save a checkpoint every this many vector steps")
    resume: str | None = arg(None, "checkpoint .zip to resume from (continues its run directory, beta, optimizer and "
                                   "step count)")
    progress_bar: bool = arg(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("total_timesteps", "n_eval_prompts", "checkpoint_freq"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.resume is not None and not Path(self.resume).is_file():
            raise MissingFileError(f"--resume: checkpoint not found: {self.resume}")


def report(before: Evaluation, after: Evaluation, console: Console) -> dict:
    """Print the before/after table and three samples of each; return them for summary.json."""
    table = Table(title="Held-out prompts: SFT reference vs. trained policy")
    table.add_column("metric")
    table.add_column("before (SFT)", justify="right")
    table.add_column("after (RL)", justify="right")
    b, a = before.summary(), after.summary()
    for key in b:
        table.add_row(key, f"{b[key]:.3f}", f"{a[key]:.3f}")
    console.print(table)
    for name, ev in (("before", before), ("after", after)):
        console.print(f"[bold]{name}[/bold] samples:")
        for i in range(3):
            console.print(f"  {ev.prompts[i]} [cyan]{ev.responses[i]}[/cyan]")
    return {"before": b, "after": a, "samples": {"before": before.responses[:3], "after": after.responses[:3],
                                                 "prompts": before.prompts[:3]}}


def run_directory(args: Args) -> Path:
    """CleanRL's run name ``{env_id}__{exp_name}__{seed}__{time}``, or the run a resumed checkpoint belongs to."""
    if args.resume:
        return Path(args.resume).resolve().parent.parent
    return Path(args.out_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"


def main(args: Args) -> Path:
    console = Console()
    started = time.time()
    run_dir = run_directory(args)
    env, model = build_env_and_agent(args, tensorboard_log=run_dir, resume=args.resume)  # bad input fails before any file
    settings = {**asdict(args), "env": env_settings(env)}
    atomic_write_json(run_dir / "args.json", settings)
    console.print(f"[bold]run directory[/bold] {run_dir}  (device: {model.device})")
    console.print("\n".join(f"  {k} = {v}" for k, v in asdict(args).items()))
    console.print("  env: " + ", ".join(f"{k} = {v}" for k, v in settings["env"].items()))
    if args.resume:
        console.print(f"resumed from {args.resume} at step {model.num_timesteps}, beta {env.beta:.4f}")
    evaluate = held_out_evaluator(env, args.n_eval_prompts, args.seed)
    before = evaluate(env.batched_env.ref_model)

    callbacks = CallbackList([
        CheckpointCallback(save_freq=args.checkpoint_freq, save_path=str(run_dir / "checkpoints"), name_prefix="agent"),
        LearningCurveCallback(run_dir / "curve.jsonl"),
    ])
    model.learn(args.total_timesteps, callback=callbacks, progress_bar=args.progress_bar, tb_log_name="tensorboard",
                reset_num_timesteps=not args.resume)
    model.save(run_dir / "agent.zip")
    model.export_pretrained(run_dir / "policy")

    after = evaluate(model.policy.lm)
    summary = report(before, after, console)
    curve = read_curve(run_dir / "curve.jsonl")
    if curve:
        plot_learning_curve(curve, run_dir / "learning_curve.png", title=f"{args.env_id}: beta={env.beta:g}, seed={args.seed}")
    summary.update(seconds=round(time.time() - started, 1), timesteps=int(model.num_timesteps), device=str(model.device),
                   final_beta=float(env.beta))
    atomic_write_json(run_dir / "summary.json", summary)
    console.print(f"done in {summary['seconds']:.0f} s: agent.zip, policy/, learning_curve.png, summary.json in {run_dir}")
    return run_dir
