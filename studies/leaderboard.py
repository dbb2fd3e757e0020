"""The leaderboard: every RLHF method of rlhf-gym on one task, at a matched budget, scored by one protocol.

Methods: the SFT policy; best-of-{4, 16, 64} from it, chosen by the proxy reward; PPO, NLPO, RLOO and GRPO, each
``--total-responses`` sampled responses (the same budget in responses for all four); DPO, one pass over the
comparisons the task's reward model was trained on (the same data the RL methods' reward comes from). Each method
trains with the training command's defaults for it (``rlhf-gym train --algo <method>``). Every trained policy is
exported and scored by the benchmark protocol (:mod:`rlhf_gym.agents.evaluate`: the held-out prompts, seed 0) — gold reward,
the headline gold reward at KL <= 10 nats, proxy reward, KL, distinct-2, well-formed share — with its training
time. One record per (method, seed) is
stored as JSON in ``<out-dir>/records`` the moment it is finished, so a rerun skips what is done. The (method, seed)
runs are independent jobs of :func:`rlhf_gym.dispatch.run_all`: one after another here (``--workers 1``), in local
processes, or one Ray task each with ``--ray``/``--ray-address`` (with ``--suite``: the runs of every task at once).

    rlhf-gym leaderboard                                  # all methods, seeds 0,1,2, on RLHF-v0
    rlhf-gym leaderboard --methods ppo,rloo --seeds 0     # a subset
    rlhf-gym leaderboard --quick                          # a smoke test of the whole pipeline (tiny budgets)
    rlhf-gym leaderboard --methods trl_dpo,trl_rloo,trl_grpo   # TRL's trainers, same settings (the bench extra)
    rlhf-gym leaderboard --suite RLHF-Suite-v0 --methods sft,best_of_n,ppo,ppo_small_beta   # every task of the suite
    rlhf-gym leaderboard --ray-address auto --ray-num-gpus 1 --out-dir /shared/leaderboard  # a Ray cluster, a GPU each

On a task with a gold ceiling each record also has the normalised score (0 = SFT, 1 = the ceiling). ``ppo_small_beta``
is PPO with ``--small-beta`` (default 0.01) instead of the default 0.1: the leash at which the suite's designed
reward hacks show. With ``--suite`` every env id of the suite gets its own leaderboard under ``<out-dir>/<env id>``,
and ``suite.md`` puts them side by side (normalised score, or gold reward where a task has no ceiling).

With ``--tuned <tuning.json>`` (``rlhf-gym tune``: every method's setting chosen on a validation split of the train
prompts, at most six settings each) each method trains with its chosen setting instead of its defaults; the setting is
stored with each record, and a record made with another setting is refused.

Writes ``leaderboard.md`` (mean ± the half-width of a 95 % Student-t interval over seeds, :mod:`rlhf_gym.statistics`,
and the significance tiers of the headline: :func:`significance_tiers`) and ``leaderboard.png`` (gold reward against
sqrt(KL): every seed of every method, and the best-of-n curve) to ``--out-dir``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from rlhf_gym.agents import evaluate as protocol
from rlhf_gym.agents import train
from rlhf_gym.agents.experiment import DEFAULT_TOTAL_RESPONSES
from rlhf_gym.agents.registry import algorithm_names, get_algorithm
from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.studies import best_of_n
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.errors import ConfigError
from rlhf_gym.metrics import format_number
from rlhf_gym.registration import suite_env_ids, task_of
from rlhf_gym.statistics import Interval, letter_groups, mean_and_half_width, plus_half_width, separated_chain
from rlhf_gym.tasks import load_task
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json
from rlhf_gym.provenance import machine, machines_summary

BEST_OF_N = (4, 16, 64)
TRL_METHODS = ("trl_dpo", "trl_rloo", "trl_grpo", "trl_online_dpo", "trl_kto", "trl_simpo")
"""TRL 0.29.1's trainers with our matched settings (:mod:`rlhf_gym.benchmarks.trl_algorithms`; needs the ``bench`` extra)."""
SMALL_BETA_METHOD = "ppo_small_beta"
BASELINES = ("sft", "best_of_n")
DEFAULT_METHODS = (*BASELINES, "ppo", "nlpo", "rloo", "grpo", "dpo")
"""The published leaderboard's rows (docs/leaderboard.md)."""


