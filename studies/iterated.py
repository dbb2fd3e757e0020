"""Iterated (online) RLHF: rounds of Stage 1 -> 2 -> 3 against a single round, at equal budgets.

InstructGPT (Ouyang et al. 2022) labels samples of the SFT policy once, fits a reward model and optimises against
it; the policy then leaves the region the reward model was fitted on, and at a small beta it finds the proxy's hack.
Iterated online RLHF (Bai et al. 2022, section 4.5; Llama 2's rounds, Touvron et al. 2023) labels the *current*
policy's samples each round, so the reward model sees, and learns to rank down, the text the policy drifts to.

A run is a schedule of ``R`` rounds and a seed. Round ``k`` (1-based):

1. **Collect** ``total_comparisons / R`` comparisons on the task's train prompts, two samples per prompt
   (temperature 1, the response budget) from the current policy: the SFT policy in round 1, else the policy saved at
   the end of round ``k - 1``; labelled by the task's simulated annotator(s) (``--labeler simulated``, the biased pool
   of the shipped data for the suite's tasks), by you at the terminal, or on the labelling page (``--labeler page``:
   the pairs are written, the command stops and says how to label them; rerun it once they are labelled). With
   ``--pair-with sft`` the second sample of each pair comes from the SFT policy instead: pairs of two samples of a
   policy that already hacks contrast one hack with another and never teach the reward model that the hack is worse
   than the text it started from (measured in docs/reward_hacking.md).
2. **Reward model**: trained from scratch (the task's architecture and recipe) on the comparisons of rounds ``1..k``.
3. **Policy**: ``iterations / R`` more PPO iterations at ``--beta`` against this round's reward model, continued from
   where the last round stopped (optimizer, counters); the KL reference stays the SFT policy. Held-out evaluations
   every ``--eval-every`` iterations (proxy: this round's reward model; gold; KL to the SFT policy).

``--method dpo`` is **iterative DPO** (Xu et al. 2023, "Some things are more CRINGE than others: iterative preference
optimization with the pairwise cringe loss", arXiv 2312.16682; Xiong et al. 2024, arXiv 2312.11456): the same rounds of
Stage 1 on the current policy, no reward model, and Stage 3 is ``--dpo-epochs`` passes of DPO (``--dpo-beta``) on this
round's comparisons, from the policy of round ``k - 1`` (the SFT policy in round 1), with the SFT policy as the
reference throughout (the KL the study reports is to it, as for PPO). Evaluations: before round 1 and after each round
(proxy: the task's reward model, which no round trains on), at the iteration numbers a PPO run of the same schedule
would have (``k * iterations / R``), so both methods share the plots. The PPO options (``--beta``, ``--n-epochs``,
``--batch-size``, ``--learning-rate``) do not apply to it; DPO takes its own defaults (learning rate 3e-4, 64
comparisons per step).

Runs are independent jobs (``--workers`` processes, or Ray tasks); each trains its rounds in order. Everything is
written to the run store of :mod:`rlhf_gym.studies.analysis.rounds` as it finishes, by the job itself (on a Ray cluster of
several machines ``--out-dir`` must be on a shared filesystem): a rerun skips finished rounds and resumes an
unfinished one at its first unfinished stage; a stored run made with other settings is refused. The study's
``iterated.json`` (every run and point, the final policies' samples), ``iterated.md`` (the table, also printed) and
``iterated.png`` (gold reward against sqrt(KL) per schedule, points coloured by round; gold over PPO iterations) go
to ``--out-dir``.

    rlhf-gym iterate                                         # reviews, 1, 3 and 6 rounds, 5 seeds, beta 0
    rlhf-gym iterate --pair-with sft --out-dir runs/iterated_sft
    rlhf-gym iterate --task lists --beta 0.01 --rounds 1,3 --seeds 0,1,2 --out-dir runs/iterated_lists
    rlhf-gym iterate --labeler page --rounds 3 --seeds 0 --total-comparisons 300 --out-dir runs/iterated_page
    rlhf-gym iterate --quick --out-dir /tmp/iterated    # smoke test, well under a minute
    rlhf-gym iterate --method dpo --rounds 1,3 --out-dir runs/iterated_dpo   # iterative DPO against one offline pass
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.errors import ConfigError
from rlhf_gym.studies.analysis.rounds import (AGENT_FILE, COMPARISONS_FILE, PAIRS_FILE, REWARD_DIR, ROUND_FILE,
                                           ROUND_SEED_STRIDE,
                                     RUN_FILE, load_run, markdown_table, plot_iterated, round_dir, round_prompts, round_seed,
                                     run_dir, summarize_schedules)
from rlhf_gym.labelers import Labeler, TerminalLabeler
from rlhf_gym.preferences import load_preferences
from rlhf_gym.reward_settings import METADATA_FILE, RewardTrainingConfig
from rlhf_gym.tasks import TASKS, load_task, world_of
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json

from rlhf_gym.agents.experiment import EVAL_SEED_OFFSET, TrainConfig, build_env_and_agent, held_out_evaluator
from .sweep import PPORunOptions, check_stored, start_study

if TYPE_CHECKING:  # the rounds load torch, transformers and SB3 (imported where they run): --help needs none
    from rlhf_gym.agents.callbacks import HeldOutEvaluation
    from rlhf_gym.tasks import Task

LABELERS = ("simulated", "terminal", "page")
PAIRINGS = ("current", "sft")
METHODS = ("rlhf", "dpo")
POLICY_DIR = "policy"
"""An iterative-DPO round's policy, exported in HF format: the next round starts from it."""
RUN_SETTINGS = ("task", "total_comparisons", "iterations", "beta", "eval_every", "n_eval_prompts", "n_envs", "batch_size",
                "n_epochs", "learning_rate", "max_new_tokens", "labeler", "rm_epochs", "pair_with")
