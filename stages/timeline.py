"""Scene timing and subtitle cues, from measured narration only.

A scene lasts `lead + narration + pause`, rounded up to whole frames at the video's frame rate
(the pause takes the rest), so every scene starts on a frame and its length depends on its own
narration only: compose encodes each scene as a segment of its own, and an edit elsewhere never
shifts what a segment holds. Cues come from the measured start and end of every
synthesised sentence; when a sentence is too long for one cue, its measured span is shared
among its cues in proportion to their length on screen.

A cue then stays up after its words are spoken when it needs the time to be read (at least
5/6 s, and long enough for the language's reading speed), up to 2 frames before the next cue
and never past its scene, as subtitlers do (Netflix's timed-text guides). Reading speed is
measured on the final times; a cue still too fast to read is reported, never hidden.
"""

from __future__ import annotations

import math
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


MIN_CUE_S = 5 / 6        # shortest time a subtitle stays on screen
CUE_GAP_S = 2 / 24       # frames left empty between two cues, so the change is seen
MAX_LINGER_S = 1.5       # how long a cue may stay after its words are spoken


def reading_speed(cue: Cue) -> float:
    """Characters per second on screen (spaces and punctuation count; marks do not)."""
    return sum(width(line) for line in cue.lines) / max(cue.end - cue.start, 1e-3)


@dataclass(frozen=True)
class SlowCue:
    """A cue shown for less time than its text needs at the language's reading speed."""

    index: int            # 1-based, as in the SRT file
    start: float
    end: float
    cps: float
    limit_cps: float
    text: str


def slow_cues(cues: list[Cue], language: Language) -> list[SlowCue]:
    limit = language.reading_cps
    return [SlowCue(index=i, start=c.start, end=c.end, cps=round(reading_speed(c), 1),
                    limit_cps=limit, text=" ".join(c.lines))
            for i, c in enumerate(cues, start=1) if reading_speed(c) > limit + 0.05]


@dataclass(frozen=True)
class Timeline:
    slots: list[Slot]
    cues: list[Cue]

    @property
    def duration(self) -> float:
        return self.slots[-1].end if self.slots else 0.0


def slot_frames(narration_s: float, *, lead_s: float, pause_s: float, fps: int) -> int:
    """How many frames a scene lasts: silence, its narration, silence, rounded up."""
    return math.ceil(round((lead_s + narration_s + pause_s) * fps, 6))


def slot_seconds(narration_s: float, *, lead_s: float, pause_s: float, fps: int) -> float:
    """How long a scene lasts, in whole frames (`slot_frames`)."""
    return slot_frames(narration_s, lead_s=lead_s, pause_s=pause_s, fps=fps) / fps


def build_timeline(narrations: list[tuple[float, list[SentenceTiming]]], language: Language, *,
                   lead_s: float, pause_s: float, fps: int,
                   hold: list[float] | None = None) -> Timeline:
    """Slots and cues for scenes whose narration lasts (seconds, sentence timings) each.

    `hold`: per scene, the narration time its slot makes room for when longer than its own
    (a video with every language shares the longest language's slots)."""
    slots, cues = [], []
    frame = 0
    for index, (length, sentences) in enumerate(narrations):
        room = max(length, hold[index]) if hold else length
        frames = slot_frames(room, lead_s=lead_s, pause_s=pause_s, fps=fps)
        start = frame / fps
        slot = Slot(start=start, length=frames / fps, narration_start=start + lead_s)
        slots.append(slot)
        spoken = [cue for sentence in sentences
                  for cue in _sentence_cues(sentence, slot.narration_start, language)]
        cues.extend(_readable(spoken, slot.end, language))
        frame += frames
    return Timeline(slots=slots, cues=cues)


def _readable(cues: list[Cue], scene_end: float, language: Language) -> list[Cue]:
    """Each cue held on screen as long as reading it needs, within the room it has."""
    held = []
    for index, cue in enumerate(cues):
        room = cues[index + 1].start - CUE_GAP_S if index + 1 < len(cues) else scene_end - 0.05
        needed = max(MIN_CUE_S, sum(width(line) for line in cue.lines) / language.reading_cps)
        end = min(max(cue.end, cue.start + needed), cue.end + MAX_LINGER_S, room)
        held.append(Cue(start=cue.start, end=round(max(end, cue.end), 3), lines=cue.lines))
    return held


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