def methods() -> tuple[str, ...]:
    """Every method: the baselines, every registered algorithm (at its training defaults), PPO at ``--small-beta``
    and TRL's trainers."""
    return (*BASELINES, *algorithm_names(), SMALL_BETA_METHOD, *TRL_METHODS)

COLUMNS = ("gold_reward", "normalised_score", "proxy_reward", "kl", "distinct_2", "well_formed", "seconds")
QUICK = {"n_envs": 8, "batch_size": 4, "max_new_tokens": 10, "total_responses": 16, "n_eval_prompts": 8, "n_max": 4}
"""--quick: the whole pipeline on tiny budgets (a smoke test, not a result)."""


@dataclass
class Args(RayOptions):
    env_id: str = arg("RLHF-v0", "registered env id (its task gives the prompts, the gold reward and the comparisons)")
    methods: str = arg(",".join(DEFAULT_METHODS), f"comma-separated methods to run, of: {', '.join(methods())}")
    seeds: str = arg("0,1,2", "comma-separated training seeds (for sft and best_of_n: sampling seeds)")
    total_responses: int = arg(DEFAULT_TOTAL_RESPONSES, "RL methods: responses sampled in training (the matched budget)")
    n_eval_prompts: int = arg(1024, "held-out prompts scored per policy (the protocol uses all 1024)")
    kl_budget: float = arg(10.0, "KL budget of the headline number (nats per response)")
    out_dir: str = arg("runs/leaderboard", "records, training runs, leaderboard.md and leaderboard.png go here")
    quick: bool = arg(False, "tiny budgets, to check the pipeline end to end in about a minute")
    small_beta: float = arg(0.01, f"KL coefficient of {SMALL_BETA_METHOD} (PPO on a short leash)")
    suite: str | None = arg(None, "run every env id of this suite instead of --env-id (e.g. RLHF-Suite-v0)")
    workers: int = arg(1, "runs at once in local processes (spawned, one torch thread each); 1: one after another in "
                          "this process; with Ray the cluster's free resources decide instead")
    tuned: str | None = arg(None, "tuning.json of `rlhf-gym tune`: each method trains with its chosen setting (a method "
                                  "it did not tune: its defaults)")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.method_list) - set(methods()))
        if unknown or not self.method_list:
            raise ConfigError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(methods())}")
        if not all(s.strip().lstrip("-").isdigit() for s in self.seeds.split(",")):
            raise ConfigError(f"--seeds must be comma-separated integers, got {self.seeds!r}")
        check_positive_options(self, ("total_responses", "n_eval_prompts", "kl_budget", "workers"))
        if not self.small_beta >= 0:
            raise ConfigError(f"--small-beta must be >= 0, got {self.small_beta}")
        if self.suite is not None:
            suite_env_ids(self.suite)
        if self.tuned is not None:
            self.setting_of("ppo")  # a missing or malformed file fails here
        self.ray_settings()  # checks the Ray options

    def setting_of(self, method: str) -> dict:
        """The setting ``method`` trains with: its chosen one in ``--tuned``, else none (its defaults)."""
        from rlhf_gym.studies.tuning import chosen_settings

        return {} if self.tuned is None else chosen_settings(self.tuned).get(method, {})

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",")]


def record_path(out_dir: str | Path, method: str, seed: int) -> Path:
    return Path(out_dir) / "records" / f"{method}_seed{seed}.json"


def score(agent: str, args: Args, seed: int = 0) -> dict:
    """The protocol's metrics of ``agent`` (a policy directory or ``sft``) with sampling seed ``seed``."""
    result = protocol.main(protocol.Args(agent=agent, env_id=args.env_id, seed=seed,
                                         n_eval_prompts=n_prompts(args),
                                         kl_budget=args.kl_budget))
    return {**result["metrics"], "samples": result["samples"]}


