"""Stage `music`: one background bed per build, exactly as long as its longest video.

A prompt goes to the profile's music backend, which makes pieces: one loopable bed (synth), or
windows of up to 30 s, each continuing the sound of the one before (musicgen). A file named in
the script is the one piece, whatever the backend; `music: null` means no music. `make_bed`
puts the pieces together to the length (`stages.music.bed`) at a reference loudness, so a
profile's `music_db` means the same for every bed. Compose trims it for a shorter language,
fades it and ducks it under the narration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.errors import MediaError
from stages.media import (
    MUSIC,
    SAMPLE_RATE,
    duration,
    loudness,
    media_input,
    read_wav,
    run_ffmpeg,
    write_wav,
)
from stages.music.bed import Piece, assemble
from stages.registry import Backend, BackendOptions, Registry

BED_LUFS = -14.0        # every bed is levelled to this before compose applies `music_db`
BED_PEAK_DB = -1.0      # ... unless that would push its peaks over this


class MusicOptions(BackendOptions):
    seed: int | None = Field(None, ge=0, description="instead of the script's music seed")
    crossfade_s: float = Field(2.0, ge=0, le=10, description="at each join or loop seam")


class ContinuingOptions(MusicOptions):
    """A backend that can carry its music on from the end of a piece (MusicGen)."""

    extend: Literal["continue", "loop"] = Field("continue", description=(
        "to reach the video's length: continue (windows that carry the music on) or loop"))
    crossfade_s: float = Field(1.0, ge=0, le=10, description="at each join, inside the context")
    window_s: float = Field(30.0, ge=2, le=120, description="seconds per piece, context included")
    context_s: float = Field(10.0, ge=0.5, le=60, description=(
        "seconds of the previous window each continuation is prompted with"))

    @model_validator(mode="after")
    def _windows_fit(self) -> ContinuingOptions:
        if self.context_s > self.window_s - 1:
            raise ValueError(f"context_s ({self.context_s:g}) must leave at least 1 s of new "
                             f"music in each window (window_s {self.window_s:g})")
        if self.crossfade_s > self.context_s:
            raise ValueError(f"crossfade_s ({self.crossfade_s:g}) must fit inside context_s "
                             f"({self.context_s:g})")
        return self


class MusicRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt: str
    seed: int
    continue_from: Path | None = Field(None, description="a WAV whose sound the piece carries on")


class MusicBackend(Backend):
    Options = MusicOptions
    # How pieces become a bed: changing these reuses every piece already made (a window that
    # continues another is keyed by the tail it continues from, so by `context_s` too).
    assembly_options = ("extend", "context_s", "crossfade_s")

    def generate(self, request: MusicRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Write one piece, a 48 kHz stereo WAV, to `out`; return its `seconds`, `loop: true`
        when it repeats without a seam, and for a continuation `context_s`: how long its
        start re-plays the end of `request.continue_from`."""
        raise NotImplementedError


def prepare_file(source: Path, out: Path) -> dict[str, Any]:
    """A supplied music file, decoded once to 48 kHz stereo WAV."""
    run_ffmpeg(["-protocol_whitelist", "file", "-format_whitelist", ",".join(MUSIC.formats),
                "-i", media_input(source), "-vn", "-ac", "2", "-ar", str(SAMPLE_RATE),
                "-c:a", "pcm_s16le", "-f", "wav", str(out)], what=f"reading music {source.name}")
    return {"source": source.name, "seconds": round(duration(out), 3)}


def cut_tail(source: Path, seconds: float, out: Path) -> dict[str, Any]:
    """The last `seconds` of a piece: what the next window continues from."""
    samples, rate = read_wav(source, mono=False)
    tail = samples[max(0, len(samples) - round(seconds * rate)):]
    write_wav(out, tail, rate)
    return {"seconds": round(len(tail) / rate, 6)}


def make_bed(pieces: list[tuple[Path, dict[str, Any]]], seconds: float, crossfade_s: float,
             out: Path) -> dict[str, Any]:
    """The pieces (each a WAV and the facts its backend returned: one to loop or cut, or
    windows that continue each other) as one bed of `seconds`, levelled to BED_LUFS."""
    loaded = []
    for path, facts in pieces:
        samples, rate = read_wav(path, mono=False)
        if rate != SAMPLE_RATE or samples.shape[1] != 2:
            raise MediaError(f"{path.name}: a music piece must be {SAMPLE_RATE} Hz stereo")
        loaded.append(Piece(samples, context=round(float(facts.get("context_s", 0)) * rate),
                            seamless=bool(facts.get("loop"))))
    bed, facts = assemble(loaded, seconds, crossfade_s)
    write_wav(out, bed)
    measured = loudness(out)["integrated_lufs"]
    peak = float(np.abs(bed).max(initial=0.0))
    if math.isfinite(measured) and measured > -70 and peak > 0:
        gain_db = min(BED_LUFS - measured, BED_PEAK_DB - 20 * math.log10(peak))
        write_wav(out, bed * 10 ** (gain_db / 20))
        facts["gain_db"] = round(gain_db, 2)
    return {"seconds": round(len(bed) / SAMPLE_RATE, 3),
            "loudness_lufs": round(measured + facts.get("gain_db", 0.0), 1), **facts}


def resample_tensor(audio: Any, rate_from: int, rate_to: int) -> Any:
    """A (channels, samples) torch tensor at another rate (torchaudio's band-limited sinc)."""
    import torchaudio.functional

    return audio if rate_from == rate_to else torchaudio.functional.resample(audio, rate_from,
                                                                            rate_to)


def model_audio_to_bed(audio: Any, rate: int) -> np.ndarray:
    """A music model's (channels, samples) tensor at its rate as a piece: (samples, 2) at
    SAMPLE_RATE, a mono model's one channel on both sides."""
    audio = resample_tensor(audio.float().cpu(), rate, SAMPLE_RATE)
    if audio.shape[0] == 1:
        audio = audio.expand(2, -1)
    return audio[:2].T.numpy()


BACKENDS: Registry[MusicBackend] = Registry("music", MusicBackend)
BACKENDS.register("synth", "stages.music.synth:SynthBackend")
BACKENDS.register("musicgen", "stages.music.musicgen:MusicgenBackend")
BACKENDS.register("ace-step", "stages.music.acestep:AceStepBackend")