DPO_SETTINGS = ("method", "dpo_beta", "dpo_epochs")
"""Settings of ``--method dpo`` runs only: absent (None) from an RLHF run's record, as from those stored before them."""
QUICK = {"rounds": "1,2", "seeds": "0", "total_comparisons": 32, "iterations": 2, "eval_every": 1, "n_envs": 8,
         "batch_size": 4, "n_epochs": 2, "max_new_tokens": 12, "n_eval_prompts": 16, "workers": 1, "rm_epochs": 1}
"""What ``--quick`` sets: a smoke test of the whole study."""


@dataclass
class Args(RayOptions, PPORunOptions):
    out_dir: str = arg("runs/iterated", "where the runs, iterated.json, iterated.md and iterated.png go")
    task: str = arg("reviews", "task: its SFT policy, prompts and annotators", choices=TASKS)
    rounds: str = arg("1,3,6", "comma-separated schedules to compare, in rounds (each must divide --iterations and "
                             "--total-comparisons)")
    seeds: str = arg("0,1,2,3,4", "comma-separated seeds")
    total_comparisons: int = arg(3000, "comparisons per run, split evenly over its rounds")
    iterations: int = arg(60, "PPO iterations per run, split evenly over its rounds")
    beta: float = arg(0.0, "KL coefficient of the env's reward r - beta*KL")
    max_new_tokens: int | None = arg(None, "response budget in tokens (default: the task's)")
    labeler: str = arg("simulated", "simulated (the task's simulated annotators), terminal (you, --workers 1) or page "
                                    "(the labelling page: the command stops until each round's pairs are labelled)",
                       choices=LABELERS)
    rm_epochs: int | None = arg(None, "reward-model passes (default: the task's build recipe)")
    pair_with: str = arg("current", "where the second response of each pair comes from in rounds 2 and later: current "
                                    "(the current policy, like the first) or sft (the SFT policy: each pair contrasts "
                                    "where the policy went with where it started)", choices=PAIRINGS)
    method: str = arg("rlhf", "rlhf (each round: reward model, then PPO) or dpo (iterative DPO: each round's comparisons "
                              "train the policy with DPO, no reward model)", choices=METHODS)
    dpo_beta: float = arg(0.5, "--method dpo: DPO's beta")
    dpo_epochs: int = arg(1, "--method dpo: DPO passes over each round's comparisons")
    quick: bool = arg(False, "smoke test: schedules 1 and 2, seed 0, 32 comparisons, two tiny iterations (< 1 minute); "
                             "the options it sets may not be given with it")

    ray_gpus_used = False  # the runs train on the CPU

    def __post_init__(self) -> None:
        self.ray_settings()  # checks the Ray options
        if self.quick:
            self._apply_quick()
        from rlhf_gym.tasks.building import BuildConfig  # the task's world loads transformers anyway

        world = world_of(self.task)  # ConfigError naming the known tasks
        if self.max_new_tokens is None:
            self.max_new_tokens = world.max_new_tokens
        if self.rm_epochs is None:
            self.rm_epochs = BuildConfig.for_world(world).reward_epochs
        check_positive_options(self, ("total_comparisons", "iterations", "eval_every", "n_eval_prompts", "n_envs",
                                      "batch_size", "n_epochs", "learning_rate", "max_new_tokens", "rm_epochs", "workers"))
        self._check_schedules()
        check_positive_options(self, ("dpo_beta", "dpo_epochs"))
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.pair_with not in PAIRINGS:
            raise ConfigError(f"--pair-with must be one of {', '.join(PAIRINGS)}, got {self.pair_with!r}")
        if self.labeler not in LABELERS:
            raise ConfigError(f"--labeler must be one of {', '.join(LABELERS)}, got {self.labeler!r}")
        if self.labeler == "terminal" and (self.workers != 1 or self.ray or self.ray_address is not None):
            raise ConfigError("--labeler terminal reads your judgements in this process: use --workers 1, without Ray")
        self.train_config(0, None)  # TrainConfig's own checks (--batch-size against --n-envs, --beta...)

    def _apply_quick(self) -> None:
        """Set :data:`QUICK`; an option it sets that was given another value is refused, not silently replaced. (A
        value equal to the default cannot be told from one not given; one equal to the quick value is the same run,
        as in an ``Args`` built again from a quick one.)"""
        defaults = {f.name: f.default for f in fields(self)}
        given = [name for name, value in QUICK.items() if getattr(self, name) not in (defaults[name], value)]
        if given:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ConfigError(f"--quick sets {options} itself: drop {'it' if len(given) == 1 else 'them'}, or drop --quick")
        for name, value in QUICK.items():
            setattr(self, name, value)

    def _check_schedules(self) -> None:
        try:
            schedules, seeds = self.schedule_list(), self.seed_list()
        except ValueError:
            raise ConfigError(f"--rounds and --seeds must be comma-separated integers, got {self.rounds!r} and "
                              f"{self.seeds!r}") from None
        if not schedules or not seeds or not 1 <= min(schedules) <= max(schedules) < ROUND_SEED_STRIDE:
            raise ConfigError(f"need at least one schedule of 1 to {ROUND_SEED_STRIDE - 1} rounds and one seed, got "
                              f"--rounds {self.rounds!r} --seeds {self.seeds!r}")
        if schedules != sorted(set(schedules)):  # a repeated schedule would be one run directory trained twice
            raise ConfigError(f"--rounds {self.rounds}: each schedule once, in increasing order (e.g. 1,3,6)")
        limit = (2**32 - max(schedules)) // ROUND_SEED_STRIDE  # every round's seed must seed NumPy too
        if min(seeds) < 0 or max(seeds) >= limit:
            raise ConfigError(f"--seeds must be in [0, {limit}) (round k of seed s is seeded with {ROUND_SEED_STRIDE} s + k), "
                              f"got {self.seeds!r}")
        for option in ("iterations", "total_comparisons"):
            value = getattr(self, option)
            uneven = [r for r in schedules if value % r]
            if uneven:
                raise ConfigError(f"--{option.replace('_', '-')} {value} does not split evenly over {uneven[0]} rounds "
                                  f"(--rounds {self.rounds})")

    def schedule_list(self) -> list[int]:
        return [int(r) for r in self.rounds.split(",") if r.strip()]

    def run_config(self) -> dict:
        """The settings a stored run must share with this study to be reused."""
        dpo = self.method == "dpo"
        return {**{k: getattr(self, k) for k in RUN_SETTINGS}, **{k: getattr(self, k) if dpo else None for k in DPO_SETTINGS}}

    def train_config(self, seed: int, reward_model: str | None) -> TrainConfig:
        """One round's Stage 3: ``train_agent``'s configuration with this study's budget, beta, seed and reward model."""
        return TrainConfig(task=self.task, seed=seed, kl_coef=self.beta, reward_model=reward_model,
                           max_new_tokens=self.max_new_tokens, n_envs=self.n_envs, batch_size=self.batch_size,
                           n_epochs=self.n_epochs, learning_rate=self.learning_rate, device="cpu",
                           lr_schedule="constant")  # each round's learn() is a budget of its own: no annealing per round