def train_and_score(method: str, seed: int, args: Args) -> dict:
    """Train ``method`` with the training command's defaults for it (``rlhf-gym train --algo method``) and score the
    exported policy."""
    algo, kl_coef = ("ppo", args.small_beta) if method == SMALL_BETA_METHOD else (method, None)
    if not args.quick:
        quick = {}
    elif not get_algorithm(algo).traits.online:
        # a few comparisons; the response budget stays the one the comparisons were sampled with
        quick = {"batch_size": 4, "total_comparisons": 16, "n_eval_prompts": QUICK["n_eval_prompts"]}
    else:
        quick = {k: v for k, v in QUICK.items() if k != "n_max"}
    setting = args.setting_of(method)
    # one dict, so that a tuned setting (a kl_coef, say) overrides the method's own values instead of clashing
    options = {"kl_coef": kl_coef, "total_responses": args.total_responses, "n_eval_prompts": 64, **quick, **setting}
    run_args = train.Args(algo=algo, env_id=args.env_id, seed=seed, exp_name=f"leaderboard_{method}",
                          out_dir=str(Path(args.out_dir) / "runs"), progress_bar=False, **options)
    run_dir = train.main(run_args)
    summary = read_json(run_dir / "summary.json", ("train_seconds",), "a run's summary")
    budget = {k: summary[k] for k in ("responses", "comparisons") if k in summary}
    return {**score(str(run_dir / "policy"), args), "seconds": summary["train_seconds"], "run_dir": str(run_dir),
            "setting": setting, **budget}


def n_max(args: Args) -> int:
    return QUICK["n_max"] if args.quick else max(BEST_OF_N)


def n_prompts(args: Args) -> int:
    """Held-out prompts scored per policy (and sampled for best-of-n)."""
    return QUICK["n_eval_prompts"] if args.quick else args.n_eval_prompts


def record_names(method: str, args: Args) -> list[str]:
    """The records a method writes: best_of_n one per n of :data:`BEST_OF_N` (up to ``n_max``), the others one."""
    return [f"best_of_{n}" for n in BEST_OF_N if n <= n_max(args)] if method == "best_of_n" else [method]


def best_of_n_records(seed: int, args: Args) -> dict[str, dict]:
    """best-of-n rows (gold, proxy, well-formed by the unbiased estimator; KL analytic) from one sampling."""
    started = time.time()
    curve = best_of_n.main(best_of_n.Args(task=task_of(args.env_id), n_max=n_max(args),
                                          out_dir=str(Path(args.out_dir) / "best_of_n" / f"seed{seed}"),
                                          n_prompts=n_prompts(args),
                                          seed=best_of_n.Args.seed + seed))
    seconds = round(time.time() - started, 1)
    names = record_names("best_of_n", args)
    return {f"best_of_{row['n']}": {**row, "seconds": seconds, "curve": curve} for row in curve
            if f"best_of_{row['n']}" in names}


def run_method(method: str, seed: int, args: Args) -> dict[str, dict]:
    """The records of one (method, seed), ``{record name: record}``, with their normalised scores (a job: the driver
    stores them)."""
    print(f"[leaderboard] {args.env_id}: {method}, seed {seed}", flush=True)
    records = method_records(method, seed, args)
    task = load_task(task_of(args.env_id))
    prompts = task.eval_prompts[: n_prompts(args)]
    made_on = machine()  # here, in the worker: its thread count is the run's
    return {name: {**record, "normalised_score": task.normalised_score(prompts, record["gold_reward"]), "machine": made_on}
            for name, record in records.items()}


def method_records(method: str, seed: int, args: Args) -> dict[str, dict]:
    if method == "sft":
        return {"sft": {**score("sft", args, seed), "seconds": 0.0}}
    if method == "best_of_n":
        return best_of_n_records(seed, args)
    if method in TRL_METHODS:
        return {method: train_trl_and_score(method.removeprefix("trl_"), seed, args)}
    return {method: train_and_score(method, seed, args)}


def train_trl_and_score(algo: str, seed: int, args: Args) -> dict:
    """TRL's trainer for ``algo`` with the matched settings (tiny budgets with ``--quick``); the exported policy scored
    by the same protocol. Its time is TRL's ``train()`` alone, as ours is ``learn()`` alone (no loading, no
    evaluation; DPO's and KTO's reference log-probs are computed before it in both)."""
    from rlhf_gym.benchmarks import trl_algorithms

    out = Path(args.out_dir) / "runs" / f"trl_{algo}_seed{seed}"
    if args.quick:  # two optimizer steps each (KTO: 8 comparisons are 16 examples)
        settings = trl_algorithms.Settings(responses=32, comparisons=8, dpo_batch_size=4, kto_batch_size=8, simpo_batch_size=4)
    else:
        settings = trl_algorithms.Settings(responses=args.total_responses)
    policy_dir = trl_algorithms.train_trl(algo, out, seed, settings)
    trained = read_json(out / "train.json", ("train_runtime_s", "optimizer_steps"), "a TRL run's record")
    return {**score(str(policy_dir), args), "seconds": round(trained["train_runtime_s"], 1), "run_dir": str(out),
            "optimizer_steps": trained["optimizer_steps"]}


