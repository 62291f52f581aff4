"""Stage `animate`: each scene's still becomes a clip as long as the scene.

A backend makes one segment from a start image (`animate`); the plan chains segments until the
longest narration of the scene is covered, within `max_segments` (see `stages.animate.chain`).
One clip serves every language of a build: compose trims it for a shorter one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stages.animate.chain import Retime
from stages.registry import Backend, BackendOptions, Registry


class AnimateOptions(BackendOptions):
    """Keys every animate backend accepts (DESIGN.md: frames, fps, width, height, seed)."""

    frames: int = Field(192, ge=2, le=2000, description="frames in one segment")
    fps: int = Field(24, ge=4, le=60)
    width: int = Field(1280, ge=64, le=3840, multiple_of=2)
    height: int = Field(720, ge=64, le=2160, multiple_of=2)
    seed: int | None = Field(None, ge=0)
    max_segments: int = Field(1, ge=1, le=50, description=(
        "segments chained to cover a long scene; past them the last is slowed, then held"))
    retime: Retime = Field("interpolate", description=(
        "to the compose frame rate: interpolate (motion-compensated), blend, or repeat"))
    crf: int = Field(16, ge=0, le=40, description="intermediate clip quality (lower is better)")


class ClipRequest(BaseModel):
    """One segment: the image it starts from and how it should move."""

    model_config = ConfigDict(frozen=True)

    image: Path
    motion: str | None = None
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0


class AnimateBackend(Backend):
    Options = AnimateOptions
    # A longer chain or another frame-rate conversion reuses the segments already made.
    assembly_options = ("max_segments", "retime")

    def animate(self, request: ClipRequest, out: Path,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Write one H.264 MP4 segment starting from `request.image` to `out`; return `fps`,
        `frames`, `seconds`, `width` and `height` (compose letterboxes clips of another size).

        A slow backend reports how far it is through the segment (0..1) to `on_progress`."""
        raise NotImplementedError


BACKENDS: Registry[AnimateBackend] = Registry("animate", AnimateBackend)
BACKENDS.register("kenburns", "stages.animate.kenburns:KenBurnsBackend")
BACKENDS.register("wan-i2v", "stages.animate.diffusers:WanBackend")
BACKENDS.register("hunyuan-i2v", "stages.animate.diffusers:HunyuanBackend")
BACKENDS.register("runway", "stages.animate.services:RunwayBackend")
BACKENDS.register("openai-video", "stages.animate.services:OpenAIVideoBackend")
