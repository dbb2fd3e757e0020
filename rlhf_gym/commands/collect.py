"""Stage 1: sample two responses per prompt from a policy and record which one a labeler prefers.

    rlhf-gym collect --out prefs.jsonl --n-pairs 1000                  # simulated annotator
    rlhf-gym collect --out prefs.jsonl --n-pairs 20 --labeler terminal  # you judge
    rlhf-gym collect --out pairs.jsonl --n-pairs 200 --no-labeler       # for the labelling page (rlhf-gym label)
    rlhf-gym collect --task lists --pairs mixed --counterfactual-share 0.5 --out prefs.jsonl   # counterfactual pairs

``--pairs`` chooses what a comparison sets side by side (:mod:`rlhf_gym.pairing`): two samples of the policy
(``sft``), a sample against itself with one content error added (``counterfactual``: the task's families, at the same
length, form and bias), or both (``mixed``, ``--counterfactual-share`` of them counterfactual).

Re-running with the same arguments continues where the last run stopped and writes what an uninterrupted run
would have written; every line already written stays. A second collector on the same --out is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_gym.cli import arg
from rlhf_gym.checks import check_positive_options, check_seed, check_temperature
from rlhf_gym.errors import ConfigError
from rlhf_gym.labelers import TIE_POLICIES, SimulatedAnnotator, TerminalLabeler, check_tie_policy
from rlhf_gym.pairing import PAIRINGS, Pairing, check_pairing
from rlhf_gym.prompts import load_prompts
from rlhf_gym.tasks import DEFAULT_MAX_NEW_TOKENS, TASKS, load_task, world_of

LABELERS = ("simulated", "terminal")


@dataclass
class Args:
    out: str = arg("preferences.jsonl", "output JSONL (appended to; a rerun resumes)")
    n_pairs: int = arg(1000, "comparisons to collect in total")
    task: str = arg("reviews", "task: its train prompts, SFT policy and gold reward", choices=TASKS)
    policy: str | None = arg(None, "HF causal LM id or directory to sample from (default: the task's SFT policy)")
    prompts: str | None = arg(None, "prompts file (.jsonl with 'prompt' or .txt); default: the task's train split")
    labeler: str = arg("simulated", "simulated (noisy Bradley-Terry annotator on the gold reward) or terminal (you)",
                       choices=LABELERS)
    no_labeler: bool = arg(False, "write unlabelled pairs (response_a, response_b) for the labelling page")
    pairs: str = arg("sft", "sft (two policy samples), counterfactual (a sample against itself with one content error "
                            "added) or mixed", choices=PAIRINGS)
    counterfactual_share: float = arg(0.5, "--pairs mixed: the share of counterfactual pairs")
    cut_share: float = arg(0.0, "the share of ordinary pairs made cut pairs: a sample against an ill-formed prefix of "
                                "itself, as a response cut off by the budget reads")
    contrast_share: float = arg(0.0, "the share of counterfactual pairs made contrast pairs: a sample against its words "
                                     "in another order that gold scores differently (describe)")
    garble_share: float = arg(0.0, "the share of ordinary pairs (after the cuts) made garbled pairs: a sample against "
                                   "itself with one word edited so that it is ill-formed")
    annotator_ties: str = arg("coin", "a pair the simulated annotator values equally (equal gold and bias): coin (a "
                                      "random label) or label (recorded as a tie, left out of reward-model training)",
                              choices=TIE_POLICIES)
    annotator_temperature: float = arg(0.5, "Bradley-Terry temperature of the simulated annotator")
    annotator_flip_rate: float = arg(0.1, "label-flip rate of the simulated annotator")
    labeler_name: str = arg("human", "name recorded for the terminal labeler")
    max_new_tokens: int = arg(DEFAULT_MAX_NEW_TOKENS, "response budget")
    temperature: float = arg(1.0, "sampling temperature")
    seed: int = arg(0, "seed of sampling and of the simulated annotator")
    device: str = arg("cpu", "cpu, cuda or auto")

    def __post_init__(self) -> None:
        if self.labeler not in LABELERS:
            raise ConfigError(f"--labeler must be simulated or terminal, got {self.labeler!r}")
        check_positive_options(self, ("n_pairs", "max_new_tokens"))
        check_temperature(self.temperature)
        check_temperature(self.annotator_temperature, "--annotator-temperature", sampling=False)
        if not 0 <= self.annotator_flip_rate <= 1:
            raise ConfigError(f"--annotator-flip-rate must be in [0, 1], got {self.annotator_flip_rate}")
        check_seed(self.seed)
        check_pairing(self.pairs, self.counterfactual_share, self.cut_share, self.contrast_share, self.garble_share)
        check_tie_policy(self.annotator_ties)


def main(args: Args) -> int:
    # torch and transformers only once the command runs: --help stays fast
    from transformers import AutoTokenizer

    from rlhf_gym.collect import collect_preferences
    from rlhf_gym.utils import load_model, load_pretrained, resolve_device

    task = load_task(args.task)
    device = resolve_device(args.device)
    if args.policy:
        policy = load_model(args.policy, "policy", "--policy").to(device).eval()
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, args.policy, "--policy's tokenizer")
    else:
        policy, tokenizer = task.load_policy(device), task.load_tokenizer()
    prompts = load_prompts(args.prompts) if args.prompts else task.train_prompts
    if args.no_labeler:
        labeler = None
    elif args.labeler == "terminal":
        labeler = TerminalLabeler(name=args.labeler_name)
    else:
        if task.gold_reward is None:
            raise ConfigError(f"task {task.name!r} has no gold reward: use --labeler terminal or --no-labeler")
        labeler = SimulatedAnnotator(task.gold_reward, args.annotator_temperature, args.annotator_flip_rate, seed=args.seed,
                                     label_ties=args.annotator_ties == "label")
    pairing = Pairing.for_world(world_of(args.task), args.pairs, args.counterfactual_share, args.cut_share,
                                contrast_share=args.contrast_share, garble_share=args.garble_share)
    added = collect_preferences(policy, tokenizer, prompts, labeler, args.out, args.n_pairs, args.max_new_tokens,
                                args.temperature, seed=args.seed, batch_size=1 if args.labeler == "terminal" else 128,
                                pairing=pairing)
    print(f"added {added} record(s) to {args.out}")
    return added
