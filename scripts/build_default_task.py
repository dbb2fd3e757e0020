"""Rebuild the artifacts of the embedded default task ("reviews") from a seed.

    python scripts/build_default_task.py                 # into the package (what ships)
    python scripts/build_default_task.py --out /tmp/rv  # somewhere else
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from rlhf_gym.tasks.reviews.build import BuildConfig, build
from rlhf_gym.tasks.reviews.task import ARTIFACTS_DIR


def parse_args() -> tuple[str, BuildConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ARTIFACTS_DIR), help="output directory (default: the package's artifacts)")
    for field in dataclasses.fields(BuildConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"(default: {field.default})")
    args = parser.parse_args()
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BuildConfig)}
    return args.out, BuildConfig(**values)


def main() -> None:
    out, config = parse_args()
    metadata = build(out, config)
    print(json.dumps(metadata, indent=2))


if __name__ == "__main__":
    main()
