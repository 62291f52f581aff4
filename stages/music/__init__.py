"""Stage `music`: one background bed per build, looped and trimmed to each video by compose.

A prompt goes to the profile's music backend; a file named in the script is used as it is
(converted to 48 kHz stereo WAV), whatever the backend; `music: null` means no music.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stages.media import SAMPLE_RATE, duration, run_ffmpeg
from stages.registry import Backend, BackendOptions, Registry


class MusicOptions(BackendOptions):
    seed: int | None = Field(None, ge=0)


class MusicRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt: str
    seed: int


class MusicBackend(Backend):
    Options = MusicOptions

    def generate(self, request: MusicRequest, out: Path) -> dict[str, Any]:
        """Write a loopable 48 kHz stereo WAV bed to `out`; return at least `seconds`."""
        raise NotImplementedError


def prepare_file(source: Path, out: Path) -> dict[str, Any]:
    """A supplied music file, decoded once to 48 kHz stereo WAV."""
    run_ffmpeg(["-i", str(source), "-vn", "-ac", "2", "-ar", str(SAMPLE_RATE),
                "-c:a", "pcm_s16le", "-f", "wav", str(out)], what=f"reading music {source.name}")
    return {"source": source.name, "seconds": round(duration(out), 3)}


BACKENDS: Registry[MusicBackend] = Registry("music", MusicBackend)
BACKENDS.register("synth", "stages.music.synth:SynthBackend")
