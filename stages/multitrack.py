"""One MP4 with every language: a shared picture, an AAC track and a subtitle track per language.

For a screen on the shop floor or a player with a language menu: one file, every language.

1. one timeline for all languages: each scene as long as its longest narration, so every
   language's narration starts where its scene starts and the picture is the same for all;
2. the picture without language text (no subtitles, captions or title burned in), but with the
   AI notice card and the corner label, in every language of the file;
3. per language, the sound mastered on that timeline (`compose.master_sound`) and the subtitles
   as a `mov_text` track, each tagged with its ISO 639-2 language; the script's language is
   first and the default;
4. the segments joined without re-encoding, as for a one-language video, then sealed.

Segments and sounds are assets in the build's store, shared with nothing else (the picture
has no subtitles, so its segments differ from the one-language videos').
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.assets import TEMP_PREFIX, AssetStore, atomic_path
from stages.compose import (
    ComposeJob,
    Progress,
    encode_segments,
    link_segments,
    master_sound,
    metadata_arguments,
)
from stages.media import media_input, run_ffmpeg
from stages.subtitles import to_srt
from stages.text import wrap_lines
from stages.timeline import Timeline, build_timeline

MULTITRACK_NAME = "multitrack.mp4"


@dataclass(frozen=True)
class MultitrackResult:
    video: Path
    languages: list[str]          # track order: the default language first
    duration_s: float
    loudness: dict[str, dict[str, float]]   # per language, as measured on its AAC track
    cached: bool = False
    marks: dict[str, Any] = field(default_factory=dict)   # disclosure and provenance facts


def shared_timelines(jobs: dict[str, ComposeJob]) -> dict[str, Timeline]:
    """Every language's timeline with the same slots: each slot held for the longest
    narration any language has there."""
    slots = {lang: job.slots() for lang, job in jobs.items()}
    counts = {len(s) for s in slots.values()}
    if len(counts) != 1:
        raise ValueError("every language needs the same scenes (and AI notice card)")
    longest = [max(s[i].narration_seconds for s in slots.values()) for i in range(counts.pop())]
    timelines = {}
    for lang, job in jobs.items():
        options = job.options
        timelines[lang] = build_timeline(
            [(s.narration_seconds, s.sentences) for s in slots[lang]], job.text_language,
            lead_s=options.lead_s, pause_s=options.pause_s, fps=options.fps, hold=longest)
    return timelines


def picture_job(jobs: dict[str, ComposeJob], order: list[str]) -> ComposeJob:
    """The shared picture: the default language's scenes with no caption and no title, the
    AI notice and the label in every language of the file, one under another."""
    first = jobs[order[0]]
    notices = list(dict.fromkeys(   # each wrapped by its own language's rules
        "\n".join(wrap_lines(notice.text, jobs[lang].text_language)) for lang in order
        if (notice := jobs[lang].notice) is not None))
    labels = list(dict.fromkeys(jobs[lang].label for lang in order if jobs[lang].label))
    notice = (dataclasses.replace(first.notice, text="\n".join(notices))
              if first.notice is not None else None)
    return dataclasses.replace(
        first, title=None, scenes=[dataclasses.replace(s, caption=None) for s in first.scenes],
        notice=notice, label=" · ".join(labels) if labels else None)


def track_order(languages: list[str], default: str) -> list[str]:
    """The file's tracks: `default` first (the default track), then the others as built."""
    return [default, *[lang for lang in languages if lang != default]]


def compose_multitrack(jobs: dict[str, ComposeJob], picture: ComposeJob, out: Path,
                       store: AssetStore, on_progress: Callable[[float], None] | None = None,
                       seal: Callable[[Path], None] | None = None) -> MultitrackResult:
    """Write `out`: the shared `picture` (`picture_job`, with the file's tags), and an AAC and
    a mov_text track per language of `jobs`, in their order (the first the default)."""
    order = list(jobs)
    timelines = shared_timelines(jobs)
    shared = Timeline(slots=timelines[order[0]].slots, cues=[])
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}multitrack-", dir=out.parent)).absolute()
    try:
        share = Progress(on_progress, shared)
        segments = encode_segments(picture, shared, store, work, share)
        sounds = {lang: master_sound(jobs[lang], timelines[lang], store) for lang in order}
        for lang in order:
            (work / f"subtitles-{lang}.srt").write_text(to_srt(timelines[lang].cues),
                                                        encoding="utf-8")
        with atomic_path(out) as temp:
            _join(picture, shared, order, jobs, segments, sounds, work, temp)
            if seal:
                seal(temp)
        share.done()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return MultitrackResult(video=out, languages=order, duration_s=round(shared.duration, 3),
                            loudness={lang: sounds[lang].loudness for lang in order})


def _join(picture: ComposeJob, timeline: Timeline, order: list[str],
          jobs: dict[str, ComposeJob], segments: list[Any], sounds: dict[str, Any],
          work: Path, out: Path) -> None:
    """The picture's segments, then per language its sound and its subtitles, each tagged."""
    listing = link_segments(segments, work)
    inputs = ["-f", "concat", "-safe", "0", "-i", listing.name]
    for lang in order:
        inputs += ["-i", media_input(sounds[lang].path)]
    for lang in order:
        inputs += ["-i", f"subtitles-{lang}.srt"]
    maps = ["-map", "0:v"]
    maps += [item for n in range(len(order)) for item in ("-map", f"{n + 1}:a")]
    maps += [item for n in range(len(order)) for item in ("-map", f"{len(order) + n + 1}:s")]
    tracks = []
    for n, lang in enumerate(order):
        language = jobs[lang].language
        for kind in ("a", "s"):
            tracks += [f"-metadata:s:{kind}:{n}", f"language={language.iso639_2}",
                       f"-metadata:s:{kind}:{n}", f"title={language.name}",
                       f"-disposition:{kind}:{n}", "default" if n == 0 else "0"]
    run_ffmpeg([*inputs, *maps, "-c:v", "copy", "-c:a", "copy", "-c:s", "mov_text", *tracks,
                "-t", f"{timeline.duration:.3f}", *metadata_arguments(picture.metadata),
                "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", media_input(out)],
               what="joining the multi-language video", cwd=work)
