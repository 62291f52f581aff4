"""The command line every benchmark shares: a script (default: the forklift template) and a
language."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_arguments(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("script", nargs="?",
                        default=str(ROOT / "templates/scripts/forklift-preshift.yaml"))
    parser.add_argument("--lang", default="en")
    return parser.parse_args()