def sampling_policy(task: Task, run: Path, k: int):
    """The policy round ``k`` samples its comparisons from: the SFT policy in round 1, else the HF causal LM of the agent
    saved at the end of round ``k - 1`` (PPO's or DPO's)."""
    from rlhf_gym.agents.registry import load_policy

    if k == 1:
        return task.load_policy()
    return load_policy(round_dir(run, k - 1) / AGENT_FILE, "cpu")


def round_labeler(args: Args, task: Task, seed: int) -> Labeler | None:
    """The labeller of a round: the task's simulated annotator(s) seeded by ``seed``, you, or None (the page)."""
    from rlhf_gym.tasks.building import task_annotator

    if args.labeler == "page":
        return None
    if args.labeler == "terminal":
        return TerminalLabeler()
    return task_annotator(task.name, task.metadata.get("build_config", {}), seed)


def collect_round(args: Args, task: Task, run: Path, k: int, seed: int, n_pairs: int) -> int:
    """Stage 1 of round ``k`` (resumable); returns how many pairs still wait for a judgement on the page (0: the
    round's comparisons are complete)."""
    from rlhf_gym.collect import collect_preferences, existing_pair_ids

    directory = round_dir(run, k)
    labeler = round_labeler(args, task, round_seed(seed, k))
    out = directory / (COMPARISONS_FILE if labeler is not None else PAIRS_FILE)
    second = task.load_policy() if args.pair_with == "sft" and k > 1 else None
    collect_preferences(sampling_policy(task, run, k), task.load_tokenizer(), round_prompts(task.train_prompts, seed, k),
                        labeler, out, n_pairs, args.max_new_tokens, temperature=1.0, seed=round_seed(seed, k),
                        batch_size=1 if args.labeler == "terminal" else 128, progress=False, second_policy=second)
    if labeler is not None:
        return 0
    judged = directory / COMPARISONS_FILE  # the label store's export: ties and skips count as judged
    return len(existing_pair_ids(out, labelled=False) - existing_pair_ids(judged))


