"""A labelling page for human comparisons (Stage 1 with people).

``rlhf-gym label --pairs pairs.jsonl --out prefs.jsonl`` serves it; see docs/labelling.md.
"""

from .agreement import agreement
from .app import check_bind, create_app
from .pairs import Pair, load_pairs
from .store import Assignment, Conflict, LabelError, LabelStore, StoreError, StoreWriteError, UnknownPair

__all__ = ["Assignment", "Conflict", "LabelError", "LabelStore", "Pair", "StoreError", "StoreWriteError", "UnknownPair",
           "agreement", "check_bind", "create_app", "load_pairs"]
