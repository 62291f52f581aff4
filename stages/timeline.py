"""Scene timing and subtitle cues, from measured narration only.

A scene lasts `lead + narration + pause`. Cues come from the measured start and end of every
synthesised sentence; when a sentence is too long for one cue, its measured span is shared
among its cues in proportion to their length on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.languages import Language
from stages.text import cue_texts, width


@dataclass(frozen=True)
class SentenceTiming:
    """A synthesised sentence and its span, in seconds from the start of the scene's narration."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Slot:
    """Where one scene sits in the video."""

    start: float
    length: float
    narration_start: float

    @property
    def end(self) -> float:
        return self.start + self.length


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Timeline:
    slots: list[Slot]
    cues: list[Cue]

    @property
    def duration(self) -> float:
        return self.slots[-1].end if self.slots else 0.0


def build_timeline(narrations: list[tuple[float, list[SentenceTiming]]], language: Language, *,
                   lead_s: float, pause_s: float) -> Timeline:
    """Slots and cues for scenes whose narration lasts (seconds, sentence timings) each."""
    slots, cues = [], []
    start = 0.0
    for length, sentences in narrations:
        slot = Slot(start=start, length=lead_s + length + pause_s, narration_start=start + lead_s)
        slots.append(slot)
        for sentence in sentences:
            cues.extend(_sentence_cues(sentence, slot.narration_start, language))
        start = slot.end
    return Timeline(slots=slots, cues=cues)


def _sentence_cues(sentence: SentenceTiming, offset: float, language: Language) -> list[Cue]:
    texts = cue_texts(sentence.text, language)
    weights = [max(1, sum(width(line) for line in lines)) for lines in texts]
    span = sentence.end - sentence.start
    cues, at = [], offset + sentence.start
    for lines, weight in zip(texts, weights, strict=True):
        share = span * weight / sum(weights)
        cues.append(Cue(start=round(at, 3), end=round(at + share, 3), lines=tuple(lines)))
        at += share
    return cues
