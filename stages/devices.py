"""Which device a torch model runs on, and giving its memory back between stages."""

from __future__ import annotations

import gc


def pick_device(choice: str, mps: bool = False) -> str:
    """The profile's `device`; `auto` is CUDA when present (then Apple's MPS, where the backend
    supports it), else the CPU."""
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "mps" if mps and torch.backends.mps.is_available() else "cpu"


def free_memory() -> None:
    """After a stage's models are dropped: collect them and return cached GPU memory, so the
    next stage's model has the room."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
