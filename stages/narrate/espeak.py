"""The draft narrate backend: espeak-ng, a stock voice in every supported language, no weights.

Text goes to espeak-ng on standard input (never as an argument it could read as an option) and
is spoken as plain text, not SSML, so markup in a script is read, not obeyed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from stages import languages
from stages.media import SAMPLE_RATE, program, read_wav, run
from stages.narrate import (
    NarrateBackend,
    NarrateOptions,
    NarrationRequest,
    join_sentences,
    trim_silence,
)


class EspeakOptions(NarrateOptions):
    rate: int = Field(150, ge=80, le=400, description="words per minute")
    pitch: int = Field(45, ge=0, le=99)


class EspeakBackend(NarrateBackend):
    name = "espeak"
    version = 1
    license = "GPL-3.0-or-later (espeak-ng program; output is unrestricted)"
    Options = EspeakOptions

    def load(self) -> None:
        program("espeak-ng")

    def narrate(self, request: NarrationRequest, out: Path) -> dict[str, Any]:
        options: EspeakOptions = self.options  # type: ignore[assignment]
        voice = languages.get(request.language).espeak
        spoken = []
        with tempfile.TemporaryDirectory(prefix="sopreel-espeak-") as folder:
            for index, sentence in enumerate(request.sentences):
                wav = Path(folder) / f"{index}.wav"
                run(["espeak-ng", "-v", voice, "-s", str(options.rate), "-p", str(options.pitch),
                     "-w", str(wav), "--stdin"], stdin=sentence.encode("utf-8"),
                    what=f"speaking {request.language} narration", timeout=120)
                samples, rate = read_wav(wav)
                spoken.append((sentence, _resample(trim_silence(samples, rate), rate)))
        info = join_sentences(spoken, options.gap_s, out)
        return {**info, "voice": f"espeak-ng:{voice}"}


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited enough for speech: espeak's 22.05 kHz to 48 kHz by linear interpolation."""
    if rate == SAMPLE_RATE:
        return samples
    count = round(len(samples) * SAMPLE_RATE / rate)
    positions = np.arange(count) * (rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
