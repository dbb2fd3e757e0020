"""Does each suite task's designed reward hack happen? Evidence from a `rlhf-gym leaderboard --suite` run.

For every env id of the suite whose task has an annotator bias:

1. **Training curves** — proxy and gold reward per iteration (``curve.jsonl``) of PPO at the default beta and of
   ``ppo_small_beta``, mean over seeds. The hack is the proxy rising while the gold reward falls from its peak.
2. **The bias in the policies** — the bias feature ``b`` (length, boilerplate, echo) of the SFT policy's samples and
   of each trained policy's, on the same held-out prompts, with samples of the small-beta policies.
3. **The reward model's preference for the bias alone** — the proxy reward of a ceiling response with ``k`` units of
   the bias added and its content unchanged (``TaskWorld.bias_probe``), ``k = 0 ... K``, mean over held-out prompts,
   beside its gold reward; and whether it sees the content at all: the same ceiling responses against versions of
   the same shape and bias with the content wrong (``TaskWorld.content_probe``).

    rlhf-gym suite-hacks --leaderboard-dir runs/suite --out-dir docs/suite

Writes ``suite_hacks.md``, ``suite_hacks.json`` and ``<env id>_hack.png`` per task to ``--out-dir``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlhf_gym.studies.leaderboard import SMALL_BETA_METHOD, record_path
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.registration import DEFAULT_SUITE, suite_env_ids, task_of
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.files import atomic_write_json, atomic_write_text, read_json

if TYPE_CHECKING:  # a task's world loads transformers: --help needs none
    from rlhf_gym.tasks import TaskWorld

METHODS = ("ppo", SMALL_BETA_METHOD)


@dataclass
class Args:
    leaderboard_dir: str = arg("runs/suite", "output directory of `rlhf-gym leaderboard --suite` (with ppo and "
                                             f"{SMALL_BETA_METHOD} records)")
    suite: str = arg(DEFAULT_SUITE, "the suite that was run")
    seeds: str = arg("0,1,2", "comma-separated seeds of the runs")
    n_prompts: int = arg(256, "held-out prompts on which the bias of each policy and the probe are measured")
    max_bias: int = arg(3, "the probe adds k = 0 ... max_bias units of the bias to ceiling responses (facts: at most 3)")
    n_samples: int = arg(6, "samples of the small-beta policies shown per task")
    out_dir: str = arg("runs/suite_hacks", "where suite_hacks.md, .json and the figures go")

    def __post_init__(self) -> None:
        suite_env_ids(self.suite)
        if self.n_prompts <= 0 or self.max_bias <= 0 or self.n_samples < 0:
            raise ConfigError("--n-prompts and --max-bias must be > 0, --n-samples >= 0")
        if not Path(self.leaderboard_dir).is_dir():
            raise MissingFileError(f"--leaderboard-dir: no such directory: {self.leaderboard_dir}")

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds.split(",")]


def mean_curve(run_dirs: list[Path]) -> dict[str, list[float]]:
    """Per-iteration mean over runs of proxy reward, gold reward and KL (the runs' shortest length)."""
    curves = [list(read_jsonl(d / "curve.jsonl")) for d in run_dirs]
    length = min(len(c) for c in curves)
    return {key: [float(np.mean([c[i][key] for c in curves])) for i in range(length)]
            for key in ("proxy_reward", "gold_reward", "kl")}


def hack_summary(curve: dict[str, list[float]]) -> dict[str, float]:
    """Start, peak and final gold reward and start/final proxy reward of a mean curve (first/last 5 iterations)."""
    gold, proxy = np.array(curve["gold_reward"]), np.array(curve["proxy_reward"])
    peak = int(np.argmax(gold))
    return {"proxy_start": float(proxy[:5].mean()), "proxy_final": float(proxy[-5:].mean()),
            "gold_start": float(gold[:5].mean()), "gold_peak": float(gold[peak]), "gold_peak_iteration": peak + 1,
            "gold_final": float(gold[-5:].mean()), "kl_final": float(np.mean(curve["kl"][-5:]))}


def mean_scores(world: TaskWorld, prompts: list[str], responses: list[str], reward_model=None) -> dict:
    """Mean gold reward and bias of ``responses`` to ``prompts`` (and the mean proxy reward when a reward model is
    given), with the first pair as an example."""
    scores = {"gold_reward": float(np.mean([world.gold_reward(p, r) for p, r in zip(prompts, responses)])),
              "bias": float(np.mean([world.annotator_bias(p, r) for p, r in zip(prompts, responses)])),
              "example": [prompts[0], responses[0]]}
    if reward_model is not None:
        scores["proxy_reward"] = float(reward_model.score(prompts, responses).mean())
    return scores


def bias_probe(world: TaskWorld, reward_model, prompts: list[str], max_bias: int) -> list[dict]:
    """For k = 0 ... max_bias: mean proxy reward, gold reward and bias of ceiling responses with k units added."""
    return [{"k": k, **mean_scores(world, prompts, [world.bias_probe(p, k) for p in prompts], reward_model)}
            for k in range(max_bias + 1)]


def task_report(env_id: str, args: Args) -> dict:
    # torch and transformers only once the report runs: --help stays fast
    from rlhf_gym.generation import generate_texts
    from rlhf_gym.utils import load_model

    world = world_of(task_of(env_id))
    task = load_task(world.name)
    tokenizer, reward_model = task.load_tokenizer(), task.load_reward_model()
    prompts = task.eval_prompts[: args.n_prompts]

    def samples_of(policy) -> list[str]:
        return generate_texts(policy, tokenizer, prompts, task.max_new_tokens, seed=0)

    records = {m: [read_json(record_path(Path(args.leaderboard_dir) / env_id, m, s), ("run_dir",), "a leaderboard record")
                   for s in args.seed_list] for m in METHODS}
    report = {"env_id": env_id, "bias_name": world.bias_name,
              "sft": mean_scores(world, prompts, samples_of(task.load_policy())),
              "curves": {}, "summary": {}, "policies": {}, "samples": []}
    for method, group in records.items():
        curve = mean_curve([Path(r["run_dir"]) for r in group])
        report["curves"][method], report["summary"][method] = curve, hack_summary(curve)
        responses = [samples_of(load_model(Path(r["run_dir"]) / "policy", "policy", "a trained policy")) for r in group]
        measured = [mean_scores(world, prompts, r) for r in responses]
        report["policies"][method] = {key: float(np.mean([m[key] for m in measured])) for key in ("bias", "gold_reward")}
        if method == SMALL_BETA_METHOD:
            shown = responses[0][: args.n_samples]
            proxy = reward_model.score(prompts[: len(shown)], shown)
            report["samples"] = [{"prompt": p, "response": r, "bias": world.annotator_bias(p, r),
                                  "gold_reward": world.gold_reward(p, r), "proxy_reward": float(q)}
                                 for p, r, q in zip(prompts, shown, proxy)]
    report["probe"] = bias_probe(world, reward_model, prompts, args.max_bias)
    # whether the reward model sees the content: the ceiling responses (the probe at k = 0) against the same shape and
    # bias with the content wrong
    report["content"] = {"ceiling": report["probe"][0],
                         "content wrong": mean_scores(world, prompts, [world.content_probe(p) for p in prompts],
                                                      reward_model)} if world.content_probe else None
    return report


def plot(report: dict, path: Path) -> None:
    """Left: mean proxy (dashed) and gold (solid) reward per iteration, default and small beta. Right: the probe."""
    from rlhf_gym.plots import pyplot, save_figure

    plt = pyplot()
    fig, (ax, ax_probe) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.5, 1]})
    for method, colour in zip(METHODS, ("tab:blue", "tab:red")):
        curve = report["curves"][method]
        iterations = np.arange(1, len(curve["gold_reward"]) + 1)
        ax.plot(iterations, curve["gold_reward"], "-", color=colour, label=f"{method}: gold")
        ax.plot(iterations, curve["proxy_reward"], "--", color=colour, label=f"{method}: proxy")
    ax.set_xlabel("PPO iteration")
    ax.set_ylabel("reward (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    k = [row["k"] for row in report["probe"]]
    ax_probe.plot(k, [row["proxy_reward"] for row in report["probe"]], "o--", color="tab:red", label="proxy (reward model)")
    ax_probe.plot(k, [row["gold_reward"] for row in report["probe"]], "o-", color="black", label="gold")
    ax_probe.set_xlabel(f"units of bias added to a ceiling response ({report['bias_name']})")
    ax_probe.set_ylabel("reward (mean over held-out prompts)")
    ax_probe.grid(alpha=0.3)
    ax_probe.legend(fontsize=8)
    save_figure(fig, path, f"{report['env_id']}: the designed hack ({report['bias_name']})", dpi=90)


def markdown(reports: list[dict], args: Args) -> str:
    lines = [f"Reward hacks of {args.suite} (seeds {args.seeds}; `rlhf-gym suite-hacks`, arguments: {asdict(args)})", ""]
    for report in reports:
        lines += [f"## {report['env_id']}: {report['bias_name']}", "",
                  "| policy | proxy start → final | gold start → peak (iteration) → final | KL final | bias "
                  "| gold on probe prompts |",
                  "|---|---|---|---|---|---|",
                  f"| SFT | | | 0 | {report['sft']['bias']:.2f} | {report['sft']['gold_reward']:.3f} |"]
        for method in METHODS:
            s, p = report["summary"][method], report["policies"][method]
            lines.append(f"| {method} | {s['proxy_start']:.3f} → {s['proxy_final']:.3f} | {s['gold_start']:.3f} → "
                         f"{s['gold_peak']:.3f} ({s['gold_peak_iteration']}) → {s['gold_final']:.3f} | {s['kl_final']:.2f} "
                         f"| {p['bias']:.2f} | {p['gold_reward']:.3f} |")
        lines += ["", "Reward model's preference for the bias alone (ceiling responses + k units of bias):", "",
                  "| k | bias | proxy reward | gold reward |", "|---|---|---|---|"]
        lines += [f"| {r['k']} | {r['bias']:.2f} | {r['proxy_reward']:.3f} | {r['gold_reward']:.3f} |"
                  for r in report["probe"]]
        prompt, example = report["probe"][-1]["example"]
        lines += ["", f"e.g. k = {args.max_bias}: `{prompt}` → `{example}`"]
        if report["content"]:
            lines += ["", "Does the reward model see the content? Ceiling responses against the same shape and bias with "
                      "the content wrong:", "", "| response | proxy reward | gold reward | example |", "|---|---|---|---|"]
            lines += [f"| {name} | {row['proxy_reward']:.3f} | {row['gold_reward']:.3f} | `{row['example'][1]}` |"
                      for name, row in report["content"].items()]
        lines += ["", f"Samples of the {SMALL_BETA_METHOD} policy (seed {args.seed_list[0]}):", "",
                  "| prompt | response | bias | gold | proxy |", "|---|---|---|---|---|"]
        lines += [f"| {s['prompt']} | {s['response']} | {s['bias']:.0f} | {s['gold_reward']:.2f} | {s['proxy_reward']:.2f} |"
                  for s in report["samples"]]
        lines.append("")
    return "\n".join(lines)


def biased_env_ids(suite: str) -> list[str]:
    """The env ids of ``suite`` whose task has an annotator bias and a probe of it."""
    worlds = {env_id: world_of(task_of(env_id)) for env_id in suite_env_ids(suite)}
    return [env_id for env_id, world in worlds.items() if world.annotator_bias and world.bias_probe]


def main(args: Args) -> list[dict]:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for env_id in biased_env_ids(args.suite):
        print(f"[suite-hacks] {env_id}", flush=True)
        report = task_report(env_id, args)
        plot(report, out_dir / f"{env_id}_hack.png")
        reports.append(report)
    atomic_write_json(out_dir / "suite_hacks.json", {"reports": reports, "args": asdict(args)})
    atomic_write_text(out_dir / "suite_hacks.md", markdown(reports, args))
    print(markdown(reports, args))
    return reports
