"""Train a policy with any registered algorithm (PPO by default) on a registered env id: the main job of rlhf-gym.

With no arguments it runs the embedded default end to end, offline, on CPU or GPU: build ``RLHF-v0``'s
batched env, train, and write to ``runs/<env_id>__<exp_name>__<seed>__<time>/``: the SB3 agent (agent.zip),
checkpoints, the exported HF policy (policy/), TensorBoard logs, the learning curve (learning_curve.png,
curve.jsonl) and a before/after table on held-out prompts (summary.json).

Counts are in the budget's unit: ``--checkpoint-every`` counts responses for the online algorithms (a checkpoint
``checkpoints/agent_<responses>_responses.zip`` after the first PPO iteration that reaches each multiple; 1600 by
default, 25 iterations of 64) and comparisons for the offline ones (``checkpoints/agent_<comparisons>_comparisons.zip``
after the first optimizer step that reaches each multiple; 1600, 25 steps of 64).

    rlhf-gym train                                  # or: python scripts/train_agent.py
    rlhf-gym train --kl-coef 0.01 --total-responses 12800 --seed 1
    rlhf-gym train --algo nlpo --mask-top-p 0.9     # NLPO (Ramamurthy et al. 2022)
    rlhf-gym train --algo rloo --group-size 4       # RLOO (Ahmadian et al. 2024)
    rlhf-gym train --algo grpo --kl-coef 0.04       # GRPO (Shao et al. 2024): the KL weight in its loss
    rlhf-gym train --algo dpo --dpo-beta 0.5        # DPO (Rafailov et al. 2023) on the reward model's comparisons
    rlhf-gym train --algo ipo                       # IPO (Azar et al. 2023); --algo cdpo: conservative DPO
    rlhf-gym train --env-id RLHF-Reviews-Short-v0
    rlhf-gym train --resume runs/<run>/checkpoints/agent_00003200_responses.zip
    accelerate launch --num_processes 4 scripts/train_agent.py --n-envs 256   # data-parallel (docs/scaling_out.md)

The algorithm is any registered one (:mod:`rlhf_gym.agents.registry`): this command reads its traits (online or
offline, its budget's unit) and never its name.

Under ``accelerate launch`` every process trains its share of each rollout and minibatch, and the main process alone
writes the run directory (the others print nothing).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.files import atomic_write_json, create_run_directory, read_json
from rlhf_gym.jsonl import append_jsonl, read_jsonl
from rlhf_gym.metrics import format_number
from rlhf_gym.provenance import machine

from .experiment import (ALGORITHM_OPTIONS, DEFAULT_TOTAL_RESPONSES, TrainConfig, build_env_and_agent, env_settings,
                         held_out_evaluator)
from .registry import algorithm_of_checkpoint, get_algorithm
from .run_inputs import INPUTS_KEY, check_unchanged_inputs, run_inputs

if TYPE_CHECKING:  # --help needs neither: they load torch
    from rlhf_gym.evaluation import Evaluation

DEFAULT_CHECKPOINT_EVERY = 1600
"""``--checkpoint-every``: 25 PPO iterations of 64 responses, or 25 DPO steps of 64 comparisons."""


@dataclass
class Args(TrainConfig):
    """A training run: :class:`rlhf_gym.agents.experiment.TrainConfig` plus its budget and outputs."""

    exp_name: str = arg("train_agent", "name of this experiment (part of the run directory's name)")
    total_responses: int = arg(DEFAULT_TOTAL_RESPONSES, "budget: responses to sample in all (TRL's total_episodes); the run "
                                                        "makes ceil(total_responses / n_envs) iterations (rollout + update)")
    total_comparisons: int | None = arg(None, "the offline algorithms' budget (the DPO family): comparisons (kto: examples) "
                                              "to train on in all (default: --passes over them)")
    passes: int | None = arg(None, "the offline algorithms: passes over their data, the budget when --total-comparisons "
                                   "is not given (default 1)")
    n_eval_prompts: int = arg(256, "held-out prompts for the before/after table")
    out_dir: str = arg("runs", "where run directories are created")
    checkpoint_every: int = arg(DEFAULT_CHECKPOINT_EVERY, "save a checkpoint every this many responses (the offline "
                                                          "algorithms: comparisons), at the first iteration (optimizer "
                                                          "step) that reaches each multiple")
    resume: str | None = arg(None, "checkpoint to resume from, <run>/checkpoints/agent_*.zip or the final <run>/agent.zip: "
                                   "continues its run directory with the run's own arguments (args.json, never rewritten: "
                                   "each resume is appended to resumes.jsonl), KL coefficient, optimizer and counters, up "
                                   "to the run's budget (or a larger --total-responses; one below what the checkpoint has "
                                   "done is refused)")
    overwrite: bool = arg(False, "with --resume: allow overwriting the results of a run that already finished")
    progress_bar: bool = arg(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_options(self, ("total_responses", "total_comparisons", "passes", "n_eval_prompts",
                                      "checkpoint_every"))
        # a resumed run keeps its stored --passes, and a --total-comparisons given to the resume takes over from it
        if self.passes is not None and self.resume is None and (self.algorithm.traits.online
                                                                or self.total_comparisons is not None):
            raise ConfigError("--passes is the budget of the offline algorithms, without --total-comparisons"
                              + (f" ({self.algo} samples responses: --total-responses)" if self.algorithm.traits.online
                                 else ""))
        if self.resume is not None and not Path(self.resume).is_file():
            raise MissingFileError(f"--resume: checkpoint not found: {self.resume}")


BUDGETS = ("total_responses", "total_comparisons")
RESUME_OPTIONS = ("resume", "overwrite", "progress_bar", "device", *BUDGETS)
"""What a resumed run may set; every other argument is the run's own, from its args.json."""
RESUMES_FILE = "resumes.jsonl"
"""The run directory's history of resumes: one line each (time, checkpoint, the options given, the budgets in force);
args.json stays the run's original record."""


