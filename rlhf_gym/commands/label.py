"""Serve the labelling page: people judge pairs of responses in a browser (Stage 1 with people).

    rlhf-gym collect --no-labeler --out pairs.jsonl        # the pairs to judge
    rlhf-gym label --pairs pairs.jsonl --out prefs.jsonl
    # then open http://127.0.0.1:8000/?labeler=YOUR_NAME

Judgements go to prefs.jsonl (the Stage 1 preference format) and prefs.jsonl.sqlite; stop and restart at
will, each labeler resumes where they stopped. Binding another address than 127.0.0.1 needs --token.
Needs the ``label`` extra (FastAPI, uvicorn); imports neither Stable-Baselines3 nor the agents.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlencode

import uvicorn

from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.labelling import LabelStore, check_bind, create_app, load_pairs

TOKEN_VARIABLE = "RLHF_LABEL_TOKEN"


@dataclass
class Args:
    pairs: str = arg("pairs.jsonl", "unlabelled pairs (JSONL from rlhf-gym collect --no-labeler)")
    out: str = arg("preferences.jsonl", "preference JSONL to write (its store: OUT.sqlite beside it)")
    host: str = arg("127.0.0.1", "address to bind")
    port: int = arg(8000, "port to bind")
    token: str | None = arg(None, f"secret every request must carry, needed beyond 127.0.0.1 (unset: ${TOKEN_VARIABLE})")
    overlap: int = arg(1, "labelers per pair, for agreement")
    seed: int = arg(0, "seed of the left/right order")

    def __post_init__(self) -> None:
        if self.token is None:
            self.token = os.environ.get(TOKEN_VARIABLE)
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
        if self.overlap < 1:
            raise ConfigError(f"--overlap must be >= 1, got {self.overlap}")
        if os.path.abspath(self.out) == os.path.abspath(self.pairs):
            raise ConfigError("--out must differ from --pairs")
        check_bind(self.host, self.token)


def main(args: Args) -> None:
    store = LabelStore(args.out, load_pairs(args.pairs), overlap=args.overlap, seed=args.seed)
    query = urlencode({"labeler": "YOUR_NAME", **({"token": args.token} if args.token else {})})
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Labelling {args.pairs} -> {args.out} (overlap {args.overlap}); open http://{host}:{args.port}/?{query}",
          flush=True)
    uvicorn.run(create_app(store, token=args.token), host=args.host, port=args.port, log_level="warning")
