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


def print_table(header: list[str], rows: list[list[object]]) -> None:
    """Results as a Markdown table, ready for bench/RESULTS.md."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
