"""The draft narrate backend: espeak-ng, a stock voice in every supported language, no weights.

Text goes to espeak-ng on standard input (never as an argument it could read as an option) and
is spoken as plain text, not SSML, so markup in a script is read, not obeyed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from stages import languages
from stages.media import program, read_wav, run
from stages.narrate import (
    NarrateBackend,
    NarrateOptions,
    NarrationRequest,
    join_sentences,
    resample,
    trim_silence,
)
from stages.narrate.speech import speakable


class EspeakOptions(NarrateOptions):
    rate: int = Field(150, ge=80, le=400, description="words per minute")
    pitch: int = Field(45, ge=0, le=99)


class EspeakBackend(NarrateBackend):
    name = "espeak"
    version = 3   # 2: numbers, units and abbreviations read through speech.speakable; 3: soxr
    license = "GPL-3.0-or-later (espeak-ng program; output is unrestricted)"
    Options = EspeakOptions

    def load(self) -> None:
        program("espeak-ng")

    def narrate(self, request: NarrationRequest, out: Path,
                gate: Callable[[], None] | None = None) -> dict[str, Any]:
        options: EspeakOptions = self.options  # type: ignore[assignment]
        voice = languages.get(request.language).espeak
        spoken = []
        with tempfile.TemporaryDirectory(prefix="sopreel-espeak-") as folder:
            for index, sentence in enumerate(request.sentences):
                wav = Path(folder) / f"{index}.wav"
                text = speakable(sentence, request.language)
                run(["espeak-ng", "-v", voice, "-s", str(options.rate), "-p", str(options.pitch),
                     "-w", str(wav), "--stdin"], stdin=text.encode("utf-8"),
                    what=f"speaking {request.language} narration", timeout=120)
                samples, rate = read_wav(wav)
                spoken.append((sentence, resample(trim_silence(samples, rate), rate)))
        info = join_sentences(spoken, options.gap_s, out)
        return {**info, "voice": f"stock voice espeak-ng:{voice}", "cloned": False}

