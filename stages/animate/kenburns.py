"""The draft animate backend: gentle camera motion over the still, done by ffmpeg's zoompan.

The motion hint is read for a few plain words: "push in"/"zoom in", "pull out"/"zoom out",
"pan left", "pan right", "tilt up", "tilt down", "static". Anything else gets a slow push-in.
Moves ease in and out (smoothstep) so clips start and end at rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from stages.animate import AnimateBackend, AnimateOptions, ClipRequest
from stages.media import run_ffmpeg

MOVES = {
    "pull-out": ("pull out", "pull-out", "pullout", "zoom out", "zoom-out", "dolly out"),
    "push-in": ("push in", "push-in", "pushin", "zoom in", "zoom-in", "dolly in"),
    "pan-left": ("pan left", "pan-left", "pans left"),
    "pan-right": ("pan right", "pan-right", "pans right"),
    "tilt-up": ("tilt up", "tilt-up", "pan up"),
    "tilt-down": ("tilt down", "tilt-down", "pan down"),
    "static": ("static", "still", "hold", "no motion", "locked off"),
}


def choose_move(hint: str | None) -> str:
    """The camera move a free-text motion hint asks for (push-in when it names none)."""
    text = (hint or "").lower()
    for move, words in MOVES.items():
        if any(word in text for word in words):
            return move
    return "push-in"


def zoompan_expressions(move: str, frames: int, zoom: float) -> dict[str, str]:
    """zoompan's z, x, y for a move; `p` eases from 0 to 1 over the clip."""
    p = f"(on/{max(1, frames - 1)})"
    eased = f"({p}*{p}*(3-2*{p}))"
    centre_x, centre_y = "iw/2-(iw/zoom/2)", "ih/2-(ih/zoom/2)"
    span_x, span_y = "(iw-iw/zoom)", "(ih-ih/zoom)"
    z_fixed = f"{1 + zoom:.4f}"
    return {
        "push-in": {"z": f"1+{zoom}*{eased}", "x": centre_x, "y": centre_y},
        "pull-out": {"z": f"1+{zoom}*(1-{eased})", "x": centre_x, "y": centre_y},
        "pan-left": {"z": z_fixed, "x": f"{span_x}*(1-{eased})", "y": centre_y},
        "pan-right": {"z": z_fixed, "x": f"{span_x}*{eased}", "y": centre_y},
        "tilt-up": {"z": z_fixed, "x": centre_x, "y": f"{span_y}*(1-{eased})"},
        "tilt-down": {"z": z_fixed, "x": centre_x, "y": f"{span_y}*{eased}"},
        "static": {"z": "1", "x": "0", "y": "0"},
    }[move]


class KenBurnsOptions(AnimateOptions):
    zoom: float = Field(0.08, ge=0, le=0.5, description="how far a push-in or pull-out travels")


class KenBurnsBackend(AnimateBackend):
    name = "kenburns"
    version = 1
    license = "n/a (ffmpeg zoompan)"
    Options = KenBurnsOptions

    def animate(self, request: ClipRequest, out: Path,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        options: KenBurnsOptions = self.options  # type: ignore[assignment]
        move = choose_move(request.motion)
        exprs = zoompan_expressions(move, options.frames, options.zoom)
        graph = (f"zoompan=z='{exprs['z']}':x='{exprs['x']}':y='{exprs['y']}':"
                 f"d={options.frames}:s={options.width}x{options.height}:fps={options.fps},"
                 "format=yuv420p")
        run_ffmpeg(["-i", str(request.image), "-vf", graph, "-frames:v", str(options.frames),
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", str(options.crf),
                    "-an", "-f", "mp4", str(out)], what="animating a scene")
        return {"move": move, "fps": options.fps, "frames": options.frames,
                "seconds": options.frames / options.fps, "width": options.width,
                "height": options.height}