def train_round_reward_model(args: Args, task: Task, run: Path, k: int, seed: int) -> dict:
    """Stage 2 of round ``k``: a reward model trained from scratch on the comparisons of rounds ``1..k`` (ties and
    skips left out), with its gold agreement on fresh SFT pairs; a stored one trained on the same data is reused."""
    import torch

    from rlhf_gym.reward_training import data_hash, save_reward_model, train_reward_model
    from rlhf_gym.tasks.building import BuildConfig, gold_agreement, initial_reward_model

    records = [r for j in range(1, k + 1) for r in load_preferences(round_dir(run, j) / COMPARISONS_FILE)]
    directory = round_dir(run, k) / REWARD_DIR
    if (directory / METADATA_FILE).is_file():
        stored = read_json(directory / METADATA_FILE, ("data_sha256",), "a reward model's metadata")
        if stored["data_sha256"] == data_hash(records):
            return stored
    world = world_of(task.name)
    torch.manual_seed(round_seed(seed, k))
    reward_model = initial_reward_model(world, BuildConfig.for_world(world), task.policy_dir)
    metrics = train_reward_model(reward_model, records, RewardTrainingConfig(epochs=args.rm_epochs, seed=round_seed(seed, k)),
                                 progress=False)
    metrics.update(gold_agreement(world.gold_reward, reward_model, task.load_policy(), task.load_tokenizer(),
                                  task.eval_prompts[: args.n_eval_prompts], args.max_new_tokens, seed + EVAL_SEED_OFFSET,
                                  world))
    metrics.update(round=k, n_comparisons=len(records))
    save_reward_model(reward_model, directory, metrics)
    return metrics


def train_round_policy(args: Args, run: Path, k: int, rounds: int, seed: int) -> HeldOutEvaluation:
    """Stage 3 of round ``k``: ``iterations / rounds`` PPO iterations against this round's reward model, from the SFT
    policy (round 1) or the agent of round ``k - 1``, evaluated on held-out prompts; the agent is saved atomically."""
    from rlhf_gym.agents.callbacks import HeldOutEvaluation

    per_round = args.iterations // rounds
    env, model = build_env_and_agent(args.train_config(seed, str(round_dir(run, k) / REWARD_DIR)),
                                     resume=None if k == 1 else round_dir(run, k - 1) / AGENT_FILE)
    model.set_random_seed(round_seed(seed, k))  # the same stream whether the run goes on or resumes here
    env.reset()  # a loaded agent keeps its last observation, so learn() would not reset (and seed) the env itself
    held_out = HeldOutEvaluation(held_out_evaluator(env, args.n_eval_prompts, seed), args.eval_every, args.n_samples_kept,
                               start=(k - 1) * per_round)
    model.learn(total_responses=k * per_round * args.n_envs, callback=held_out, reset_num_timesteps=False)
    staged = round_dir(run, k) / f".tmp.{AGENT_FILE}"  # SB3 writes .zip files: the staged name keeps the suffix
    model.save(staged)
    os.replace(staged, round_dir(run, k) / AGENT_FILE)
    return held_out


