"""Serve the labelling page: people judge pairs of responses in a browser (Stage 1 with people).

    python scripts/collect_preferences.py --no-labeler --out pairs.jsonl   # the pairs to judge
    python scripts/label_server.py --pairs pairs.jsonl --out prefs.jsonl
    # then open http://127.0.0.1:8000/?labeler=YOUR_NAME

Judgements go to prefs.jsonl (the Stage 1 preference format) and prefs.jsonl.sqlite; stop and restart at
will, each labeler resumes where they stopped. Binding another address than 127.0.0.1 needs --token.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlencode

import uvicorn

from rlhf_gym.labelling import LabelStore, StoreError, check_bind, create_app, load_pairs
from rlhf_gym.preferences import PreferenceDataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", required=True,
                        help="unlabelled pairs (JSONL from collect_preferences without a labeler)")
    parser.add_argument("--out", required=True, help="preference JSONL to write (its store: OUT.sqlite beside it)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000)")
    parser.add_argument("--token", default=os.environ.get("RLHF_LABEL_TOKEN"),
                        help="secret every request must carry; required with --host (default: $RLHF_LABEL_TOKEN)")
    parser.add_argument("--overlap", type=int, default=1, help="labelers per pair, for agreement (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the left/right order (default: 0)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"argument --port: must be in 1..65535, got {args.port}")
    if args.overlap < 1:
        parser.error(f"argument --overlap: must be >= 1, got {args.overlap}")
    if os.path.abspath(args.out) == os.path.abspath(args.pairs):
        parser.error("argument --out: must differ from --pairs")
    try:
        check_bind(args.host, args.token)
    except ValueError as error:
        parser.error(f"argument --host: {error}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        store = LabelStore(args.out, load_pairs(args.pairs), overlap=args.overlap, seed=args.seed)
    except (FileNotFoundError, PreferenceDataError, StoreError) as error:
        sys.exit(f"label_server.py: error: {error}")
    query = urlencode({"labeler": "YOUR_NAME", **({"token": args.token} if args.token else {})})
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Labelling {args.pairs} -> {args.out} (overlap {args.overlap}); open http://{host}:{args.port}/?{query}",
          flush=True)
    uvicorn.run(create_app(store, token=args.token), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