def jobs(args: Args) -> list[Job]:
    """A job per (method, seed) that has no record yet: :func:`run_method` in a worker, its records stored here. A
    stored record trained with another setting than ``--tuned`` gives (none: the defaults) is a :class:`ConfigError`."""
    settings = {method: args.setting_of(method) for method in args.method_list}  # one read of --tuned
    for seed in args.seed_list:
        for method, setting in settings.items():
            path = record_path(args.out_dir, method, seed)
            stored = read_json(path).get("setting", {}) if path.exists() else setting
            if stored != setting:
                raise ConfigError(f"{path} was trained with setting {stored}, not {setting}; use another --out-dir or "
                                  "delete it")
    return [Job(f"{args.env_id} {method} seed={seed}", run_method, (method, seed, args),
                partial(store_records, args.out_dir, seed))
            for seed in args.seed_list for method in args.method_list
            if not all(record_path(args.out_dir, name, seed).exists() for name in record_names(method, args))]


def store_records(out_dir: str | Path, seed: int, records: dict[str, dict]) -> None:
    for name, record in records.items():
        atomic_write_json(record_path(out_dir, name, seed), {"method": name, "seed": seed, **record})


def read_records(args: Args) -> list[dict]:
    """The stored records of the requested methods and seeds, seed by seed in the order of ``--methods``."""
    return [read_json(record_path(args.out_dir, name, seed), ("method", "seed", "gold_reward", "kl"), "a leaderboard record")
            for seed in args.seed_list for method in args.method_list for name in record_names(method, args)]


def collect(args: Args) -> list[dict]:
    """Run every (method, seed) that has no record yet; return all records of the requested methods and seeds."""
    run_all(jobs(args), args.workers, args.ray_settings())
    return read_records(args)


