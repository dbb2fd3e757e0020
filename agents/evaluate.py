"""Score any saved agent on held-out prompts: the evaluation protocol of the rlhf-gym benchmark.

The agent is any registered algorithm's saved ``.zip`` (its class found by :mod:`rlhf_gym.agents.registry`), an
exported Hugging Face policy directory, or ``sft`` (the task's reference policy). On the held-out prompts of the env
id's task, one response per prompt is sampled (temperature 1, seed ``--seed``) and scored with the id's proxy reward,
the gold reward and the KL to the reference (``sum_t log pi(y_t) - log pi_ref(y_t)`` on the policy's own samples).

**Headline: gold reward at KL <= 10 nats** — the mean gold reward if the mean KL is at most ``--kl-budget``
(10 nats), else *over budget* (null). Beside it: the best-of-n-matched gap, gold reward minus the gold reward
of best-of-n at the same KL (``--best-of-n``: a ``best_of_n.json`` of ``scripts/best_of_n.py``; null past its
largest n). See docs/benchmark_protocol.md.

    rlhf-gym evaluate --agent runs/<run>/agent.zip
    rlhf-gym evaluate --agent runs/<run>/policy --env-id RLHF-Reviews-Ensemble-v0
    rlhf-gym evaluate --agent sft --best-of-n runs/best_of_n/best_of_n.json
    rlhf-gym evaluate --agent sft --suite RLHF-Suite-v0                         # every task of the suite
    rlhf-gym evaluate --agent 'runs/suite/{task}/policy' --suite RLHF-Suite-v0  # one trained policy per task
    rlhf-gym evaluate --model my_llama --suite RLHF-Suite-v0                    # any causal LM, any tokenizer
    rlhf-gym evaluate --model my_llama_rlhf --reference my_llama_sft --env-id RLHF-Lists-v0

**Any model** (``--model``): a causal LM with its own tokenizer (a byte-level BPE, SentencePiece...) is scored on the
task's text: the prompts are encoded with its tokenizer, its responses decoded to text (special tokens dropped, spaces
stripped) for the gold reward, well-formedness and the task's reward model (which reads the text with its own
tokenizer). The response budget is in the model's tokens (the task's, converted: ``Task.response_budget``). The KL is
taken against ``--reference`` (a policy with the same tokenizer); with none, gold and proxy only.

On a task with a gold ceiling the metrics also hold the **normalised score** ``(G - G_sft) / (ceiling - G_sft)``:
0 is the SFT policy, 1 the best any response can get. With ``--suite`` the agent runs on every task of the suite
(an agent is tied to its task's tokenizer, so a path names the task with ``{task}`` or ``{env_id}``) and one
table, a row per task, is printed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym

import rlhf_gym  # noqa: F401  (registers the env ids)
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.metrics import format_number
from rlhf_gym.best_of_n import interpolate_best_of_n
from rlhf_gym.registration import DEFAULT_SUITE, suite_env_ids, task_of
from rlhf_gym.tokenizers import check_same_tokenizer
from rlhf_gym.files import atomic_write_json, read_json

from .registry import load_policy

SPLITS = ("held_out", "validation")

if TYPE_CHECKING:  # torch and transformers only once the command runs: --help stays fast
    import torch

    from rlhf_gym.envs import RLHFEnvSurface


@dataclass
class Args:
    agent: str = arg("sft", "an agent's .zip (any algorithm), exported HF policy directory, or 'sft' (the task's "
                            "reference policy); with --suite, a path with {task} or {env_id} in it")
    env_id: str = arg("RLHF-v0", "benchmark task: a registered env id (its reward model, task and response budget)")
    model: str | None = arg(None, "in place of --agent: any causal LM (HF directory or hub id) with its own tokenizer, scored "
                                  "on the task's text; with --suite, {task} or {env_id} may name one per task")
    reference: str | None = arg(None, "with --model: the reference policy of the KL (same tokenizer as --model); default: "
                                      "none, gold and proxy only")
    suite: str | None = arg(None, f"evaluate on every env id of this suite instead of --env-id (e.g. {DEFAULT_SUITE})")
    n_eval_prompts: int = arg(1024, "held-out prompts (the reviews task has 1024; the protocol uses all)")
    split: str = arg("held_out", "prompts scored: held_out (the task's evaluation prompts: the protocol) or validation "
                                 "(the last 256 train prompts, which rlhf-gym tune holds out of training to choose "
                                 "settings)", choices=SPLITS)
    seed: int = arg(0, "sampling seed")
    kl_budget: float = arg(10.0, "KL budget of the headline number (nats per response)")
    best_of_n: str | None = arg(None, "best_of_n.json for the best-of-n-matched gap")
    out: str | None = arg(None, "write the result as JSON here")
    device: str = arg("auto", "cpu, cuda or auto")

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        try:
            gym.spec(self.env_id)
        except gym.error.Error as error:
            raise ConfigError(f"--env-id: {error}") from None
        if self.model is not None and self.agent != "sft":
            raise ConfigError("give --agent or --model, not both")
        if self.reference is not None and self.model is None:
            raise ConfigError("--reference applies to --model (an --agent's reference is its task's SFT policy)")
        if self.model is not None:
            if self.best_of_n is not None:
                raise ConfigError("--best-of-n compares at the task's KL; it needs --agent, not --model")
            for env_id in suite_env_ids(self.suite) if self.suite is not None else (self.env_id,):
                model_path(self.model, env_id, "--model")
        elif self.suite is not None:
            env_ids = suite_env_ids(self.suite)
            if self.agent != "sft" and "{" not in self.agent:
                raise ConfigError("--agent: with --suite, name each task's agent with {task} or {env_id} in the path "
                                  f"(an agent runs on its own task only), got {self.agent!r}")
            if self.best_of_n is not None:
                raise ConfigError("--best-of-n is a single task's curve; it does not apply with --suite")
            for env_id in env_ids:
                self.agent_path(env_id)
        elif self.agent != "sft" and not Path(self.agent).exists():
            raise MissingFileError(f"--agent: no such file or directory: {self.agent}")
        if self.n_eval_prompts <= 0 or self.kl_budget <= 0:
            raise ConfigError("--n-eval-prompts and --kl-budget must be > 0")
        if self.best_of_n is not None and not Path(self.best_of_n).is_file():
            raise MissingFileError(f"--best-of-n: file not found: {self.best_of_n}")


    def agent_path(self, env_id: str) -> str:
        """The agent for ``env_id``: ``sft``, or ``--agent`` with ``{task}`` / ``{env_id}`` filled in (must exist)."""
        if self.agent == "sft":
            return "sft"
        path = fill_in(self.agent, env_id, "--agent")
        if not Path(path).exists():
            raise MissingFileError(f"--agent: no such file or directory for {env_id}: {path}")
        return path


def fill_in(template: str, env_id: str, option: str) -> str:
    """``template`` with ``{task}`` and ``{env_id}`` filled in for ``env_id``; :class:`ConfigError` naming ``option``
    for any other field."""
    try:
        return template.format(task=task_of(env_id), env_id=env_id)
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"{option}: only {{task}} and {{env_id}} may be filled in, got {template!r} ({error})") from None


def model_path(template: str, env_id: str, option: str) -> str:
    """A ``--model`` or ``--reference`` for ``env_id``: a local directory (must hold a ``config.json``) or, for a name
    that is no local path, a hub id (loaded when the command runs)."""
    path = fill_in(template, env_id, option)
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise MissingFileError(f"{option}: {path} holds no model (no config.json)")
    return path


def headline(gold_reward: float, kl: float, kl_budget: float = 10.0) -> float | None:
    """Gold reward at KL <= budget: the mean gold reward if the mean KL is within the budget, else None (over budget)."""
    return gold_reward if kl <= kl_budget else None


def load_agent(path: str, env: RLHFEnvSurface, device: torch.device, option: str = "--agent"):
    """The agent's causal LM; its tokenizer must be the reference's (else the KL is undefined). ``option`` (``--agent``
    or ``--model``) names it in errors."""
    from transformers import AutoTokenizer

    from rlhf_gym.utils import load_model, load_pretrained

    if path == "sft":
        return env.ref_model
    if Path(path).is_file():
        lm = load_policy(path, device)
    else:
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path, f"{option}'s tokenizer")
        check_same_tokenizer(tokenizer, env.tokenizer, f"{option} {path}", "the reference policy's (the KL is undefined)")
        lm = load_model(path, "policy", option).to(device).eval()
    if lm.get_output_embeddings().weight.shape[0] != env.vocab_size:
        raise ConfigError(f"{option} {path}: its vocabulary does not match the reference policy's; the KL is undefined")
    return lm


def main(args: Args) -> dict:
    """Score the agent (or ``--model``) on ``--env-id``, or on every task of ``--suite`` (then ``{"suite", "rows"}``)."""
    if args.suite is None:
        return evaluate_on(args, args.env_id, args.agent if args.model is None else args.model)
    rows = [evaluate_on(args, env_id, args.agent_path(env_id) if args.model is None else args.model, write=False)
            for env_id in suite_env_ids(args.suite)]
    name = args.agent if args.model is None else args.model
    result = {"suite": args.suite, "agent": name, "rows": rows, "args": asdict(args)}
    print(f"\n{name} on {args.suite}\n\n{suite_table(rows)}")
    if args.out:
        atomic_write_json(args.out, result)
    return result


SUITE_COLUMNS = ("gold_reward", "normalised_score", "proxy_reward", "kl", "response_length", "distinct_2", "well_formed")


def suite_table(rows: list[dict]) -> str:
    """A markdown table, one row per env id, of :data:`SUITE_COLUMNS` (``-`` where a task has no such value)."""
    lines = ["| env id | " + " | ".join(SUITE_COLUMNS) + " |", "|---" * (len(SUITE_COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [format_number(row["metrics"][c]) if row["metrics"].get(c) is not None else "-" for c in SUITE_COLUMNS]
        lines.append(f"| {row['env_id']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_on(args: Args, env_id: str, agent: str, write: bool = True) -> dict:
    """The protocol's result for ``agent`` on ``env_id`` (written to ``--out`` when ``write``)."""
    from rlhf_gym.evaluation import distinct_n, evaluate_policy
    from rlhf_gym.utils import resolve_device

    device = resolve_device(args.device)
    if args.model is None:
        env = gym.make(env_id, device=device).unwrapped
    else:
        # the env encodes the task's prompts with the reference's tokenizer, or with the model's own when none is named
        # (then the env's reference is the model itself, used only for its tokenizer: no KL is measured)
        agent = model_path(args.model, env_id, "--model")
        reference = model_path(args.reference, env_id, "--reference") if args.reference is not None else agent
        try:
            env = gym.make(env_id, device=device, ref_model=reference).unwrapped
        except (MissingFileError, ConfigError) as error:  # the env names its reference: say which option that was
            raise type(error)(f"{'--reference' if args.reference is not None else '--model'}: {error}") from None
    if env.task is None:
        raise ConfigError(f"--env-id {env_id}: the env has no task, so no held-out prompts or gold reward")
    no_reference = args.model is not None and args.reference is None
    policy = env.ref_model if no_reference else load_agent(agent, env, device, "--agent" if args.model is None else "--model")
    prompts = (env.task.eval_prompts if args.split == "held_out" else env.task.validation_prompts)[: args.n_eval_prompts]
    ev = evaluate_policy(policy, env.tokenizer, prompts, env.reward_fn, None if no_reference else env.ref_model, env.task,
                         env.max_new_tokens, env.temperature, seed=args.seed)
    metrics = {**ev.summary(), "distinct_1": distinct_n(ev.responses, 1),
               "gold_reward_sem": float(ev.gold_reward.std() / math.sqrt(len(prompts))),
               "kl_sem": None if ev.kl is None else float(ev.kl.std() / math.sqrt(len(prompts))),
               "normalised_score": env.task.normalised_score(prompts, float(ev.gold_reward.mean()))}
    kl = metrics["kl"]
    result = {"agent": agent, "env_id": env_id, "n_prompts": len(prompts), "max_new_tokens": env.max_new_tokens,
              "metrics": metrics,
              "headline": {"name": f"gold reward at KL <= {args.kl_budget:g} nats",
                           "value": None if kl is None else headline(metrics["gold_reward"], kl, args.kl_budget),
                           "over_budget": None if kl is None else kl > args.kl_budget},
              "samples": [[p, r] for p, r in zip(ev.prompts[:5], ev.responses[:5])], "args": asdict(args)}
    if args.best_of_n:
        curve = read_json(args.best_of_n, ("curve",), "a best-of-n result")["curve"]
        matched = interpolate_best_of_n(curve, metrics["kl"])
        result["best_of_n_matched"] = {"gold_reward": matched,
                                       "gap": None if matched is None else metrics["gold_reward"] - matched}
    value = result["headline"]["value"]
    if kl is None:
        print(f"{agent} on {env_id}: gold reward {format_number(metrics['gold_reward'])} (no --reference: KL not measured)")
    else:
        print(f"{agent} on {env_id}: {result['headline']['name']} = "
              f"{'over budget' if value is None else format_number(value)} (KL {format_number(kl, 2)})")
    print("  " + ", ".join(f"{k} {format_number(v)}" for k, v in metrics.items() if v is not None))
    if args.out and write:
        atomic_write_json(args.out, result)
    return result