def resumed_args(args: Args) -> Args:
    """The arguments of the run that ``args.resume`` belongs to (its args.json, with the budget of its last resume),
    with the options of :data:`RESUME_OPTIONS` that were given; a different value of any other option is refused, not
    silently used. The checkpoint is checked whole first, and a wrong-typed or refused value of args.json is an error
    naming the file and the field."""
    algorithm_of_checkpoint(args.resume)  # a truncated or corrupt checkpoint: one error naming it, before anything else
    run_dir = run_of_checkpoint(args.resume)
    args_path = run_dir / "args.json"
    stored = read_json(args_path, required=("seed", "env_id"), what="a run's arguments (args.json)")
    check_stored_types(stored, args_path)
    try:
        stored = {**upgraded_arguments(stored), **last_resume_budgets(run_dir / RESUMES_FILE)}
    except ConfigError as error:  # e.g. an algorithm that is not registered
        raise ConfigError(f"{args_path}: {error}") from None
    defaults = Args()
    merged = {}
    for field in fields(Args):
        name, given, default = field.name, getattr(args, field.name), getattr(defaults, field.name)
        own = stored.get(name, default)
        if name in RESUME_OPTIONS:
            merged[name] = given if name not in BUDGETS or given != default else own
        elif given != default and given != own:
            raise ConfigError(f"--{name.replace('_', '-')} {given!r}: a resumed run keeps its own arguments ({args_path} "
                              f"has {own!r}); start a new run to change it")
        else:
            merged[name] = own
    try:
        return Args(**merged)
    except ConfigError as error:  # the given options passed these checks when parsed: a value of the run's own fails
        raise ConfigError(f"{args_path}: {error}") from None


JSON_TYPES = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
              "bool": ((bool,), "true or false"), "None": ((type(None),), "null")}


def check_stored_types(stored: dict, path: Path) -> None:
    """A :class:`DataError` naming ``path`` and the field when a stored argument that a resume uses does not have its
    field's type (``"n_envs": "sixty"``, ``"seed": null``), instead of a TypeError in the checks."""
    for field in fields(Args):
        if field.name not in stored or (field.name in RESUME_OPTIONS and field.name not in BUDGETS):
            continue  # absent (the default), or a resume's own option (given, never read from the file)
        kinds = [kind.strip() for kind in str(field.type).split("|")]
        if not all(kind in JSON_TYPES for kind in kinds):
            continue  # e.g. Any: the option's own code checks it
        value = stored[field.name]
        # bool is an int in Python, not in JSON: true is no integer
        if not any(isinstance(value, JSON_TYPES[kind][0]) and (kind == "bool" or not isinstance(value, bool))
                   for kind in kinds):
            expected = " or ".join(JSON_TYPES[kind][1] for kind in kinds)
            raise DataError(f"{path}: {field.name} must be {expected}, got {json.dumps(value)}")