def aggregate(records: list[dict], kl_budget: float) -> list[dict]:
    """One row per method: the mean over seeds of :data:`COLUMNS` with its 95 % interval (``(mean, half-width)``), and
    the headline (gold reward at KL <= budget) over the seeds within the budget, with how many were; then each row's
    significance tier (:func:`significance_tiers`)."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in records):
        group = [r for r in records if r["method"] == method]
        row = {"method": method, "seeds": len(group)}
        for column in COLUMNS:
            row[column] = mean_and_half_width([float(r[column]) for r in group if r.get(column) is not None])
        within = [float(r["gold_reward"]) for r in group if r["kl"] <= kl_budget]
        row["headline"] = mean_and_half_width(within)
        row["within_budget"] = len(within)
        rows.append(row)
    significance_tiers(rows)
    return rows


def ranked(rows: list[dict]) -> list[dict]:
    """The rows the tiers rank, best headline mean first: at least two seeds, every one of them within the budget.

    A method over the budget on some seeds is not ranked (its headline is still shown, with how many seeds were within):
    a mean over the seeds that stayed within is a survivor's mean, higher than the method's, and its interval over fewer
    seeds is wider, so one unstable method would otherwise join the tiers of every method its interval spans.
    """
    return sorted((r for r in rows if r.get("headline") is not None and r["within_budget"] >= 2
                   and r["within_budget"] == r["seeds"]), key=lambda r: -r["headline"][0])


def headline_interval(row: dict) -> Interval:
    mean, half_width = row["headline"]
    return Interval(mean, half_width, row["within_budget"])


def significance_tiers(rows: list[dict]) -> None:
    """Set each row's ``tier`` (1 = the best) and ``letters`` from the headline's 95 % intervals; None for a row that
    :func:`ranked` leaves out (fewer than two seeds, or any seed over the budget).

    With the rows in order of headline mean, a tier ends between two neighbours exactly when every interval above the
    cut lies wholly above every interval below it. So every method of a tier is significantly better than every method
    of every lower tier, whatever the widths; methods of one tier may or may not differ (one wide interval holds its
    neighbours together). The letters (:func:`rlhf_gym.statistics.letter_groups`) keep every pairwise test that one
    wide interval hides from the tiers: two methods with no letter in common differ significantly.
    """
    best_first = ranked(rows)
    for row in rows:
        row["tier"] = row["letters"] = None
    intervals = [headline_interval(row) for row in best_first]
    for row, letters in zip(best_first, letter_groups(intervals)):
        row["letters"] = letters
    tier, lowest_above = 1, float("inf")
    for i, row in enumerate(best_first):
        # a cut before row i exactly when every interval above it clears every interval below it
        if i and lowest_above > max(interval.high for interval in intervals[i:]):
            tier += 1
        row["tier"] = tier
        lowest_above = min(lowest_above, intervals[i].low)


def tier_count(rows: list[dict]) -> int:
    return max((row["tier"] for row in rows if row.get("tier") is not None), default=0)


def separated_methods(rows: list[dict]) -> list[str]:
    """The longest chain of methods whose headline intervals are pairwise apart, best first
    (:func:`rlhf_gym.statistics.separated_chain`): how many levels the table ranks with every step significant."""
    best_first = ranked(rows)
    return [best_first[k]["method"] for k in separated_chain([headline_interval(row) for row in best_first])]


def markdown_table(rows: list[dict], kl_budget: float) -> str:
    cell = plus_half_width

    lines = [f"| method | seeds | **gold reward at KL ≤ {kl_budget:g}** | tier | letters | gold reward | normalised score | "
             "proxy reward | KL (nats) | distinct-2 | well-formed | training time (s) |", "|---" * 12 + "|"]
    for row in rows:
        headline = cell(row["headline"])
        if row["headline"] is not None and row["within_budget"] < row["seeds"]:
            headline += f" ({row['within_budget']} of {row['seeds']} within)"
        elif row["headline"] is None:
            headline = "over budget"
        tier = "—" if row.get("tier") is None else str(row["tier"])
        letters = row.get("letters") or "—"
        lines.append(f"| {row['method']} | {row['seeds']} | **{headline}** | {tier} | {letters} | "
                     f"{cell(row['gold_reward'])} | {cell(row['normalised_score'])} | {cell(row['proxy_reward'])} | "
                     f"{cell(row['kl'], 2)} | {cell(row['distinct_2'])} | {cell(row['well_formed'])} | "
                     f"{cell(row['seconds'], 0)} |")
    return "\n".join(lines) + "\n"


def significance_summary(rows: list[dict], chain: list[str]) -> str:
    """What the table's intervals separate: its number of tiers, what the letters mean, and ``chain``, the longest chain
    of methods with pairwise-apart intervals (:func:`separated_methods`)."""
    return (f"Significance of the headline (95 % intervals over seeds; apart = significant): {tier_count(rows)} tier(s), each "
            "method of a tier above every method of every lower tier; two methods with no letter in common differ; the "
            f"longest chain of methods pairwise apart has {len(chain)} level(s): {' > '.join(chain) or 'none'}.\n")


def per_seed(records: list[dict]) -> str:
    """One line per method: gold reward (KL) of each seed, in seed order."""
    lines = []
    for method in dict.fromkeys(r["method"] for r in records):
        group = sorted((r for r in records if r["method"] == method), key=lambda r: r["seed"])
        lines.append(f"* {method}: " + ", ".join(f"seed {r['seed']} {format_number(r['gold_reward'])} "
                                                 f"(KL {format_number(r['kl'], 2)})" for r in group))
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: str | Path, title: str, kl_budget: float) -> None:
    """Gold reward against sqrt(KL): one marker per seed, the mean with its std as error bars (squares: TRL's
    trainers), best-of-n as a line, the headline's KL budget as a dotted line."""
    from rlhf_gym.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    curves = [r["curve"] for r in records if "curve" in r]
    if curves:
        ns = [row["n"] for row in curves[0]]
        gold = np.mean([[row["gold_reward"] for row in c] for c in curves], axis=0)
        ax.plot(np.sqrt([row["kl"] for row in curves[0]]), gold, "-", color="black", linewidth=1,
                label=f"best-of-n, n = 1 ... {ns[-1]} (analytic KL)")
    methods = [m for m in dict.fromkeys(r["method"] for r in records) if not m.startswith("best_of_")]
    colours = plt.get_cmap("tab10")(np.arange(len(methods)))
    for method, colour in zip(methods, colours):
        group = [r for r in records if r["method"] == method]
        d, g = np.sqrt(np.clip([r["kl"] for r in group], 0, None)), np.array([r["gold_reward"] for r in group])
        ax.scatter(d, g, color=colour, s=14, alpha=0.5, linewidths=0)
        ax.errorbar(d.mean(), g.mean(), xerr=d.std(), yerr=g.std(), fmt="s" if method in TRL_METHODS else "o",
                    color=colour, markersize=6, capsize=3, label=f"{method} ({len(group)} seeds)")
    ax.axvline(np.sqrt(kl_budget), linestyle=":", color="grey", label=f"KL budget ({kl_budget:g} nats)")
    ax.set_xlabel("sqrt(KL(pi || pi_ref))  (sqrt nats per response)")
    ax.set_ylabel("gold reward (held-out prompts)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path, title, dpi=90)


def main(args: Args) -> list[dict]:
    """One env id's leaderboard (its rows), or with ``--suite`` every env id's and ``suite.md`` (all rows)."""
    if args.suite is None:
        return env_leaderboard(args, collect(args))
    by_args = [dataclasses.replace(args, env_id=env_id, suite=None, out_dir=str(Path(args.out_dir) / env_id))
               for env_id in suite_env_ids(args.suite)]
    run_all([job for env_args in by_args for job in jobs(env_args)], args.workers, args.ray_settings())
    by_env = {env_args.env_id: env_leaderboard(env_args, read_records(env_args)) for env_args in by_args}
    table = suite_table(by_env)
    atomic_write_text(Path(args.out_dir) / "suite.md", f"Leaderboard on {args.suite} ({seeds_phrase(args)}; "
                                                       f"`rlhf-gym leaderboard`, arguments: {asdict(args)})\n\n{table}")
    print(table)
    return [{"env_id": env_id, **row} for env_id, rows in by_env.items() for row in rows]


def seeds_phrase(args: Args) -> str:
    """How many seeds and which, for a header: ``1 seed: 0``, ``3 seeds: 0, 1, 2``."""
    seeds = args.seed_list
    return f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}: {', '.join(map(str, seeds))}"


