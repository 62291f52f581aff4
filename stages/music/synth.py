"""The draft music backend: a calm, loopable pad-and-pluck bed synthesised with numpy.

The prompt steers it lightly: a tempo written as "80 bpm", and a minor key for words like
"tense", "dark", "serious" or "minor". The bed is a whole number of bars and its release tail
is wrapped onto its start, so compose can loop it without a seam.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from stages.media import SAMPLE_RATE, write_wav
from stages.music import MusicBackend, MusicOptions, MusicRequest

MAJOR = [[0, 4, 7], [7, 11, 14], [9, 12, 16], [5, 9, 12]]     # I  V  vi  IV
MINOR = [[0, 3, 7], [8, 12, 15], [3, 7, 10], [10, 14, 17]]    # i  VI III VII
MINOR_WORDS = ("minor", "tense", "dark", "serious", "urgent", "warning", "sad")


def read_prompt(prompt: str) -> tuple[float, bool]:
    """(tempo in bpm, minor key?) from a free-text prompt."""
    found = re.search(r"(\d{2,3})\s*bpm", prompt.lower())
    bpm = float(np.clip(float(found.group(1)), 50, 160)) if found else 80.0
    return bpm, any(word in prompt.lower() for word in MINOR_WORDS)


def _tone(freq: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = rng.uniform(0, 2 * np.pi)
    wave = (np.sin(2 * np.pi * freq * t + phase) + 0.3 * np.sin(4 * np.pi * freq * t)
            + 0.12 * np.sin(6 * np.pi * freq * t))
    return wave.astype(np.float32)


def _envelope(count: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(count, dtype=np.float32)
    env[:attack] = np.linspace(0, 1, attack, dtype=np.float32)
    env[count - release:] *= np.linspace(1, 0, release, dtype=np.float32)
    return env


class SynthOptions(MusicOptions):
    bars: int = Field(16, ge=4, le=64, description="bed length before it loops")
    root_hz: float = Field(196.0, ge=60, le=500, description="key centre (196 Hz is G3)")


class SynthBackend(MusicBackend):
    name = "synth"
    version = 1
    license = "n/a (synthesised by sopreel)"
    Options = SynthOptions

    def generate(self, request: MusicRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        options: SynthOptions = self.options  # type: ignore[assignment]
        bpm, minor = read_prompt(request.prompt)
        rng = np.random.default_rng(request.seed)
        beat = 60.0 / bpm
        bar = 4 * beat
        length = round(options.bars * bar * SAMPLE_RATE)
        tail = round(2 * beat * SAMPLE_RATE)
        bed = np.zeros((length + tail, 2), dtype=np.float32)
        chords = MINOR if minor else MAJOR
        for index in range(options.bars // 2):
            chord = chords[index % len(chords)]
            start = round(index * 2 * bar * SAMPLE_RATE)
            self._pad(bed, start, 2 * bar, chord, options.root_hz, rng)
            self._plucks(bed, start, beat, chord, options.root_hz * 2, rng)
        bed[:tail] += bed[length:]               # wrap the tail: a seamless loop
        bed = bed[:length]
        bed *= 0.5 / max(1e-6, float(np.abs(bed).max()))
        write_wav(out, bed)
        return {"seconds": round(length / SAMPLE_RATE, 3), "bpm": bpm,
                "key": "minor" if minor else "major", "loop": True}

    @staticmethod
    def _pad(bed: np.ndarray, start: int, seconds: float, chord: list[int], root: float,
             rng: np.random.Generator) -> None:
        count = round((seconds + 0.5) * SAMPLE_RATE)
        env = _envelope(count, round(0.8 * SAMPLE_RATE), round(1.2 * SAMPLE_RATE))
        for semitone in chord:
            freq = root * 2 ** (semitone / 12)
            for channel, detune in ((0, 0.998), (1, 1.002)):
                tone = _tone(freq * detune, count / SAMPLE_RATE, rng) * env * 0.18
                bed[start:start + count, channel] += tone[: len(bed) - start]

    @staticmethod
    def _plucks(bed: np.ndarray, start: int, beat: float, chord: list[int], root: float,
                rng: np.random.Generator) -> None:
        count = round(1.5 * beat * SAMPLE_RATE)
        decay = np.exp(-np.arange(count) / (0.35 * SAMPLE_RATE)).astype(np.float32)
        decay[: round(0.005 * SAMPLE_RATE)] *= np.linspace(0, 1, round(0.005 * SAMPLE_RATE))
        for step in range(8):
            if rng.random() < 0.3:
                continue
            freq = root * 2 ** (chord[step % len(chord)] / 12)
            at = start + round(step * beat * SAMPLE_RATE)
            note = _tone(freq, count / SAMPLE_RATE, rng) * decay * 0.07
            pan = rng.uniform(0.3, 0.7)
            end = min(len(bed), at + count)
            bed[at:end, 0] += note[: end - at] * (1 - pan)
            bed[at:end, 1] += note[: end - at] * pan