def train_round_dpo(args: Args, run: Path, k: int, rounds: int, seed: int) -> tuple[list[dict], Any]:
    """Stage 3 of an iterative-DPO round: ``--dpo-epochs`` passes of DPO on round ``k``'s comparisons from the policy of
    round ``k - 1`` (the SFT policy in round 1; the reference is the SFT policy), evaluated on held-out prompts before
    (round 1 only) and after; the policy is exported to ``policy/`` and the agent saved, each atomically. Returns the
    round's points and its last evaluation."""
    import torch

    from rlhf_gym.agents.callbacks import evaluation_point

    directory = round_dir(run, k)
    torch.manual_seed(round_seed(seed, k))
    config = TrainConfig(algo="dpo", task=args.task, seed=round_seed(seed, k), dpo_beta=args.dpo_beta,
                         model=None if k == 1 else str(round_dir(run, k - 1) / POLICY_DIR),
                         comparisons=str(directory / COMPARISONS_FILE), max_new_tokens=args.max_new_tokens, device="cpu")
    env, agent = build_env_and_agent(config)
    evaluate = held_out_evaluator(env, args.n_eval_prompts, seed)
    per_round = args.iterations // rounds
    points = [] if k > 1 else [evaluation_point(evaluate(agent.trained_lm), 0, args.n_samples_kept, comparisons=0)]
    agent.learn(args.dpo_epochs * len(agent.comparisons))
    last = evaluate(agent.trained_lm)
    points.append(evaluation_point(last, k * per_round, args.n_samples_kept, comparisons=int(agent.num_comparisons)))
    staged = directory / f".tmp.{POLICY_DIR}"
    shutil.rmtree(staged, ignore_errors=True)  # a stage left by an interrupted round
    agent.export_pretrained(staged)
    shutil.rmtree(directory / POLICY_DIR, ignore_errors=True)
    os.replace(staged, directory / POLICY_DIR)
    agent.save(directory / AGENT_FILE)  # written atomically by the agent
    return points, last


def ill_formed_share(task: Task, records: list[dict]) -> float:
    """Share of the responses of ``records`` (both sides, ties and skips included) that are not well-formed."""
    if not records:
        return float("nan")
    return 1.0 - float(np.mean([task.is_well_formed(r["prompt"], text) for r in records
                                for text in (r["chosen"], r["rejected"])]))


def train_round(args: Args, task: Task, rounds: int, seed: int, k: int) -> int:
    """Round ``k`` of the run, from its first unfinished stage; its record is written last. Returns the pairs left to
    label on the page (0: the round is finished)."""
    from rlhf_gym.reward_model import RewardModel

    started = time.time()
    run = run_dir(args.out_dir, rounds, seed)
    n_pairs = args.total_comparisons // rounds
    if not (round_dir(run, k) / REWARD_DIR / METADATA_FILE).is_file():
        left = collect_round(args, task, run, k, seed, n_pairs)
        if left:
            return left
    if args.method == "dpo":  # no reward model: the comparisons train the policy directly
        reward_model, first_round_proxy = None, None
        points, _ = train_round_dpo(args, run, k, rounds, seed)
    else:
        metrics = train_round_reward_model(args, task, run, k, seed)
        held_out = train_round_policy(args, run, k, rounds, seed)
        points = held_out.points
        reward_model = {key: metrics[key] for key in ("eval_accuracy", "gold_agreement", "n_train", "n_eval",
                                                      "n_comparisons", "data_sha256")}
        first = RewardModel.from_pretrained(round_dir(run, 1) / REWARD_DIR)
        first_round_proxy = float(first.score(held_out.last.prompts, held_out.last.responses).mean())
    comparisons = load_preferences(round_dir(run, k) / COMPARISONS_FILE, include_non_preferences=True)
    atomic_write_json(round_dir(run, k) / ROUND_FILE, {
        "round": k, "rounds": rounds, "seed": seed, "config": args.run_config(), "n_comparisons": len(comparisons),
        "comparisons_ill_formed": ill_formed_share(task, comparisons), "points": points, "reward_model": reward_model,
        "first_round_proxy": first_round_proxy, "seconds": round(time.time() - started, 1)})
    return 0


