"""The command line every benchmark shares: a script (default: the forklift template) and a
language."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def random_weights(make: Callable[[], Any], device: str, dtype: Any) -> Any:
    """A model with random weights made directly on the device in `dtype` (no float32 copy
    on the host), ready for inference."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = make()
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


def seconds_of(call: Callable[[], Any], device: str) -> float:
    """Wall time of `call()`, with the GPU's queued work finished before and after."""
    import time

    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - begin
