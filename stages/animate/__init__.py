"""Stage `animate`: each scene's still becomes a short clip.

A clip's length is set by the profile (`frames` at `fps`), not by the narration, so one clip
serves every language; compose fits it to each language's scene length (trim, slow down a
little, then hold the last frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stages.registry import Backend, BackendOptions, Registry


class AnimateOptions(BackendOptions):
    """Keys every animate backend accepts (DESIGN.md: frames, fps, width, height, seed)."""

    frames: int = Field(192, ge=2, le=2000)
    fps: int = Field(24, ge=4, le=60)
    width: int = Field(1280, ge=64, le=3840, multiple_of=2)
    height: int = Field(720, ge=64, le=2160, multiple_of=2)
    seed: int | None = Field(None, ge=0)


class ClipRequest(BaseModel):
    """One scene's still and how it should move."""

    model_config = ConfigDict(frozen=True)

    image: Path
    motion: str | None = None
    prompt: str = ""
    seed: int = 0


class AnimateBackend(Backend):
    Options = AnimateOptions

    def animate(self, request: ClipRequest, out: Path) -> dict[str, Any]:
        """Write an H.264 MP4 clip to `out`; return `fps`, `frames`, `seconds`, `width` and
        `height` (compose letterboxes clips of another size)."""
        raise NotImplementedError


BACKENDS: Registry[AnimateBackend] = Registry("animate", AnimateBackend)
BACKENDS.register("kenburns", "stages.animate.kenburns:KenBurnsBackend")
