"""A reward model's agreement with a task's gold reward by pair type, and its probe table of one-error edits.

Overall agreement hides a proxy that sees length and form only. This command measures, on fresh SFT pairs of the
task's held-out prompts (the pairs the task build measures on), the share of pairs the reward model orders as gold
does: overall, on pairs that differ in length or form only, and on pairs that differ in each content-error family
(:mod:`rlhf_gym.pair_types`). Then the probe table: a ceiling answer against the same answer with one error of each
family, at the same length and bias; a proxy that sees the family prefers the ceiling answer on every prompt.

With ``--policy`` the pairs are two samples of that policy instead of the SFT policy's, on the same prompts: the
agreement on what an RL run trained on the proxy produces, off the SFT distribution the proxy was trained and first
measured on: a proxy can rank SFT pairs well and the policy's own samples badly.

    rlhf-gym rm-quality --task lists                               # the task's shipped reward model
    rlhf-gym rm-quality --task lists --reward-model rm/ --out rm/quality.json
    rlhf-gym rm-quality --task lists_v1 --policy runs/<run>/policy   # on an RL policy's own samples
    rlhf-gym rm-quality --task lists_v1 --pair-draws 10              # the agreement's mean over 10 draws of pairs

One draw of pairs (the build's: about 800 decided pairs on lists) measures the agreement to about ± 0.03 (a 95 %
binomial interval); ``--pair-draws K`` samples K draws of pairs of the same prompts (the first is the build's) and
reports the mean over draws with its 95 % Student-t interval, overall and per family.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks import task_names


@dataclass
class Args:
    task: str = arg("lists", "task: its gold reward, SFT policy, held-out prompts and content-error families",
                    choices=task_names)
    reward_model: str | None = arg(None, "reward model directory or HF id (default: the task's shipped one)")
    policy: str | None = arg(None, "policy directory whose samples make the pairs (default: the task's SFT policy)")
    n_probe_prompts: int = arg(300, "held-out prompts of the probe table")
    pair_draws: int = arg(1, "draws of pairs of the same prompts; above 1: the mean over draws with its Student-t interval")
    out: str | None = arg(None, "also write the figures as JSON here")

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ConfigError(f"--task must be one of {', '.join(task_names())}, got {self.task!r}")
        check_positive_options(self, ("n_probe_prompts", "pair_draws"))


def markdown_probes(probes: dict[str, dict]) -> str:
    """The probe table as Markdown: per family, the prompts, the share where the proxy prefers the ceiling answer, and
    the mean proxy and gold margins."""
    lines = ["| family | prompts | proxy prefers the ceiling answer | proxy margin | gold margin |", "|---|---|---|---|---|"]
    for family, row in probes.items():
        if not row["prompts"]:
            lines.append(f"| {family} | 0 | — | — | — |")
            continue
        lines.append(f"| {family} | {row['prompts']} | {row['prefers_ceiling']:.3f} | {row['margin']:.3f} | "
                     f"{row['gold_margin']:.3f} |")
    return "\n".join(lines)


def agreement_over_draws(draws: list[dict]) -> dict[str, dict]:
    """Per pair type (``overall`` and each family of the draws' ``by_type``), the mean agreement over the draws with
    the half-width of its 95 % Student-t interval (None for one draw), the number of draws with pairs of that type, and
    the pairs in all of them."""
    from rlhf_gym.statistics import mean_and_half_width

    summary = {}
    for kind in (k for k in draws[0]["by_type"] if k != "gold_ties"):
        rows = [draw["by_type"][kind] for draw in draws if draw["by_type"][kind]["agreement"] is not None]
        agreement, half_width = mean_and_half_width([row["agreement"] for row in rows]) or (None, None)
        summary[kind] = {"agreement": agreement, "half_width": half_width, "draws": len(rows),
                         "pairs": sum(row["pairs"] for row in rows)}
    return summary


def markdown_over_draws(summary: dict[str, dict]) -> str:
    """:func:`agreement_over_draws` as a Markdown table."""
    from rlhf_gym.statistics import plus_half_width

    lines = ["| pair type | draws | pairs | agreement with gold (mean ± 95 % interval over draws) |", "|---|---|---|---|"]
    for kind, row in summary.items():
        cell = plus_half_width(None if row["agreement"] is None else (row["agreement"], row["half_width"]))
        lines.append(f"| {kind} | {row['draws']} | {row['pairs']} | {cell} |")
    return "\n".join(lines)


def main(args: Args) -> dict:
    from rlhf_gym.files import atomic_write_json
    from rlhf_gym.pair_types import content_probes, form_probe, markdown_agreement
    from rlhf_gym.proxies import measure_gold_agreement
    from rlhf_gym.reward_model import RewardModel
    from rlhf_gym.tasks import load_task, world_of
    from rlhf_gym.tasks.building import saved_task_policy

    task, world = load_task(args.task), world_of(args.task)
    if not world.content_errors:
        raise ConfigError(f"task {args.task!r} has no content-error families to split by (lists, facts, describe have)")
    policy = saved_task_policy(world, args.policy, "--policy") if args.policy else None
    reward_model = RewardModel.from_pretrained(args.reward_model) if args.reward_model else task.load_reward_model()
    draws = [measure_gold_agreement(reward_model, task, policy, draw) for draw in range(args.pair_draws)]
    agreement = draws[0]
    probes = content_probes(world, reward_model.score, task.eval_prompts[: args.n_probe_prompts])
    form = form_probe(world, reward_model.score, task.eval_prompts[: args.n_probe_prompts])
    report = {"task": args.task, "reward_model": args.reward_model or str(task.reward_dir),
              "policy": args.policy or str(task.policy_dir), **agreement, "probes": probes, "form_probe": form}
    sampler = f"pairs of {args.policy}'s samples" if args.policy else "fresh SFT pairs"
    print(f"{args.task}: agreement with gold {agreement['gold_agreement']:.3f} on {agreement['n_pairs']} {sampler} "
          f"of held-out prompts\n\n{markdown_agreement(agreement['by_type'])}\n\n"
          f"{markdown_probes({**probes, 'garbled (form)': form})}")
    if args.pair_draws > 1:
        report["draws"] = [draw["by_type"] for draw in draws]
        report["over_draws"] = agreement_over_draws(draws)
        print(f"\nover {args.pair_draws} draws of pairs of the same prompts:\n\n{markdown_over_draws(report['over_draws'])}")
    if args.out:
        atomic_write_json(args.out, report)
    return report