def train_run(args: Args, rounds: int, seed: int) -> dict:
    """A job: the unfinished rounds of one run, in order; stops at a round whose pairs wait for the labelling page."""
    import torch

    started = time.time()
    torch.set_num_threads(1)
    task = load_task(args.task)
    run = run_dir(args.out_dir, rounds, seed)
    for k in range(1, rounds + 1):
        if (round_dir(run, k) / ROUND_FILE).is_file():
            continue
        left = train_round(args, task, rounds, seed, k)
        if left:
            return {"rounds": rounds, "seed": seed, "waiting": {"round": k, "left": left, "directory": str(round_dir(run, k))}}
    return {"rounds": rounds, "seed": seed, "waiting": None, "seconds": round(time.time() - started, 1)}


def report(result: dict) -> None:
    """Print how a run's job ended (in the driver)."""
    if result["waiting"] is None:
        print(f"rounds={result['rounds']} seed={result['seed']}: done ({result['seconds']:.0f} s)", flush=True)


def labelling_instructions(waiting: list[dict]) -> str:
    """What to run for each round whose pairs wait for the labelling page."""
    lines = ["Stopped: these rounds wait for judgements on the labelling page (ties and skips count as judged):"]
    for w in waiting:
        directory = Path(w["directory"])
        lines.append(f"  {directory}: {w['left']} pair(s) left to label\n    rlhf-gym label --pairs {directory / PAIRS_FILE} "
                     f"--out {directory / COMPARISONS_FILE}")
    lines.append("Then rerun this same command: it continues where it stopped.")
    return "\n".join(lines)


def jobs(args: Args) -> list[Job]:
    """The runs not finished yet; a stored run or round made with other settings is a :class:`ConfigError` naming its
    file. A new run's settings are written to its ``run.json`` first."""
    todo = []
    for rounds in args.schedule_list():
        for seed in args.seed_list():
            run = run_dir(args.out_dir, rounds, seed)
            stored = [run / RUN_FILE] + [round_dir(run, k) / ROUND_FILE for k in range(1, rounds + 1)]
            for path in (p for p in stored if p.is_file()):
                check_stored(path, read_json(path, ("config",), "an iterated-RLHF record"), args.run_config())
            if not (run / RUN_FILE).is_file():
                atomic_write_json(run / RUN_FILE, {"rounds": rounds, "seed": seed, "config": args.run_config()})
            if load_run(args.out_dir, rounds, seed) is None:
                todo.append(Job(f"rounds={rounds} seed={seed}", train_run, (args, rounds, seed), report))
    n_runs = len(args.schedule_list()) * len(args.seed_list())
    print(f"{n_runs - len(todo)} of {n_runs} runs already done; training {len(todo)}", flush=True)
    return todo


def main(args: Args) -> dict:
    started = start_study(args)
    out_dir = Path(args.out_dir)
    results = run_all(jobs(args), args.workers, args.ray_settings())
    waiting = [r["waiting"] for r in results if r["waiting"] is not None]
    if waiting:
        print(labelling_instructions(waiting), flush=True)
        return {"waiting": waiting}

    runs = [load_run(out_dir, rounds, seed) for rounds in args.schedule_list() for seed in args.seed_list()]
    world = world_of(args.task)
    rows = summarize_schedules(runs, world.annotator_bias, world.bias_name)
    result = {"args": asdict(args), "summary": rows, "runs": runs}
    atomic_write_json(out_dir / "iterated.json", result)
    table = markdown_table(rows)
    if args.method == "dpo":
        heading = (f"# Iterative DPO, task {args.task}, DPO beta {args.dpo_beta:g}: {args.total_comparisons} comparisons per "
                   f"run, split over its rounds, {args.dpo_epochs} DPO pass(es) per round ({args.labeler} labeller)")
    else:
        heading = (f"# Iterated RLHF, task {args.task}, beta {args.beta:g}: {args.total_comparisons} comparisons and "
                   f"{args.iterations} PPO iterations per run, split over its rounds ({args.labeler} labeller)")
    atomic_write_text(out_dir / "iterated.md", f"{heading}\n\n{table}")
    leash = f"DPO beta={args.dpo_beta:g}" if args.method == "dpo" else f"beta={args.beta:g}"
    plot_iterated(runs, out_dir / "iterated.png", title=f"{args.task}, {leash}, held-out prompts, "
                                                        f"{len(args.seed_list())} seed(s)")
    print(table)
    print(f"done in {time.time() - started:.0f} s: iterated.json, iterated.md, iterated.png in {out_dir}")
    return result
