"""Fair tuning: every method gets the same budget of settings, chosen on a validation split of the train prompts.

A comparison of methods is fair only when each gets the same tuning budget on data the comparison does not score. For
each method this command trains every setting of its grid (at most :data:`MAX_SETTINGS`, around the method's
defaults: :data:`GRIDS`, or ``--grid``) on the task's train prompts without the validation split
(:attr:`rlhf_gym.tasks.Task.tuning_prompts`; the offline methods on the task's comparisons without those of the
validation prompts), scores each trained policy on the validation split (:attr:`~rlhf_gym.tasks.Task.validation_prompts`,
the last 256 train prompts) and chooses the setting with the highest validation gold reward among those within the KL
budget (none within it: the one with the smallest KL). The held-out prompts, which the leaderboard scores, are never
used. The budget in responses (online) is the leaderboard's; an offline method's number of passes over its data is one
of its settings.

Each (method, setting, seed) is a job whose record goes to ``<out-dir>/records/<method>/setting<i>_seed<s>.json`` when
it ends; a rerun skips stored records (one made with other settings is refused). ``tuning.json`` (every setting's
validation scores and each method's choice) and ``tuning.md`` (the table, also printed) go to ``--out-dir``;
``rlhf-gym leaderboard --tuned <out-dir>/tuning.json`` trains each method with its chosen setting.

    rlhf-gym tune --methods dpo,ipo,simpo,kto,online_dpo                  # RLHF-v0, each method's grid, seed 100
    rlhf-gym tune --methods ppo --grid 'kl_coef=0.05,0.1,0.2;learning_rate=1e-4,3e-4' --out-dir runs/tune_ppo
    rlhf-gym tune --methods ppo --grid 'learning_rate=1e-4,3e-4;kl_placement=terminal,per_token' --out-dir runs/tune_kl
    rlhf-gym tune --quick --out-dir /tmp/tune                              # smoke test
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.envs.config import KL_PLACEMENTS
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json
from rlhf_gym.jsonl import write_jsonl
from rlhf_gym.kl import KL_ESTIMATORS
from rlhf_gym.provenance import machine, machines_summary
from rlhf_gym.proxy_spec import parse_ints
from rlhf_gym.registration import task_of
from rlhf_gym.tasks import load_task

from rlhf_gym.agents.critic_settings import CRITICS
from rlhf_gym.agents.experiment import DEFAULT_TOTAL_RESPONSES
from rlhf_gym.agents.registry import get_algorithm
from .sweep import check_stored, start_study

MAX_SETTINGS = 6
"""The tuning budget: settings per method (issue 27's protocol)."""
PASSES = "passes"
"""A setting of the offline methods: passes over their data (``rlhf-gym train --passes``)."""
ENV_CHOICES: dict[str, tuple[str, ...]] = {"kl_placement": KL_PLACEMENTS, "kl_estimator": KL_ESTIMATORS}
"""Env options an online method's grid may vary besides its own (``rlhf-gym train --kl-placement``, say): where the KL
penalty is paid and how it is estimated shape the training signal (PPO pays it at the end by default, TRL per token).
Their values are names (:data:`NAMED_CHOICES`), the other options' numbers."""
NAMED_CHOICES: dict[str, tuple[str, ...]] = {**ENV_CHOICES, "critic": CRITICS}
"""The options a grid gives by name: the env's above, and PPO's and NLPO's critic (``rlhf-gym train --critic``)."""
GRIDS: dict[str, dict[str, tuple]] = {
    "ppo": {"kl_coef": (0.05, 0.1, 0.2), "learning_rate": (1e-4, 3e-4)},
    "nlpo": {"kl_coef": (0.05, 0.1, 0.2), "learning_rate": (1e-4, 3e-4)},
    "rloo": {"kl_coef": (0.05, 0.1, 0.2), "learning_rate": (1e-4, 3e-4)},
    "grpo": {"kl_coef": (0.01, 0.04, 0.1), "learning_rate": (1e-4, 3e-4)},
    "online_dpo": {"dpo_beta": (0.1, 0.25, 0.5), "learning_rate": (1e-4, 3e-4)},
    "dpo": {"dpo_beta": (0.1, 0.25, 0.5), PASSES: (1, 3)},
    "ipo": {"dpo_beta": (0.1, 0.25, 0.5), PASSES: (1, 3)},
    "cdpo": {"dpo_beta": (0.1, 0.25, 0.5), PASSES: (1, 3)},
    "simpo": {"learning_rate": (1e-4, 2e-4, 3e-4), PASSES: (1, 3)},
    "kto": {"dpo_beta": (0.5, 1.0, 2.0), PASSES: (1, 3)},
}
"""Each method's grid: the product of its options' values, two or three values each, around its defaults (the KL
leash and the learning rate for the online methods; the implicit reward's temperature and the passes for the offline
ones, SimPO's learning rate instead of its beta, as it has no reference to hold it)."""
RUN_SETTINGS = ("env_id", "total_responses", "kl_budget", "n_eval_prompts", "quick")
QUICK = {"methods": "dpo,online_dpo", "seeds": "100", "total_responses": 16, "n_eval_prompts": 8, "workers": 1}
QUICK_GRID = {"dpo": {"dpo_beta": (0.25, 0.5)}, "online_dpo": {"dpo_beta": (0.25, 0.5)}}
QUICK_TRAIN = {True: {"n_envs": 8, "batch_size": 4, "max_new_tokens": 10, "n_eval_prompts": 8},
               False: {"batch_size": 4, "total_comparisons": 16, "n_eval_prompts": 8}}
QUICK_COMPARISONS = 64
"""--quick: two settings of two methods on tiny budgets and the first 64 comparisons (a smoke test, not a result);
``QUICK_TRAIN[online]`` are the training options."""


def parse_grid(text: str) -> dict[str, tuple]:
    """``'kl_coef=0.05,0.1;kl_placement=terminal,per_token'`` -> ``{"kl_coef": (0.05, 0.1), "kl_placement":
    ("terminal", "per_token")}``: numbers, passes as integers, the :data:`NAMED_CHOICES` as one of their names."""
    grid = {}
    for part in (p.strip() for p in text.split(";") if p.strip()):
        name, _, values = (piece.strip() for piece in part.partition("="))
        listed = tuple(v.strip() for v in values.split(","))
        if name in NAMED_CHOICES:
            unknown = [v for v in listed if v not in NAMED_CHOICES[name]]
            if unknown:
                raise ConfigError(f"--grid: {name} must be one of {', '.join(NAMED_CHOICES[name])}, got {unknown[0]!r}")
            grid[name] = listed
            continue
        try:
            grid[name] = tuple(int(v) if name == PASSES else float(v) for v in listed)
        except ValueError:
            raise ConfigError(f"--grid: {part!r} is not name=value,value,... with numbers") from None
    return grid


def setting_text(setting: dict[str, Any]) -> str:
    """``{"kl_coef": 0.1, "kl_placement": "per_token"}`` -> ``"kl_coef 0.1, kl_placement per_token"``."""
    return ", ".join(f"{k} {v}" if isinstance(v, str) else f"{k} {v:g}" for k, v in setting.items())


def settings_of(grid: dict[str, tuple]) -> list[dict[str, Any]]:
    """Every setting of a grid, its options' values varied in order (the last fastest)."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


@dataclass
class Args(RayOptions):
    out_dir: str = arg("runs/tuning", "records/, tuning.json and tuning.md go here")
    env_id: str = arg("RLHF-v0", "registered env id (its task's train prompts, validation split and comparisons)")
    methods: str = arg("dpo,ipo,simpo,kto,online_dpo", f"comma-separated algorithms, each with a grid of {', '.join(GRIDS)} "
                                                       "or --grid")
    grid: str | None = arg(None, "one grid for every method instead of their own: 'name=v1,v2;name=v1,...' over "
                                 f"`rlhf-gym train` options (and {PASSES} for the offline ones, {' and '.join(ENV_CHOICES)} "
                                 "for the online ones, e.g. kl_placement=terminal,per_token, and critic for ppo and "
                                 "nlpo); at most "
                                 f"{MAX_SETTINGS} settings")
    seeds: str = arg("100", "comma-separated training seeds of each setting (apart from the leaderboard's 0-4)")
    total_responses: int = arg(DEFAULT_TOTAL_RESPONSES, "online methods: responses per run (the leaderboard's budget)")
    kl_budget: float = arg(10.0, "a setting is chosen among those whose validation KL is within this (nats)")
    n_eval_prompts: int = arg(256, "validation prompts scored per setting (the whole split: 256)")
    workers: int = arg(2, "runs trained in parallel (separate processes, one torch thread each)")
    quick: bool = arg(False, "smoke test: two settings of dpo and online_dpo on tiny budgets")

    ray_gpus_used = False

    def __post_init__(self) -> None:
        self.ray_settings()
        if self.quick:
            for name, value in QUICK.items():
                setattr(self, name, value)
        check_positive_options(self, ("total_responses", "kl_budget", "n_eval_prompts", "workers"))
        parse_ints(self.seeds, "--seeds")
        task_of(self.env_id)  # a ConfigError naming the env ids
        for method in self.method_list():
            self.settings(method)  # a bad grid fails here

    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    def grid_of(self, method: str) -> dict[str, tuple]:
        if self.grid is not None:
            return parse_grid(self.grid)
        grids = QUICK_GRID if self.quick else GRIDS
        if method not in grids:
            get_algorithm(method)  # an unknown name: a ConfigError listing the algorithms
            raise ConfigError(f"--methods: {method} has no grid of its own; give --grid")
        return grids[method]

    def settings(self, method: str) -> list[dict[str, Any]]:
        """The method's settings, checked: at most :data:`MAX_SETTINGS`, each option one of the method's."""
        cls, grid = get_algorithm(method), self.grid_of(method)
        settings = settings_of(grid)
        if not 1 <= len(settings) <= MAX_SETTINGS:
            raise ConfigError(f"{method}: {len(settings)} settings; the tuning budget is 1 to {MAX_SETTINGS}")
        own = {f.name for f in fields(cls.Config)} | (set(ENV_CHOICES) if cls.traits.online else {PASSES})
        foreign = sorted(set(grid) - own)
        if foreign:
            raise ConfigError(f"{method}: {', '.join(foreign)} is not one of its settings ({', '.join(sorted(own))})")
        return settings

    def run_config(self) -> dict:
        return {k: getattr(self, k) for k in RUN_SETTINGS}

    def record_path(self, method: str, index: int, seed: int) -> Path:
        return Path(self.out_dir) / "records" / method / f"setting{index}_seed{seed}.json"


def training_data(args: Args) -> dict[str, str]:
    """The tuning split's data, written once under ``<out-dir>/data``: the train prompts without the validation split
    (``--prompts``) and the task's comparisons without those of validation prompts (``--comparisons``); data written for
    another env id (or by --quick) is a :class:`ConfigError` naming its manifest."""
    task = load_task(task_of(args.env_id))
    directory = Path(args.out_dir) / "data"
    prompts, comparisons = directory / "tuning_prompts.jsonl", directory / "tuning_comparisons.jsonl"
    manifest, made_for = directory / "manifest.json", {"config": {"env_id": args.env_id, "quick": args.quick}}
    if manifest.is_file():
        check_stored(manifest, read_json(manifest, ("config",), "the tuning data's manifest"), made_for["config"])
    else:
        validation = set(task.validation_prompts)
        kept = [r for r in task.reward_model_comparisons() if r["prompt"] not in validation]
        write_jsonl(prompts, [{"prompt": p} for p in task.tuning_prompts])
        write_jsonl(comparisons, kept[:QUICK_COMPARISONS] if args.quick else kept)
        atomic_write_json(manifest, made_for)  # last: the data are complete once it exists
    return {"prompts": str(prompts), "comparisons": str(comparisons)}


def train_setting(args: Args, method: str, setting: dict[str, Any], seed: int) -> dict:
    """A job: train ``method`` with ``setting`` on the tuning split and score it on the validation split."""
    from rlhf_gym.agents import evaluate, train

    started = time.time()
    online = get_algorithm(method).traits.online
    data = training_data(args)
    budget = {"total_responses": args.total_responses} if online else {}
    run_dir = train.main(train.Args(
        algo=method, env_id=args.env_id, seed=seed, exp_name=f"tune_{method}", out_dir=str(Path(args.out_dir) / "runs"),
        progress_bar=False, **({"prompts": data["prompts"]} if online else {"comparisons": data["comparisons"]}),
        **budget, **(QUICK_TRAIN[online] if args.quick else {"n_eval_prompts": 64}), **setting))
    result = evaluate.main(evaluate.Args(agent=str(run_dir / "policy"), env_id=args.env_id, split="validation",
                                         n_eval_prompts=args.n_eval_prompts, seed=seed, kl_budget=args.kl_budget))
    return {"method": method, "setting": setting, "seed": seed, "validation": result["metrics"], "run_dir": str(run_dir),
            "config": args.run_config(), "seconds": round(time.time() - started, 1), "machine": machine()}


def jobs(args: Args) -> list[Job]:
    """The settings not stored yet (a stored one made with other settings is a :class:`ConfigError` naming it)."""
    todo = []
    for method in args.method_list():
        for index, setting in enumerate(args.settings(method)):
            for seed in parse_ints(args.seeds, "--seeds"):
                path = args.record_path(method, index, seed)
                if path.is_file():
                    stored = check_stored(path, read_json(path, ("config", "setting"), "a tuning record"), args.run_config())
                    if stored["setting"] != setting:
                        raise ConfigError(f"{path} holds another setting ({stored['setting']}); use another --out-dir")
                    continue
                todo.append(Job(f"tune {method} {setting} seed={seed}", train_setting, (args, method, setting, seed),
                                partial(atomic_write_json, path)))
    return todo


def choose(rows: list[dict], kl_budget: float) -> dict:
    """The chosen row: the highest validation gold among those within the KL budget, else the smallest KL."""
    within = [r for r in rows if r["kl"] <= kl_budget]
    return max(within, key=lambda r: r["gold_reward"]) if within else min(rows, key=lambda r: r["kl"])


def summarize(args: Args, records: list[dict]) -> list[dict]:
    """Per method: each setting's validation means over its seeds, and the chosen setting."""
    import numpy as np

    methods = []
    for method in args.method_list():
        rows = []
        for setting in args.settings(method):
            mine = [r["validation"] for r in records if r["method"] == method and r["setting"] == setting]
            rows.append({"setting": setting, "seeds": len(mine),
                         **{k: float(np.mean([m[k] for m in mine])) for k in ("gold_reward", "kl", "well_formed")}})
        methods.append({"method": method, "rows": rows, "chosen": choose(rows, args.kl_budget)["setting"]})
    return methods


def markdown_table(methods: list[dict], kl_budget: float) -> str:
    lines = [f"| method | setting | validation gold | KL | well-formed | chosen (best gold at KL ≤ {kl_budget:g}) |",
             "|---|---|---|---|---|---|"]
    for m in methods:
        for row in m["rows"]:
            setting = setting_text(row["setting"])
            chosen = "**chosen**" if row["setting"] == m["chosen"] else ""
            lines.append(f"| {m['method']} | {setting} | {row['gold_reward']:.3f} | {row['kl']:.2f} | "
                         f"{row['well_formed']:.2f} | {chosen} |")
    return "\n".join(lines) + "\n"


def chosen_settings(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{method: chosen setting}`` of a ``tuning.json`` (for ``rlhf-gym leaderboard --tuned``)."""
    stored = read_json(path, ("methods",), "a tuning result")
    return {m["method"]: m["chosen"] for m in stored["methods"]}


def main(args: Args) -> dict:
    started = start_study(args)
    training_data(args)  # written once, before the jobs read it
    run_all(jobs(args), args.workers, args.ray_settings())
    seeds = parse_ints(args.seeds, "--seeds")
    records = [read_json(args.record_path(m, i, seed), ("method", "setting", "validation"), "a tuning record")
               for m in args.method_list() for i, _ in enumerate(args.settings(m)) for seed in seeds]
    methods = summarize(args, records)
    result = {"args": asdict(args), "methods": methods, "seconds": round(time.time() - started, 1)}
    atomic_write_json(Path(args.out_dir) / "tuning.json", result)
    table = markdown_table(methods, args.kl_budget)
    atomic_write_text(Path(args.out_dir) / "tuning.md",
                      f"# Tuning on {args.env_id}'s validation split (seeds {args.seeds}; records "
                      f"{machines_summary(records)})\n\n{table}")
    print(table)
    print(f"done in {time.time() - started:.0f} s: tuning.json, tuning.md in {args.out_dir}")
    return result
