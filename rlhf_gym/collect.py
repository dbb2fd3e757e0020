"""Stage 1: sample two responses per prompt from a policy and record a labeler's judgement as JSONL.

Pair ``k`` always uses prompt ``prompts[k % len(prompts)]`` and the sampling seed of its batch, so a
re-run with the same arguments continues where the last one stopped: the pair ids already in the file
are skipped, and every line already written stays as it is.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from .generation import generate_texts
from .jsonl import JSONLError, append_jsonl, read_jsonl, repair_truncated_tail
from .labelers import Labeler
from .preferences import preference_record
from .tasks.base import DEFAULT_MAX_NEW_TOKENS


def _pair_id(record: dict, where: str) -> int:
    """The ``pair_id`` of a line this module wrote; :class:`~rlhf_gym.jsonl.JSONLError` naming ``where`` if it has none."""
    pair_id = record.get("pair_id")
    if isinstance(pair_id, bool) or not isinstance(pair_id, int):
        raise JSONLError(f"{where}: no integer 'pair_id' (not written by a collection); choose another output file")
    return pair_id


def existing_pair_ids(path: str | Path) -> set[int]:
    """Pair ids already recorded in ``path`` (empty if the file does not exist)."""
    if not Path(path).exists():
        return set()
    return set(read_jsonl(path, _pair_id, what="output file"))


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
) -> int:
    """Append up to ``n_pairs`` comparisons to ``out_path``; return how many were added this call.

    With ``labeler=None`` the pairs are written unlabelled (``response_a``/``response_b``), for a person
    to judge later in the labelling page.
    """
    repair_truncated_tail(out_path)  # a last line that a kill cut short: that pair is collected again
    done = existing_pair_ids(out_path)
    added = 0
    with tqdm(total=n_pairs, initial=len(done & set(range(n_pairs))), desc="comparisons", disable=not progress) as bar:
        for start in range(0, n_pairs, batch_size):
            ids = [k for k in range(start, min(start + batch_size, n_pairs)) if k not in done]
            if not ids:
                continue
            batch_prompts = [prompts[k % len(prompts)] for k in range(start, min(start + batch_size, n_pairs))]
            batch_seed = seed * 7919 + 2 * start
            first = generate_texts(policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=batch_seed)
            second = generate_texts(policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=batch_seed + 1)
            records = []
            for k in ids:
                i = k - start
                prompt, a, b = batch_prompts[i], first[i], second[i]
                if not a or not b:  # an immediate EOS gives no text to compare; the pair is left out
                    continue
                if labeler is None:
                    records.append({"pair_id": k, "prompt": prompt, "response_a": a, "response_b": b})
                else:
                    judgement = labeler(prompt, a, b)
                    records.append({"pair_id": k, **preference_record(prompt, a, b, judgement, labeler=labeler.name,
                                                                      time=time.time())})
            append_jsonl(out_path, records)
            added += len(records)
            bar.update(len(records))
    return added