def last_resume_budgets(history: Path) -> dict:
    """The budgets in force after the run's last resume (its line of ``resumes.jsonl``), {} if it was never resumed: a
    resume that grew the budget and was killed continues to that budget, since args.json is never rewritten."""
    if not history.is_file():
        return {}
    records = list(read_jsonl(history, what="a run's resume history"))
    budgets = {name: records[-1][name] for name in BUDGETS if records and name in records[-1]}
    check_stored_types(budgets, history)
    return budgets


def given_resume_options(args: Args) -> dict:
    """The options of :data:`RESUME_OPTIONS` given on the command line (those that differ from the defaults), before
    :func:`resumed_args` fills in the run's own."""
    defaults = Args()
    return {name: getattr(args, name) for name in RESUME_OPTIONS
            if name != "resume" and getattr(args, name) != getattr(defaults, name)}


def record_resume(args: Args, given: dict, run_dir: Path) -> None:
    """Append this resume to the run's ``resumes.jsonl``: when, from which checkpoint, the options ``given`` and the
    budgets in force."""
    append_jsonl(run_dir / RESUMES_FILE, [{"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "checkpoint": str(args.resume), "options": given,
                                           **{name: getattr(args, name) for name in BUDGETS}}])


def check_resumed_budget(args: Args, model) -> None:
    """A :class:`ConfigError` when the budget is below what the resumed checkpoint has already done (the run would
    "finish" at once and rewrite its results as if it had stopped there)."""
    unit = model.traits.budget_unit
    option = f"total_{unit}"
    budget, done = getattr(args, option), model.counters()[unit]
    if budget is not None and budget < done:
        raise ConfigError(f"--{option.replace('_', '-')} {budget}: {args.resume} has already done {done} {unit}; "
                          f"give a budget of at least {done} (a larger one trains on), or start a new run")


def upgraded_arguments(stored: dict) -> dict:
    """A run's stored arguments in today's names: rlhf-gym 0.8 wrote ``beta`` (now ``kl_coef`` or ``dpo_beta``), IPO
    as ``dpo_loss: ipo`` (now ``algo: ipo``), and every algorithm's options whether it had them or not (now None: the
    algorithm's default, and only its own)."""
    stored = dict(stored)
    if stored.get("dpo_loss") == "ipo":
        stored["algo"] = "ipo"
    stored.pop("dpo_loss", None)
    cls = get_algorithm(stored.get("algo", "ppo"))
    if stored.get("beta") is not None:
        stored[cls.traits.coefficient_option] = stored["beta"]
    stored["beta"] = None
    own = {f.name for f in fields(cls.Config)}
    for name in ALGORITHM_OPTIONS:
        if name not in own:
            stored[name] = None
    return stored


def run_of_checkpoint(checkpoint: str | Path) -> Path:
    """The run directory of a checkpoint ``<run>/checkpoints/agent_*.zip`` or of a run's final ``<run>/agent.zip``:
    the directory of its args.json."""
    path = Path(checkpoint).resolve()
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    if not (run / "args.json").is_file():
        raise MissingFileError(f"--resume {checkpoint}: no run's args.json at {run}; resume works from a run's "
                               "<run>/checkpoints/agent_*.zip or <run>/agent.zip (beside <run>/args.json)")
    return run


def report(before: Evaluation, after: Evaluation, console: Console) -> dict:
    """Print the before/after table and three samples of each; return them for summary.json."""
    table = Table(title="Held-out prompts: SFT reference vs. trained policy")
    table.add_column("metric")
    table.add_column("before (SFT)", justify="right")
    table.add_column("after (RL)", justify="right")
    b, a = before.summary(), after.summary()
    for key in b:
        table.add_row(key, format_number(b[key]), format_number(a[key]))
    console.print(table)
    for name, ev in (("before", before), ("after", after)):
        console.print(f"[bold]{name}[/bold] samples:")
        for i in range(3):
            console.print(f"  {ev.prompts[i]} [cyan]{ev.responses[i]}[/cyan]")
    return {"before": b, "after": a, "samples": {"before": before.responses[:3], "after": after.responses[:3],
                                                 "prompts": before.prompts[:3]}}


