"""How a scene's clip comes to last as long as its narration.

An image-to-video model makes segments of a fixed length (Wan2.1: 81 frames at 16 fps, about
5 s). A longer scene is covered by chaining: the last frame of one segment is the image the
next one starts from, so the footage runs on without a cut, and the repeated frame is dropped
at the join. Past the profile's `max_segments`, the final segment is played slower (up to
compose's `max_slowdown`) and then its last frame is held; a shorter scene is trimmed. The
joined clip is converted once to the compose frame rate (`retime`).

`plan_coverage` is plain arithmetic; `join_segments` and `last_frame` run ffmpeg.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stages.errors import MediaError
from stages.media import run_ffmpeg

Retime = Literal["interpolate", "blend", "repeat"]
# interpolate: motion-compensated new frames (ffmpeg minterpolate), smooth, the slowest;
# blend: neighbouring frames cross-faded (framerate); repeat: nearest frame (fps), may judder.
RETIME_FILTERS: dict[str, str] = {"interpolate": "minterpolate=fps={fps}:mi_mode=mci",
                                  "blend": "framerate=fps={fps}",
                                  "repeat": "fps={fps}"}


def chained_frames(frames: int, segments: int, overlap: int = 1) -> int:
    """Frames in `segments` joined segments, each after the first dropping its first
    `overlap` frames (the previous segment's last frame, repeated)."""
    return frames + (segments - 1) * (frames - overlap)


@dataclass(frozen=True)
class Coverage:
    """How one scene's length is covered: segments chained, then slowed, held or trimmed."""

    target_s: float
    segments: int
    frames: int             # per segment, as the backend makes them
    fps: float              # of the segments
    overlap: int = 1        # frames a segment repeats from the one before (its start image)
    slowdown: float = 1.0   # the final segment played this many times slower
    hold_s: float = 0.0     # then its last frame held this long
    trim_s: float = 0.0     # footage cut from the end

    @property
    def footage_s(self) -> float:
        """What the joined segments last at their own speed."""
        return chained_frames(self.frames, self.segments, self.overlap) / self.fps

    @property
    def final_segment_start(self) -> int:
        """Index, in the joined frames, of the final segment's first frame."""
        if self.segments == 1:
            return 0
        return chained_frames(self.frames, self.segments - 1, self.overlap)

    @property
    def method(self) -> str:
        if self.trim_s > 0:
            way = "trimmed"
        else:
            way = "+".join(word for word, used in (("slowed", self.slowdown > 1),
                                                   ("held", self.hold_s > 0)) if used) or "exact"
        return way if self.segments == 1 else f"chained {self.segments} segments, {way}"

    def describe(self) -> dict[str, Any]:
        """The manifest's record of it."""
        return {"target_s": round(self.target_s, 3), "segments": self.segments,
                "segment_frames": self.frames, "segment_fps": self.fps,
                "footage_s": round(self.footage_s, 3), "slowdown": round(self.slowdown, 4),
                "hold_s": round(self.hold_s, 3), "trim_s": round(self.trim_s, 3),
                "method": self.method}


def plan_coverage(target_s: float, frames: int, fps: float, max_segments: int,
                  max_slowdown: float, overlap: int = 1) -> Coverage:
    """The fewest segments that cover `target_s`, within `max_segments`; what is still missing
    is the final segment slowed (at most `max_slowdown`), then held."""
    if target_s <= 0 or frames < 2 or fps <= 0 or max_segments < 1 or overlap not in (0, 1):
        raise ValueError("coverage needs a positive length, 2+ frames, fps and segments")
    needed, fresh = math.ceil(target_s * fps - 1e-6), frames - overlap
    segments = 1 if needed <= frames else 1 + math.ceil((needed - frames) / fresh)
    segments = min(segments, max_segments)
    plan = Coverage(target_s=target_s, segments=segments, frames=frames, fps=fps,
                    overlap=overlap)
    footage = plan.footage_s
    if footage >= target_s - 1e-9:
        return dataclasses.replace(plan, trim_s=footage - target_s)
    final_s = (frames if segments == 1 else fresh) / fps
    slowdown = min(max_slowdown, (final_s + target_s - footage) / final_s)
    hold = target_s - (footage + final_s * (slowdown - 1))
    return dataclasses.replace(plan, slowdown=slowdown, hold_s=hold if hold > 1e-6 else 0.0)


def needs_join(coverage: Coverage, out_fps: int) -> bool:
    """One segment at the compose frame rate goes to compose as it is: compose slows, holds
    and trims a clip the same way. Anything else is joined and converted here."""
    return coverage.segments > 1 or coverage.fps != out_fps


def join_segments(segments: list[Path], coverage: Coverage, out_fps: int, retime: Retime,
                  out: Path, crf: int = 16) -> dict[str, Any]:
    """One clip of exactly the target length at `out_fps`, from the chained segments."""
    if len(segments) != coverage.segments:
        raise ValueError(f"{len(segments)} segment files for {coverage.segments} segments")
    parts = []
    for index in range(len(segments)):
        # A later segment opens on the previous one's last frame: shown once, not twice.
        start = f"trim=start_frame={coverage.overlap}," if index and coverage.overlap else ""
        parts.append(f"[{index}:v]{start}setpts=PTS-STARTPTS[s{index}]")
    joined = "".join(f"[s{i}]" for i in range(len(segments)))
    first, factor, rate = coverage.final_segment_start, coverage.slowdown, coverage.fps
    # Frame n plays at n/fps, and the final segment's frames `factor` times further apart.
    timing = f"if(lt(N,{first}),N,{first}+(N-{first})*{factor:.6f})/({rate}*TB)"
    out_frames = math.ceil(coverage.target_s * out_fps - 1e-6)
    graph = ";".join([
        *parts,
        f"{joined}concat=n={len(segments)}:v=1:a=0,setpts='{timing}',"
        f"tpad=stop_mode=clone:stop_duration={coverage.hold_s + 1:.3f},"
        f"{RETIME_FILTERS[retime].format(fps=out_fps)},setsar=1,format=yuv420p[v]",
    ])
    inputs = [arg for path in segments for arg in ("-i", str(path))]
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(out_frames),
                "-r", str(out_fps), "-c:v", "libx264", "-preset", "fast", "-crf", str(crf),
                "-an", "-f", "mp4", str(out)],
               what="joining a scene's clip segments", duration_s=out_frames / out_fps)
    return {"fps": out_fps, "frames": out_frames, "seconds": out_frames / out_fps,
            "retime": retime if coverage.fps != out_fps else None}


def last_frame(clip: Path, frames: int, out: Path) -> dict[str, Any]:
    """The clip's final frame as a PNG: the image the next chained segment starts from."""
    run_ffmpeg(["-i", str(clip), "-vf", f"select=eq(n\\,{frames - 1})", "-fps_mode",
                "passthrough", "-frames:v", "1", "-f", "image2", "-c:v", "png", str(out)],
               what="taking a clip's last frame")
    if not out.is_file() or out.stat().st_size == 0:
        raise MediaError(f"{clip.name} has fewer than {frames} frames")
    return {"frame": frames - 1}
