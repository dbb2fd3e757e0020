"""Train an RLHF policy with token-level PPO on RLHF-v0 — the main job of rlhf-gym.

With no arguments it runs the embedded default end to end, offline, on CPU or GPU: load the shipped
reviews task, train on the batched env, and write to runs/RLHF-v0__train_agent__<seed>__<time>/:
the SB3 agent (agent.zip), checkpoints, the exported HF policy (policy/), TensorBoard logs, the
learning curve (learning_curve.png, curve.jsonl) and a before/after table (summary.json).

    python scripts/train_agent.py
    python scripts/train_agent.py --beta 0.01 --total-timesteps 200000 --seed 1
    python scripts/train_agent.py --algo nlpo --mask-top-p 0.9       # NLPO (Ramamurthy et al. 2022)
    python scripts/train_agent.py --resume runs/<run>/checkpoints/agent_30720_steps.zip
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback

from agents import TokenPPO
from agents.callbacks import LearningCurveCallback, read_curve
from envs import RLHFVecEnv
from rlhf_gym.cli import arg, run
from rlhf_gym.evaluation import Evaluation, evaluate_policy
from rlhf_gym.plots import plot_learning_curve
from rlhf_gym.tasks import load_task
from rlhf_gym.utils import atomic_write_json, resolve_device


@dataclass
class Args:
    exp_name: str = arg("train_agent", "name of this experiment (part of the run directory's name)")
    algo: str = arg("ppo", "ppo, or nlpo (PPO with top-p action masks from a periodically refreshed copy of the policy)")
    seed: int = arg(0, "seed of everything: prompts, sampling, initialisation, minibatch order")
    task: str = arg("reviews", "task id (the embedded default: reviews)")
    model: str | None = arg(None, "policy to start from: HF causal LM id or directory (default: the task's SFT policy)")
    ref_model: str | None = arg(None, "frozen reference policy for the KL term (default: the task's SFT policy)")
    reward_model: str | None = arg(None, "reward model: HF id or directory (default: the task's reward model)")
    prompts: str | None = arg(None, "training prompts: .jsonl (field 'prompt') or .txt file (default: the task's train split)")
    n_eval_prompts: int = arg(256, "held-out prompts for the before/after table")
    beta: float = arg(0.1, "KL coefficient beta (initial value when --target-kl is set)")
    target_kl: float | None = arg(None, "turn on the adaptive KL controller (Ziegler et al. 2019) with this target KL per response")
    kl_estimator: str = arg("k1", "per-token KL estimator: k1 or k3")
    kl_penalty: str = arg("terminal", "where the KL penalty is paid: terminal or per_token")
    total_timesteps: int = arg(76800, "environment steps (tokens x rows) to train for")
    n_envs: int = arg(64, "responses per rollout (rows of the batched env)")
    batch_size: int = arg(16, "minibatch size in responses")
    n_epochs: int = arg(4, "PPO epochs per rollout")
    max_new_tokens: int = arg(24, "response budget in tokens")
    learning_rate: float = arg(3e-4, "AdamW learning rate")
    temperature: float = arg(1.0, "sampling temperature")
    ent_coef: float = arg(0.0, "entropy bonus")
    vf_coef: float = arg(0.5, "value loss weight")
    gae_lambda: float = arg(0.95, "GAE lambda")
    mask_top_p: float = arg(0.9, "nlpo: keep the tokens in this top-p mass of the masking policy")
    mask_refresh_every: int = arg(5, "nlpo: copy the policy into the masking policy every this many rollouts")
    device: str = arg("auto", "cpu, cuda or auto (CUDA when present)")
    amp: str = arg("bf16", "mixed precision on CUDA: bf16, fp16 or none (ignored on CPU)")
    output_dir: str = arg("runs", "where run directories are created")
    checkpoint_freq: int = arg(240, "save a checkpoint every this many vector steps")
    resume: str | None = arg(None, "checkpoint .zip to resume from (continues its run directory, beta, optimizer and step count)")
    progress_bar: bool = arg(True, "show a progress bar")

    def __post_init__(self) -> None:
        positive = ("total_timesteps", "n_envs", "batch_size", "n_epochs", "max_new_tokens", "learning_rate", "temperature",
                    "n_eval_prompts", "checkpoint_freq")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"--beta must be >= 0, got {self.beta}")
        if self.algo not in ("ppo", "nlpo"):
            raise ValueError(f"--algo must be ppo or nlpo, got {self.algo!r}")
        if not 0 < self.mask_top_p <= 1 or self.mask_refresh_every <= 0:
            raise ValueError("--mask-top-p must be in (0, 1] and --mask-refresh-every > 0")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"--kl-estimator must be k1 or k3, got {self.kl_estimator!r}")
        if self.kl_penalty not in ("terminal", "per_token"):
            raise ValueError(f"--kl-penalty must be terminal or per_token, got {self.kl_penalty!r}")
        if self.amp not in ("bf16", "fp16", "none"):
            raise ValueError(f"--amp must be bf16, fp16 or none, got {self.amp!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"--device must be cpu, cuda[:N] or auto, got {self.device!r}")
        if self.resume is not None and not Path(self.resume).is_file():
            raise ValueError(f"--resume: checkpoint not found: {self.resume}")


def evaluate(lm, env: RLHFVecEnv, task, prompts: list[str], args: Args) -> Evaluation:
    setup = env.vector_env.setup
    return evaluate_policy(lm, setup.tokenizer, prompts, setup.reward_fn, setup.ref_model, task, args.max_new_tokens,
                           args.temperature, seed=args.seed + 10_000)


def report(before: Evaluation, after: Evaluation, console: Console) -> dict:
    table = Table(title="Held-out prompts: SFT reference vs. trained policy")
    table.add_column("metric")
    table.add_column("before (SFT)", justify="right")
    table.add_column("after (PPO)", justify="right")
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


def main(args: Args) -> Path:
    console = Console()
    started = time.time()
    device = resolve_device(args.device)
    if args.resume:
        run_dir = Path(args.resume).resolve().parent.parent
    else:
        run_dir = Path(args.output_dir) / f"RLHF-v0__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "args.json", asdict(args))
    console.print(f"[bold]run directory[/bold] {run_dir}  (device: {device})")
    console.print("\n".join(f"  {k} = {v}" for k, v in asdict(args).items()))

    task = load_task(args.task)
    env = RLHFVecEnv(num_envs=args.n_envs, task=task, ref_model=args.ref_model, reward_model=args.reward_model,
                     prompts=args.prompts, max_new_tokens=args.max_new_tokens, beta=args.beta, target_kl=args.target_kl,
                     kl_estimator=args.kl_estimator, kl_penalty=args.kl_penalty, temperature=args.temperature, device=device,
                     mask_top_p=args.mask_top_p if args.algo == "nlpo" else None)
    amp = None if args.amp == "none" else args.amp
    if args.resume:
        model = TokenPPO.load(args.resume, env=env, device=device)
        console.print(f"resumed from {args.resume} at step {model.num_timesteps}, beta {env.vector_env.beta:.4f}")
    else:
        model = TokenPPO("TransformerPolicy", env, learning_rate=args.learning_rate, batch_size=args.batch_size,
                         n_epochs=args.n_epochs, gae_lambda=args.gae_lambda, ent_coef=args.ent_coef, vf_coef=args.vf_coef,
                         amp=amp, seed=args.seed, device=device, tensorboard_log=str(run_dir),
                         use_action_masks=args.algo == "nlpo", mask_refresh_every=args.mask_refresh_every,
                         policy_kwargs={"model_name_or_path": args.model, "temperature": args.temperature})
    eval_prompts = task.eval_prompts[: args.n_eval_prompts]
    before = evaluate(env.vector_env.setup.ref_model, env, task, eval_prompts, args)

    callbacks = CallbackList([
        CheckpointCallback(save_freq=args.checkpoint_freq, save_path=str(run_dir / "checkpoints"), name_prefix="agent"),
        LearningCurveCallback(run_dir / "curve.jsonl"),
    ])
    model.learn(args.total_timesteps, callback=callbacks, progress_bar=args.progress_bar, tb_log_name="tensorboard",
                reset_num_timesteps=not args.resume)
    model.save(run_dir / "agent.zip")
    model.export_pretrained(run_dir / "policy")

    after = evaluate(model.policy.lm, env, task, eval_prompts, args)
    summary = report(before, after, console)
    curve = read_curve(run_dir / "curve.jsonl")
    if curve:
        plot_learning_curve(curve, run_dir / "learning_curve.png", title=f"{task.name}: beta={args.beta}, seed={args.seed}")
    summary.update(seconds=round(time.time() - started, 1), timesteps=int(model.num_timesteps), device=str(device),
                   final_beta=float(env.vector_env.beta))
    atomic_write_json(run_dir / "summary.json", summary)
    console.print(f"done in {summary['seconds']:.0f} s: agent.zip, policy/, learning_curve.png, summary.json in {run_dir}")
    return run_dir


if __name__ == "__main__":
    run(main, Args, __doc__)
