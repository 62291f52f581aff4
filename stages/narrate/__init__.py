"""Stage `narrate`: one scene's narration in one language, synthesised sentence by sentence.

Backends return the measured span of every sentence; those spans, never estimates, drive
scene lengths and subtitle cues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soxr
from pydantic import ConfigDict, Field

from stages.media import SAMPLE_RATE, write_wav
from stages.registry import Backend, BackendOptions, KeepsCacheKeys, Registry


class NarrateOptions(BackendOptions):
    gap_s: float = Field(0.3, ge=0, le=3, description="silence between sentences")


class NarrationRequest(KeepsCacheKeys):
    model_config = ConfigDict(frozen=True)
    added_later = ("reference_text", "service_voice")

    sentences: tuple[str, ...] = Field(min_length=1)
    language: str
    voice: str = "stock"
    reference: Path | None = None   # the consented reference recording, when cloning
    reference_text: str | None = None   # what is said in it (signed into the ledger)
    service_voice: str | None = None    # the clone a service keeps, linked to the enrolment


@dataclass(frozen=True)
class VoicePlan:
    """How a narrator will speak one language: cloning the enrolled voice, or a stock voice."""

    clones: bool
    note: str


class NarrateBackend(Backend):
    Options = NarrateOptions
    # Clones from the reference recording and its transcript: a voice without one is refused
    # before any work.
    needs_reference_text: ClassVar[bool] = False
    # A hosted service that clones with a voice it keeps (ElevenLabs): the enrolment must link
    # that voice's id (`sopreel voices link`); no reference recording leaves this machine.
    links_voice: ClassVar[str | None] = None

    def narrate(self, request: NarrationRequest, out: Path,
                gate: Callable[[], None] | None = None) -> dict[str, Any]:
        """Write a mono 48 kHz WAV to `out`; return `seconds` and `sentences` with spans.

        A backend that sends requests to a service calls `gate` before each one: the consent
        check, so a revocation stops a cloned voice between two sentences."""
        raise NotImplementedError

    def voice_plan(self, language: str, clone: bool) -> VoicePlan:
        """How this backend will speak `language`, asked for a clone or not. Checked before any
        work and without loading weights; raises `SopreelError` when it cannot speak it."""
        return VoicePlan(False, f"stock voice of {self.name}"
                         + (": this narrator does not clone voices" if clone else ""))

    def same_speaker_score(self, reference: Path, consent: Path) -> float | None:
        """Speaker similarity of two recordings, for backends that clone; None otherwise."""
        return None

    def fits(self, text: str, language: str) -> bool:
        """Whether the model takes `text` in one piece (its text limit for `language`); a
        sentence that does not fit is spoken in parts (`text.speech_parts`). espeak-ng has no
        limit."""
        return True


CLAUSE_PAUSE_S = 0.12   # between the parts of a sentence too long for the model: a breath


def spoken_parts(parts: list[np.ndarray], rate: int) -> np.ndarray:
    """The parts of one sentence joined with a short pause, as a speaker pauses at a comma."""
    pause = np.zeros(round(CLAUSE_PAUSE_S * rate), dtype=np.float32)
    joined: list[np.ndarray] = []
    for index, part in enumerate(parts):
        joined += [pause, part] if index else [part]
    return np.concatenate(joined) if joined else np.zeros(0, dtype=np.float32)


def speak_sentences(request: NarrationRequest, rate: int, fits: Callable[[str], bool],
                    synthesise: Callable[[str, int], np.ndarray],
                    seed: int) -> list[tuple[str, np.ndarray]]:
    """Each sentence read aloud as a model speaks: normalised for speech (numbers, units),
    split into parts the model takes (`fits`), each part synthesised at `rate` with its own
    seed (part 0 keeps the sentence's), trimmed, joined with a breath, resampled to 48 kHz."""
    from stages.languages import get as language_of
    from stages.narrate.speech import speakable
    from stages.text import speech_parts

    language = language_of(request.language)
    spoken = []
    for index, sentence in enumerate(request.sentences):
        text = speakable(sentence, request.language)
        parts = [trim_silence(synthesise(piece, seed + index + 7919 * part), rate)
                 for part, piece in enumerate(speech_parts(text, language, fits))]
        spoken.append((sentence, resample(spoken_parts(parts, rate), rate)))
    return spoken


def join_sentences(sentences: list[tuple[str, np.ndarray]], gap_s: float, out: Path,
                   rate: int = SAMPLE_RATE) -> dict[str, Any]:
    """Concatenate per-sentence audio with gaps, write it, and return the measured spans."""
    gap = np.zeros(round(gap_s * rate), dtype=np.float32)
    pieces, spans, at = [], [], 0
    for index, (text, samples) in enumerate(sentences):
        if index:
            pieces.append(gap)
            at += len(gap)
        spans.append({"text": text, "start": round(at / rate, 4),
                      "end": round((at + len(samples)) / rate, 4)})
        pieces.append(samples.astype(np.float32))
        at += len(samples)
    write_wav(out, np.concatenate(pieces), rate)
    return {"seconds": round(at / rate, 4), "sentences": spans}


def trim_silence(samples: np.ndarray, rate: int, threshold_db: float = -45.0,
                 margin_s: float = 0.03) -> np.ndarray:
    """Cut leading and trailing silence (a synthesiser's padding), keeping a short margin."""
    loud = np.flatnonzero(np.abs(samples) > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return samples[: round(0.2 * rate)]
    margin = round(margin_s * rate)
    return samples[max(0, loud[0] - margin): loud[-1] + margin + 1]


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Speech to 48 kHz with soxr's band-limited resampler.

    Synthesisers speak at 16 to 24 kHz; upsampling by interpolation alone would leave images of
    the voice above the source's Nyquist frequency (a 10 kHz tone at 22.05 kHz reappears at
    12.05 kHz), which the anti-imaging filter here removes."""
    if rate == SAMPLE_RATE:
        return samples
    return soxr.resample(samples.astype(np.float32), rate, SAMPLE_RATE,
                         quality="VHQ").astype(np.float32)


BACKENDS: Registry[NarrateBackend] = Registry("narrate", NarrateBackend)
BACKENDS.register("espeak", "stages.narrate.espeak:EspeakBackend")
BACKENDS.register("coqui", "stages.narrate.coqui:CoquiBackend")
BACKENDS.register("omnivoice", "stages.narrate.omnivoice:OmniVoiceBackend")
BACKENDS.register("elevenlabs", "stages.narrate.elevenlabs:ElevenLabsBackend")