def suite_table(by_env: dict[str, list[dict]]) -> str:
    """Methods by env ids: the normalised score (mean ± the 95 % half-width over seeds) where the task has a ceiling,
    else the gold reward (marked ``G``)."""
    methods = list(dict.fromkeys(row["method"] for rows in by_env.values() for row in rows))
    lines = ["| method | " + " | ".join(by_env) + " |", "|---" * (len(by_env) + 1) + "|"]
    for method in methods:
        cells = []
        for rows in by_env.values():
            row = next((r for r in rows if r["method"] == method), None)
            if row is None:
                cells.append("—")
            elif row["normalised_score"] is not None:
                cells.append(plus_half_width(row["normalised_score"], 2))
            else:
                cells.append(f"G {plus_half_width(row['gold_reward'], 3)}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("| tiers | " + " | ".join(str(tier_count(rows)) for rows in by_env.values()) + " |")
    lines.append("| levels apart | " + " | ".join(str(len(separated_methods(rows))) for rows in by_env.values()) + " |")
    return "\n".join(lines) + "\n"


def env_leaderboard(args: Args, records: list[dict]) -> list[dict]:
    """Write one env id's leaderboard.md, leaderboard.json and leaderboard.png from its records; return its rows."""
    rows = aggregate(records, args.kl_budget)
    out_dir = Path(args.out_dir)
    table = markdown_table(rows, args.kl_budget)
    separated = separated_methods(rows)
    atomic_write_text(out_dir / "leaderboard.md", f"Leaderboard on {args.env_id} ({seeds_phrase(args)}; `rlhf-gym "
                                                  f"leaderboard`, arguments: {asdict(args)}; records "
                                                  f"{machines_summary(records)})\n\n{table}\n"
                                                  f"{significance_summary(rows, separated)}\n"
                                                  f"Gold reward (KL) per seed:\n\n{per_seed(records)}")
    atomic_write_json(out_dir / "leaderboard.json", {"rows": rows, "separated": separated,
                                                     "args": asdict(args)})
    plot(records, out_dir / "leaderboard.png", f"{args.env_id}: gold reward against sqrt(KL), every method", args.kl_budget)
    print(table)
    return rows
