"""Stage 1: sample two responses per prompt from a policy and record a labeler's judgement as JSONL.

Pair ``k`` always uses prompt ``prompts[k % len(prompts)]``, the sampling seed of its batch of ``batch_size``
pairs (a batch is always sampled whole, so the budget ``n_pairs`` does not change it) and a labeler stream
seeded by ``(seed, k)`` (``Labeler.seed_pair``). So a re-run with the same arguments continues where the last
one stopped and writes exactly what an uninterrupted run would: the pair ids already in the file are skipped,
and every line already written stays as it is. The output file is locked while a collector writes it; a
second collector on the same file is refused.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from .checks import check_temperature
from .errors import ConfigError
from .generation import generate_texts
from .jsonl import JSONLError, append_jsonl, exclusive_writer, read_jsonl, repair_truncated_tail
from .labelers import Labeler
from .pairing import Pairing
from .preferences import preference_record
from .prompts import tokenize_prompts
from .tasks import DEFAULT_MAX_NEW_TOKENS
from .utils import context_length

def check_sampling(policy, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float) -> None:
    """Refuse a temperature or a response budget the policy cannot sample with (:class:`ConfigError` naming the option).

    Prompt plus response must fit the policy's positions (``n_positions`` or ``max_position_embeddings``).
    """
    check_temperature(temperature)
    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    limit = context_length(policy) if hasattr(policy, "config") else None
    if limit is None:  # not a Hugging Face model: nothing to check against
        return
    prompt_ids = tokenize_prompts(list(dict.fromkeys(prompts)), tokenizer)  # warns about prompts of unknown words only
    longest = max(len(ids) for ids in prompt_ids)
    if longest + max_new_tokens > limit:
        raise ConfigError(f"--max-new-tokens {max_new_tokens} is too long: the policy has {limit} positions and the "
                          f"longest prompt {longest} tokens, so at most {max(limit - longest, 0)} new tokens fit")


def _pair_id(record: dict, where: str, labelled: bool) -> int:
    """The ``pair_id`` of a line this module wrote in the same mode; :class:`JSONLError` naming ``where`` otherwise."""
    pair_id = record.get("pair_id")
    is_labelled, is_unlabelled = {"chosen", "rejected"} <= record.keys(), {"response_a", "response_b"} <= record.keys()
    if isinstance(pair_id, bool) or not isinstance(pair_id, int) or not (is_labelled or is_unlabelled):
        raise JSONLError(f"{where}: not a preference file written by the collector (no integer 'pair_id' with "
                         "chosen/rejected or response_a/response_b); choose another output file")
    if is_labelled != labelled:
        holds = "labelled preferences" if is_labelled else "unlabelled pairs"
        wanted = "labelled preferences" if labelled else "unlabelled pairs"
        raise JSONLError(f"{where}: this file holds {holds}, this collection writes {wanted}; choose another output file")
    return pair_id


def existing_pair_ids(path: str | Path, labelled: bool = True) -> set[int]:
    """Pair ids already recorded in ``path`` (empty if the file does not exist).

    :param labelled: whether the file should hold labelled preferences (else unlabelled pairs).
    :raises JSONLError: naming the file and line of a record the collector did not write, or of the other mode.
    """
    if not Path(path).exists():
        return set()
    return set(read_jsonl(path, lambda record, where: _pair_id(record, where, labelled), what="output file"))


def collect_preferences(
    policy,
    tokenizer,
    prompts: list[str],
    labeler: Labeler | None,
    out_path: str | Path,
    n_pairs: int,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
    second_policy=None,
    pairing: Pairing | None = None,
) -> int:
    """Append up to ``n_pairs`` comparisons to ``out_path``; return how many were added this call.

    With ``labeler=None`` the pairs are written unlabelled (``response_a``/``response_b``), for a person
    to judge later in the labelling page. With ``second_policy`` each pair's second response comes from it (e.g. the
    SFT policy, to contrast a trained policy's text with its starting point), with the seed it would have had. With a
    ``pairing`` other than ``sft`` (:mod:`rlhf_gym.pairing`) a pair's second response may be a counterfactual edit of
    its first, and each record carries its ``pair_type``.

    :raises ConfigError: for a temperature or response budget the policy cannot sample with, or when another
        collector is writing ``out_path``.
    """
    check_sampling(policy, tokenizer, prompts, max_new_tokens, temperature)
    seed_pair = getattr(labeler, "seed_pair", None)
    added = 0
    with exclusive_writer(out_path, "another collector"):
        repair_truncated_tail(out_path)  # a last line that a kill cut short: that pair is collected again
        done = existing_pair_ids(out_path, labelled=labeler is not None)
        with tqdm(total=n_pairs, initial=len(done & set(range(n_pairs))), desc="comparisons", disable=not progress) as bar:
            for start in range(0, n_pairs, batch_size):
                ids = [k for k in range(start, min(start + batch_size, n_pairs)) if k not in done]
                if not ids:
                    continue
                batch_prompts = [prompts[k % len(prompts)] for k in range(start, start + batch_size)]
                batch_seed = seed * 7919 + 2 * start
                first = generate_texts(policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=batch_seed)
                second = generate_texts(second_policy or policy, tokenizer, batch_prompts, max_new_tokens, temperature,
                                        seed=batch_seed + 1)
                records = []
                for k in ids:
                    i = k - start
                    prompt, a, b = batch_prompts[i], first[i], second[i]
                    if not a or not b:  # an immediate EOS gives no text to compare; the pair is left out
                        continue
                    pair_type = None
                    if pairing is not None:
                        b, pair_type = pairing.second_response(seed, k, prompt, a, b)
                    kind = {} if pair_type is None else {"pair_type": pair_type}
                    if labeler is None:
                        records.append({"pair_id": k, "prompt": prompt, "response_a": a, "response_b": b, **kind})
                        continue
                    if seed_pair is not None:
                        seed_pair(k)
                    judgement = labeler(prompt, a, b)
                    records.append({"pair_id": k, **preference_record(prompt, a, b, judgement, labeler=labeler.name,
                                                                      time=time.time(), **kind)})
                append_jsonl(out_path, records)
                added += len(records)
                bar.update(len(records))
    return added