def changed_settings(args: Args) -> dict:
    """The arguments that differ from the command's defaults (what a reader of the log needs; args.json has all)."""
    defaults = Args()
    return {name: value for name, value in asdict(args).items() if value != getattr(defaults, name)}


def main(args: Args) -> Path:
    from .parallel import DataParallel  # torch and Accelerate: only once a run starts, not for --help

    parallel = DataParallel.from_launch()
    writes = parallel.is_main_process  # the other processes of a data-parallel run train and stay silent
    console = Console(quiet=not writes)
    started = time.time()
    if args.resume:
        given = given_resume_options(args)
        args = resumed_args(args)
        run_dir = run_of_checkpoint(args.resume)
        note = check_unchanged_inputs(read_json(run_dir / "args.json").get(INPUTS_KEY), run_inputs(args),
                                      run_dir / "args.json")
        if note:
            console.print(note)
        if (run_dir / "summary.json").exists() and not args.overwrite:
            raise ConfigError(f"{run_dir} has finished (summary.json): resuming from {args.resume} would overwrite its "
                              "agent.zip, policy/ and summary.json; pass --overwrite to do so")
    else:  # CleanRL's run name; the directory itself is created once the env and agent are built
        run_dir = Path(args.out_dir) / f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    # bad input fails before any file
    env, model = build_env_and_agent(args, tensorboard_log=run_dir, resume=args.resume, parallel=parallel)
    if args.resume:
        check_resumed_budget(args, model)
    else:  # the main process names the directory, and every process writes to that one
        run_dir = parallel.broadcast(create_run_directory(args.out_dir, run_dir.name) if writes else None)
        model.tensorboard_log = str(run_dir) if writes else None
    settings = {**asdict(args), "env": env_settings(env), "algorithm": asdict(args.algorithm_config()),
                "processes": parallel.num_processes}
    if not args.resume:  # what the run read, by content: a resume refuses inputs changed since (agents.run_inputs)
        settings[INPUTS_KEY] = run_inputs(args)
    if writes and args.resume:
        record_resume(args, given, run_dir)  # args.json stays the run's original record
    elif writes:
        atomic_write_json(run_dir / "args.json", settings)
    console.print(f"[bold]run directory[/bold] {run_dir}  (device: {model.device}, {parallel.describe()})")
    changed = changed_settings(args)
    console.print("  " + (", ".join(f"{k} = {v}" for k, v in changed.items()) or "the defaults")
                  + "  (every argument: args.json)")
    console.print("  env: " + ", ".join(f"{k} = {v}" for k, v in settings["env"].items()))
    console.print("  " + ", ".join(f"{k} = {v}" for k, v in asdict(args.algorithm_config()).items()))
    if args.resume and writes:
        console.print(f"resumed from {args.resume}: {model.progress(run_dir)}")
    evaluate = held_out_evaluator(env, args.n_eval_prompts, args.seed)
    before = parallel.on_main(lambda: evaluate(env.batched_env.ref_model))

    learning_started = time.time()
    budget = (args.total_responses if model.traits.online
              else args.total_comparisons or (args.passes or 1) * len(model.comparisons))
    model.learn_run(budget, run_dir if writes else None, args.checkpoint_every, args.progress_bar and writes,
                    resumed=args.resume is not None, title=args.env_id)
    counters = model.counters()
    counters["train_seconds"] = round(time.time() - learning_started, 1)  # training alone: no loading, no evaluation
    model.save(run_dir / "agent.zip")
    if not writes:
        parallel.barrier()  # until the main process has written the run's results
        parallel.close()
        return run_dir
    model.export_pretrained(run_dir / "policy")

    after = evaluate(model.trained_lm)
    summary = report(before, after, console)
    summary.update(seconds=round(time.time() - started, 1), device=str(model.device), machine=machine(), **counters)
    atomic_write_json(run_dir / "summary.json", summary)
    done = ", ".join(f"{counters[k]} {k}" for k in ("iterations", "responses", "steps", "comparisons") if k in counters)
    console.print(f"done in {summary['seconds']:.0f} s, {args.algo}: {done}; agent.zip, policy/, summary.json in {run_dir}")
    parallel.barrier()
    parallel.close()
    return run_dir
