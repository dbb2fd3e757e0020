"""Stage 1: sample two responses per prompt from a policy and record a labeler's judgement as JSONL.

Pair ``k`` always uses prompt ``prompts[k % len(prompts)]`` and the sampling seed of its batch, so a
re-run with the same arguments continues where the last one stopped: the pair ids already in the file
are skipped, and every line already written stays as it is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from .generation import generate_texts
from .labelers import Labeler
from .preferences import append_jsonl


def existing_pair_ids(path: str | Path) -> set[int]:
    """Pair ids already recorded in ``path`` (empty if the file does not exist)."""
    if not Path(path).exists():
        return set()
    ids = set()
    with Path(path).open("rb") as handle:
        for line in handle:
            if line.endswith(b"\n") and line.strip():  # a line cut by a kill has no newline: redo that pair
                ids.add(int(json.loads(line)["pair_id"]))
    return ids


def collect_preferences(
    policy,
    tokenizer,
    prompts: list[str],
    labeler: Labeler | None,
    out_path: str | Path,
    n_pairs: int,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
) -> int:
    """Append up to ``n_pairs`` comparisons to ``out_path``; return how many were added this call.

    With ``labeler=None`` the pairs are written unlabelled (``response_a``/``response_b``), for a person
    to judge later in the labelling page.
    """
    done = existing_pair_ids(out_path)
    added = 0
    with tqdm(total=n_pairs, initial=len(done & set(range(n_pairs))), desc="comparisons", disable=not progress) as bar:
        for start in range(0, n_pairs, batch_size):
            ids = [k for k in range(start, min(start + batch_size, n_pairs)) if k not in done]
            if not ids:
                continue
            batch_prompts = [prompts[k % len(prompts)] for k in range(start, min(start + batch_size, n_pairs))]
            first = generate_texts(policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=seed * 7919 + 2 * start)
            second = generate_texts(policy, tokenizer, batch_prompts, max_new_tokens, temperature, seed=seed * 7919 + 2 * start + 1)
            records = []
            for k in ids:
                i = k - start
                prompt, a, b = batch_prompts[i], first[i], second[i]
                if not a or not b:  # an immediate EOS gives no text to compare; the pair is left out
                    continue
                record = {"pair_id": k, "prompt": prompt}
                if labeler is None:
                    record.update(response_a=a, response_b=b)
                else:
                    judgement = labeler(prompt, a, b)
                    chosen, rejected = (b, a) if judgement == "b" else (a, b)
                    record.update(chosen=chosen, rejected=rejected, labeler=labeler.name, time=time.time())
                    if judgement in ("tie", "skip"):
                        record["label"] = judgement
                records.append(record)
            append_jsonl(out_path, records)
            added += len(records)
            bar.update(len(records))
    return added
