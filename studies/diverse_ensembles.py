"""Diverse reward-model ensembles against over-optimisation, measured (Coste et al. 2023).

Trains the members of each ``--kinds`` of ensemble (:mod:`rlhf_gym.studies.analysis.diversity`: members that differ in seed
only, in their data, in their size, or in all three), standardises each on SFT samples, then runs the beta sweep's PPO
(``--betas``, ``--seeds``) against every ensemble with every ``--objectives`` (mean, worst case, uncertainty-weighted),
and reports whether any moves the gold peak against the single reward model of ``--compare`` (a finished sweep store,
e.g. the 64x2 proxy of ``rlhf-gym rm-scaling``). It also measures the members' disagreement on SFT samples against
their disagreement on the ill-formed texts the policies produced.

The run store under ``--out-dir`` (atomic writes; a rerun skips what exists, refuses what has other settings):
``members/<name>/`` (shared between kinds), ``ensembles/<kind>/ensemble.json``, ``ppo/<kind>_<objective>/runs/``, and
``ensembles.json``, ``ensembles.md``, ``ensembles.png``.

    rlhf-gym diverse-ensembles --compare runs/rm_scaling/ppo/w64_l2_n10000
    rlhf-gym diverse-ensembles --quick --out-dir /tmp/ens
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.dispatch import Job, RayOptions, run_all
from rlhf_gym.ensemble import OBJECTIVES, RewardEnsemble
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.studies.analysis.diversity import KINDS, disagreement, ensemble_members, stored_samples, summary_table
from rlhf_gym.studies.analysis.figures import plot_groups
from rlhf_gym.proxy_spec import ProxySpec, parse_ints, parse_sizes
from rlhf_gym.studies.analysis.run_store import load_runs
from rlhf_gym.studies.analysis.tables import hacked_count, summarize
from rlhf_gym.reward_settings import METADATA_FILE
from rlhf_gym.tasks import load_task
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json

from . import sweep
from .sweep import start_study

@dataclass
class Args(RayOptions, sweep.PPORunOptions):
    out_dir: str = arg("runs/diverse_ensembles", "the run store: members/, ensembles/, ppo/, the table and the figure")
    kinds: str = arg("disjoint,mixed", f"comma-separated kinds of ensemble: {', '.join(KINDS)}")
    objectives: str = arg(",".join(OBJECTIVES), "comma-separated ensemble objectives")
    uncertainty_coef: float = arg(1.0, "lambda of the uncertainty objective (mean - lambda * std)")
    member_seeds: str = arg("1,2,3", "one seed per member")
    sizes: str = arg("32x1,64x2,128x3", "member sizes (WIDTHxLAYERS) of the sizes and mixed kinds, one per member")
    n_comparisons: int = arg(10000, "shipped comparisons the members share out (disjoint kinds: a third each)")
    n_norm_samples: int = arg(2000, "SFT samples that standardise each member")
    betas: str = arg("0", "comma-separated KL coefficients of the PPO runs")
    iterations: int = arg(48, "PPO iterations per run")
    eval_every: int = arg(4, "held-out evaluation every this many PPO iterations")
    compare: str | None = arg(None, "a finished sweep store with the single reward model's runs (same PPO settings)")
    quick: bool = arg(False, "smoke test: tiny members, one kind, two objectives, two PPO iterations")

    ray_gpus_used = False

    def __post_init__(self) -> None:
        self.ray_settings()
        if self.quick:
            self.kinds, self.objectives, self.sizes, self.n_comparisons = "mixed", "mean,worst", "8x1,16x1,8x1", 96
            self.seeds, self.iterations, self.eval_every, self.n_envs, self.batch_size = "0", 2, 1, 8, 4
            self.n_epochs, self.max_new_tokens, self.n_eval_prompts, self.n_norm_samples, self.workers = 2, 12, 16, 32, 1
        check_positive_options(self, ("iterations", "eval_every", "n_eval_prompts", "n_envs", "batch_size", "n_epochs",
                                      "learning_rate", "max_new_tokens", "workers", "n_comparisons"))
        unknown = [k for k in self.kind_list() if k not in KINDS]
        wrong = [o for o in self.objective_list() if o not in OBJECTIVES]
        if unknown or wrong or not self.kind_list() or not self.objective_list():
            raise ConfigError(f"--kinds must list some of {', '.join(KINDS)} and --objectives some of "
                              f"{', '.join(OBJECTIVES)}; got {self.kinds!r}, {self.objectives!r}")
        if self.n_norm_samples < 2:
            raise ConfigError(f"--n-norm-samples must be >= 2, got {self.n_norm_samples}")
        if self.compare is not None and not (Path(self.compare) / "runs").is_dir():
            raise MissingFileError(f"--compare: {self.compare} is not a sweep store (no runs/ in it)")
        for kind in self.kind_list():
            self.members(kind)  # bad seeds, sizes or a wrong number of sizes fail here

    def kind_list(self) -> list[str]:
        return [k.strip() for k in self.kinds.split(",") if k.strip()]

    def objective_list(self) -> list[str]:
        return [o.strip() for o in self.objectives.split(",") if o.strip()]

    def members(self, kind: str) -> list[ProxySpec]:
        return ensemble_members(kind, self.n_comparisons, parse_sizes(self.sizes),
                                parse_ints(self.member_seeds, "--member-seeds"))

    def member_dir(self, spec: ProxySpec) -> Path:
        return Path(self.out_dir) / "members" / spec.name

    def ensemble_dir(self, kind: str) -> Path:
        return Path(self.out_dir) / "ensembles" / kind

    def sweep_args(self, kind: str, objective: str) -> sweep.Args:
        """The beta sweep against one ensemble and objective, storing its runs under ``ppo/<kind>_<objective>``."""
        return super().sweep_args(Path(self.out_dir) / "ppo" / f"{kind}_{objective}", self.betas,
                                  ensemble_objective=objective, uncertainty_coef=self.uncertainty_coef,
                                  ensemble_dir=str(self.ensemble_dir(kind)))


def member_jobs(args: Args) -> list[Job]:
    """Every member of every kind not trained yet (a member two kinds share is trained once)."""
    from rlhf_gym.proxies import train_proxy  # torch only once the study runs: the options and --help need none

    specs = dict.fromkeys(spec for kind in args.kind_list() for spec in args.members(kind))
    return [Job(f"member {spec.name}", train_proxy, (spec, str(args.member_dir(spec)))) for spec in specs
            if not (args.member_dir(spec) / METADATA_FILE).exists()]


def write_ensemble(args: Args, kind: str, norm: tuple[list[str], list[str]]) -> None:
    """``ensembles/<kind>/ensemble.json``: the members (paths relative to it), their standardisation on SFT samples,
    their metrics, and the gold agreement of each objective."""
    from rlhf_gym.proxies import measure_gold_agreement, standardisation
    from rlhf_gym.reward_model import RewardModel

    manifest, members = [], []
    for spec in args.members(kind):
        directory = args.member_dir(spec)
        metrics = read_json(directory / METADATA_FILE, ("eval_accuracy", "gold_agreement"), "a member's metadata")
        members.append(RewardModel.from_pretrained(directory))
        shift, scale = standardisation(members[-1], *norm)
        manifest.append({"path": os.path.relpath(directory, args.ensemble_dir(kind)), "spec": asdict(spec),
                         "shift": shift, "scale": scale, "eval_accuracy": metrics["eval_accuracy"],
                         "gold_agreement": metrics["gold_agreement"]})
    shifts, scales = [m["shift"] for m in manifest], [m["scale"] for m in manifest]
    agreement = {objective: measure_gold_agreement(RewardEnsemble(members, objective, args.uncertainty_coef, shifts,
                                                                  scales))["gold_agreement"] for objective in OBJECTIVES}
    atomic_write_json(args.ensemble_dir(kind) / "ensemble.json", {"members": manifest, "gold_agreement": agreement,
                                                                  "n_norm_samples": args.n_norm_samples})


def measure_disagreement(args: Args, kind: str, runs: list[dict], norm: tuple[list[str], list[str]]) -> dict:
    """The members' disagreement (:func:`disagreement`) on SFT samples, on the well-formed and on the ill-formed
    samples stored by ``runs``."""
    task = load_task("reviews")
    ensemble = RewardEnsemble.from_pretrained(args.ensemble_dir(kind))
    samples = stored_samples(runs)
    groups = {"sft": list(zip(*norm)),
              "policy, well-formed": [s for s in samples if task.is_well_formed(*s)],
              "policy, ill-formed": [s for s in samples if not task.is_well_formed(*s)]}
    return {name: disagreement(ensemble, [p for p, _ in pairs], [r for _, r in pairs]) for name, pairs in groups.items()}


def main(args: Args) -> dict:
    from rlhf_gym.proxies import standardisation_samples

    started = start_study(args)
    out_dir = Path(args.out_dir)
    run_all(member_jobs(args), args.workers, args.ray_settings())
    norm = standardisation_samples(args.n_norm_samples)
    for kind in args.kind_list():
        if not (args.ensemble_dir(kind) / "ensemble.json").exists():
            write_ensemble(args, kind, norm)
    run_all([job for kind in args.kind_list() for objective in args.objective_list()
             for job in sweep.jobs(args.sweep_args(kind, objective))], args.workers, args.ray_settings())

    sweeps = {f"{kind}, {objective}": load_runs(Path(args.sweep_args(kind, objective).out_dir))
              for kind in args.kind_list() for objective in args.objective_list()}
    baseline = {"single reward model": load_runs(args.compare)} if args.compare else {}
    rows = {}
    for label, runs in {**baseline, **sweeps}.items():
        for row in summarize(runs):
            group = [r for r in runs if r["beta"] == row["beta"]]
            rows[label if len(args.betas.split(",")) == 1 else f"{label}, beta {row['beta']:g}"] = {
                **row, "hacked": hacked_count(group), "n_runs": len(group)}
    all_runs = [r for runs in {**baseline, **sweeps}.values() for r in runs]
    manifests = {kind: read_json(args.ensemble_dir(kind) / "ensemble.json", ("members",), "an ensemble manifest")
                 for kind in args.kind_list()}
    spread = {kind: measure_disagreement(args, kind, all_runs, norm) for kind in args.kind_list()}
    result = {"args": asdict(args), "rows": rows, "ensembles": manifests, "disagreement": spread,
              "runs": {label: runs for label, runs in sweeps.items()}, "seconds": round(time.time() - started, 1)}
    atomic_write_json(out_dir / "ensembles.json", result)
    table = summary_table(rows) + "\nMembers' disagreement (mean between-member std of standardised scores):\n\n"
    table += "| ensemble | " + " | ".join(spread[args.kind_list()[0]]) + " | gold agreement: " + \
        ", ".join(OBJECTIVES) + " |\n|---|" + "---|" * (len(spread[args.kind_list()[0]]) + 1) + "\n"
    for kind, groups in spread.items():
        cells = " | ".join(f"{g['mean_member_std']:.3f} (n={g['n']})" for g in groups.values())
        agreement = ", ".join(f"{manifests[kind]['gold_agreement'][o]:.3f}" for o in OBJECTIVES)
        table += f"| {kind} | {cells} | {agreement} |\n"
    atomic_write_text(out_dir / "ensembles.md", f"# Diverse reward-model ensembles (reviews task)\n\n{table}")
    panels = {kind: {**baseline, **{objective: sweeps[f"{kind}, {objective}"] for objective in args.objective_list()}}
              for kind in args.kind_list()}
    plot_groups(panels, out_dir / "ensembles.png", title="gold reward against sqrt(KL): ensembles of diverse members "
                f"(PPO, beta {args.betas}, {len(args.seed_list())} seed(s))")
    print(table)
    print(f"done in {time.time() - started:.0f} s: ensembles.json, ensembles.md, ensembles.png in {out_dir}")
    return result
