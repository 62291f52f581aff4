"""Benchmark: sopreel's ffmpeg compose against the same composition written with moviepy.

Both get the same `ComposeJob` (`stages.plan.compose_job`: the clips, narrations, spoken AI
notice, music bed, cues, captions, title and label of a draft build) and lay it on the same
timeline: the AI notice card first (the style's background, the notice in the middle, read
aloud), then every clip fitted to its scene (slowed, then held), dip transitions through the
style colour, burned-in subtitles, captions, the opening title and the corner label for the
whole video, music under the narration, H.264 at the profile's preset and CRF + AAC.

What differs, because moviepy has no equivalent: the music is ducked by a volume envelope under
each cue (sopreel: a sidechain compressor keyed on the speech), the loudness is one gain from
sopreel's own measurement with no true-peak limiter, text is drawn by moviepy's TextClip in the
language's font (sopreel: libass with a font per run of characters, fading overlays in and
out). Those are cheaper in moviepy than in sopreel, so the comparison favours moviepy.

Target (issue 2): compose at least 4x faster than the moviepy baseline.
Usage: .venv/bin/python bench/compose.py [SCRIPT] [--lang en] [--profile draft] [--quick]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench_args import bench_arguments, print_table

from stages.compose import TITLE_SECONDS, ComposeJob, lay_narration
from stages.fonts import font_file
from stages.media import loudness
from stages.plan import (
    compose_job,
    make_clip,
    make_image,
    make_music,
    make_narration,
    make_video,
    plan_build,
)
from stages.profile import load_profile
from stages.registry import LoadedBackends
from stages.script import load_script
from stages.style import rgb
from stages.text import wrap_lines
from stages.timeline import Timeline


def prepare(script: Path, lang: str, profile: str, out: Path):
    """Make every input asset once (images, clips, narrations, the spoken notice, music)."""
    plan = plan_build(load_script(script, only_languages=[lang]), load_profile(profile), out)
    loaded = LoadedBackends()
    stills = [make_image(plan, scene, loaded) for scene in plan.scenes]
    voices = [make_narration(plan, scene, lang, loaded) for scene in plan.scenes]
    notice = make_narration(plan, None, lang, loaded) if plan.speaks_notice else None
    clips = [make_clip(plan, scene, still, [voice], loaded)
             for scene, still, voice in zip(plan.scenes, stills, voices, strict=True)]
    bed = make_music(plan, {lang: voices}, loaded, notices={lang: notice})
    return plan, (stills, clips, voices, bed, notice)


def moviepy_compose(job: ComposeJob, out: Path) -> None:
    from moviepy import AudioFileClip, CompositeAudioClip, CompositeVideoClip, afx

    options = job.options
    slots = job.slots()
    timeline = job.timeline()
    video = CompositeVideoClip([_pictures(job, timeline), *_texts(job, timeline)])
    with tempfile.TemporaryDirectory() as work:
        narration = Path(work) / "narration.wav"
        lay_narration(slots, timeline, narration)
        voice = AudioFileClip(str(narration))
        effects = [afx.AudioLoop(duration=timeline.duration), afx.AudioFadeIn(3),
                   afx.AudioFadeOut(3), afx.MultiplyVolume(10 ** (options.music_db / 20))]
        for cue in timeline.cues:   # ducking as a volume envelope under each cue
            effects.append(afx.MultiplyVolume(10 ** (-options.duck_db / 20),
                                              start_time=cue.start, end_time=cue.end))
        parts = [voice]
        if job.music:
            parts.append(AudioFileClip(str(job.music)).with_effects(effects))
        mix = CompositeAudioClip(parts).with_duration(timeline.duration)
        gain = options.loudness_lufs - loudness(narration)["integrated_lufs"]
        video = video.with_audio(mix.with_effects([afx.MultiplyVolume(10 ** (gain / 20))]))
        video.write_videofile(str(out), fps=options.fps, codec="libx264", preset=options.preset,
                              audio_codec="aac", audio_bitrate=f"{options.audio_bitrate_k}k",
                              audio_fps=48000, threads=2, pixel_format="yuv420p",
                              ffmpeg_params=["-crf", str(options.crf)], logger=None)


def _pictures(job: ComposeJob, timeline: Timeline):
    """The notice card and the fitted clips, joined by dips through the style colour."""
    from moviepy import ColorClip, VideoFileClip, concatenate_videoclips, vfx

    options = job.options
    if options.transition == "crossfade":
        raise SystemExit("the moviepy baseline joins scenes by dip or cut; use a profile "
                         "with compose.transition: dip (the draft profile's)")
    colour = list(rgb(job.style.colors.background))
    size = (options.width, options.height)
    slots = job.slots()
    parts = []
    for index, (scene, slot) in enumerate(zip(slots, timeline.slots, strict=True)):
        if scene.clip is None:
            clip = ColorClip(size, color=colour, duration=slot.length)
        else:
            clip = VideoFileClip(str(scene.clip), audio=False).resized(size)
            slowdown = min(options.max_slowdown, max(1.0, slot.length / scene.clip_seconds))
            clip = clip.with_effects([vfx.MultiplySpeed(1 / slowdown)])
            if clip.duration < slot.length:
                clip = clip.with_effects([vfx.Freeze(t="end", total_duration=slot.length)])
            clip = clip.subclipped(0, slot.length)
        if options.transition == "dip":
            half = min(options.transition_s / 2, slot.length / 4)
            effects = ([vfx.FadeIn(half, initial_color=colour)] if index > 0 else []) + (
                [vfx.FadeOut(half, final_color=colour)] if index < len(slots) - 1 else [])
            clip = clip.with_effects(effects)
        parts.append(clip)
    return concatenate_videoclips(parts)


def _texts(job: ComposeJob, timeline: Timeline) -> list:
    """Subtitles, captions, the title, the notice and the label, where compose puts them."""
    from moviepy import TextClip

    options, colours, height = job.options, job.style.colors, job.options.height
    font, _ = font_file(job.language.font, bold=False)
    size = round(height * 0.052)

    def text(words: str, start: float, end: float, position, scale: float = 1.0,
             **look) -> TextClip:
        """Lines wrapped as compose wraps them, at compose's sizes (the label's at least 10)."""
        look = {"color": colours.text, "stroke_color": "black", "stroke_width": 1} | look
        return (TextClip(font=font, text="\n".join(wrap_lines(words, job.language)),
                         font_size=max(10 if scale < 1 else 1, round(size * scale)),
                         method="label", **look)
                .with_start(start).with_duration(end - start).with_position(position))

    slots = list(zip(job.slots(), timeline.slots, strict=True))
    texts = [text(" ".join(cue.lines), cue.start, cue.end, ("center", height - 3 * size))
             for cue in timeline.cues]
    texts += [text(scene.caption, slot.start + min(options.transition_s, 0.5), slot.end - 0.1,
                   (size, size), 0.9, color=colours.background, bg_color=colours.primary,
                   stroke_width=0)
              for scene, slot in slots if scene.caption]
    first = timeline.slots[1 if job.notice else 0]
    if job.title:
        texts.append(text(job.title, first.start + 0.2,
                          min(first.start + TITLE_SECONDS, first.end - 0.2),
                          ("center", round(height * 0.6)), 1.35, bg_color=colours.panel))
    if job.notice:
        texts.append(text(job.notice.text, 0.0, timeline.slots[0].end, ("center", "center"),
                          1.1))
    if job.label:
        texts.append(text(job.label, 0.0, timeline.duration, ("right", "top"), 0.55,
                          bg_color="black", stroke_width=0))
    return texts


def main() -> None:
    args = bench_arguments(__doc__)
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-compose-"))
    try:
        plan, assets = prepare(Path(args.script), args.lang, args.profile, work)
        started = time.perf_counter()
        result = make_video(plan, args.lang, *assets)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        moviepy_compose(compose_job(plan, args.lang, *assets), work / "moviepy.mp4")
        theirs = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    options, video = plan.profile.compose, result.duration_s
    print(f"video {video:.1f} s at {options.width}x{options.height}, {options.fps} fps, "
          f"preset {options.preset}, with the AI notice card and label")
    print_table(["compositor", "seconds", "x real time"], [
        ["sopreel (segments, none cached)", f"{ours:.1f}", f"{video / ours:.1f}"],
        ["moviepy baseline", f"{theirs:.1f}", f"{video / theirs:.1f}"],
        ["speed-up (target >= 4x)", f"{theirs / ours:.1f}x", ""]])


if __name__ == "__main__":
    main()
