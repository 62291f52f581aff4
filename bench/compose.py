"""Benchmark: sopreel's ffmpeg compose against the same composition written with moviepy.

Both get identical inputs (the clips, narration, music bed, cues and captions of a draft build
of a six-scene script) and produce the same video: clips fitted to their scenes, dip
transitions, burned-in subtitles and captions, music under the narration at the same loudness,
H.264 superfast CRF 23 + AAC 160k. moviepy has no sidechain compressor or loudness meter, so
it gets the ducking as a volume envelope over the narration and the gain sopreel measured; its
own work is the compositing and encoding, which is what is compared.

Target (issue 2): compose at least 4x faster than the moviepy baseline.
Usage: .venv/bin/python bench/compose.py [SCRIPT] [--lang en]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench_args import bench_arguments

from stages import languages
from stages.compose import SceneInput, lay_narration
from stages.fonts import font_file
from stages.media import loudness
from stages.plan import make_clip, make_image, make_music, make_narration, make_video, plan_build
from stages.profile import load_profile
from stages.registry import LoadedBackends
from stages.script import load_script
from stages.style import rgb
from stages.timeline import SentenceTiming, build_timeline


def prepare(script: Path, lang: str, out: Path):
    """Make every input asset once (images, clips, narration, music) with the draft profile."""
    plan = plan_build(load_script(script, only_languages=[lang]), load_profile("draft"), out)
    loaded = LoadedBackends()
    stills = [make_image(plan, scene, loaded) for scene in plan.scenes]
    voices = [make_narration(plan, scene, lang, loaded) for scene in plan.scenes]
    clips = [make_clip(plan, scene, still, [voice], loaded)
             for scene, still, voice in zip(plan.scenes, stills, voices, strict=True)]
    return plan, clips, voices, make_music(plan, {lang: voices}, loaded)


def moviepy_compose(plan, lang: str, clips, voices, bed, out: Path) -> None:
    from moviepy import (
        AudioFileClip,
        CompositeAudioClip,
        CompositeVideoClip,
        TextClip,
        VideoFileClip,
        afx,
        concatenate_videoclips,
        vfx,
    )

    options, style = plan.profile.compose, plan.style
    language = languages.get(lang)
    lines = plan.loaded.lines(lang)
    scenes = [SceneInput(c.path, c.info["seconds"], v.path, v.info["seconds"],
                         [SentenceTiming(**s) for s in v.info["sentences"]], t.caption)
              for c, v, t in zip(clips, voices, lines, strict=True)]
    timeline = build_timeline([(s.narration_seconds, s.sentences) for s in scenes], language,
                              lead_s=options.lead_s, pause_s=options.pause_s)
    colour = list(rgb(style.colors.background))
    half = options.transition_s / 2
    parts = []
    for index, (scene, slot) in enumerate(zip(scenes, timeline.slots, strict=True)):
        clip = VideoFileClip(str(scene.clip), audio=False)
        slowdown = min(options.max_slowdown, max(1.0, slot.length / scene.clip_seconds))
        clip = clip.with_effects([vfx.MultiplySpeed(1 / slowdown)])
        if clip.duration < slot.length:
            clip = clip.with_effects([vfx.Freeze(t="end", total_duration=slot.length)])
        clip = clip.subclipped(0, slot.length)
        effects = []
        if index > 0:
            effects.append(vfx.FadeIn(half, initial_color=colour))
        if index < len(scenes) - 1:
            effects.append(vfx.FadeOut(half, final_color=colour))
        parts.append(clip.with_effects(effects))
    video = concatenate_videoclips(parts)
    font, _ = font_file(language.font, bold=False)
    size = round(options.height * 0.052)
    overlays = []
    for cue in timeline.cues:
        overlays.append(TextClip(font=font, text=cue.text, font_size=size, color="white",
                                 stroke_color="black", stroke_width=2, method="label")
                        .with_start(cue.start).with_duration(cue.end - cue.start)
                        .with_position(("center", options.height - 3 * size)))
    for scene, slot in zip(scenes, timeline.slots, strict=True):
        if scene.caption:
            overlays.append(TextClip(font=font, text=scene.caption, font_size=size,
                                     color=style.colors.background, bg_color=style.colors.primary,
                                     method="label")
                            .with_start(slot.start + 0.5).with_duration(slot.length - 0.6)
                            .with_position((size, size)))
    video = CompositeVideoClip([video, *overlays])

    with tempfile.TemporaryDirectory() as work:
        narration = Path(work) / "narration.wav"
        lay_narration(scenes, timeline, narration)
        voice = AudioFileClip(str(narration))
        music = AudioFileClip(str(bed.path)).with_effects([
            afx.AudioLoop(duration=timeline.duration), afx.AudioFadeIn(3), afx.AudioFadeOut(3),
            afx.MultiplyVolume(10 ** (options.music_db / 20))])
        for cue in timeline.cues:   # ducking as a volume envelope under each cue
            music = music.with_effects([afx.MultiplyVolume(10 ** (-options.duck_db / 20),
                                                           start_time=cue.start,
                                                           end_time=cue.end)])
        mix = CompositeAudioClip([voice, music]).with_duration(timeline.duration)
        gain = options.loudness_lufs - loudness(narration)["integrated_lufs"]
        video = video.with_audio(mix.with_effects([afx.MultiplyVolume(10 ** (gain / 20))]))
        video.write_videofile(str(out), fps=options.fps, codec="libx264", preset=options.preset,
                              audio_codec="aac", audio_bitrate=f"{options.audio_bitrate_k}k",
                              audio_fps=48000, threads=2, pixel_format="yuv420p",
                              ffmpeg_params=["-crf", str(options.crf)], logger=None)


def main() -> None:
    args = bench_arguments(__doc__)
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-compose-"))
    try:
        plan, clips, voices, bed = prepare(Path(args.script), args.lang, work)
        started = time.perf_counter()
        result = make_video(plan, args.lang, clips, voices, bed)
        ours = time.perf_counter() - started
        started = time.perf_counter()
        moviepy_compose(plan, args.lang, clips, voices, bed, work / "moviepy.mp4")
        theirs = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    video = result.duration_s
    print(f"video {video:.1f} s at {plan.profile.compose.width}x{plan.profile.compose.height}")
    print(f"sopreel (ffmpeg graph): {ours:5.1f} s  ({video / ours:.1f}x real time)")
    print(f"moviepy baseline:       {theirs:5.1f} s  ({video / theirs:.1f}x real time)")
    print(f"speed-up: {theirs / ours:.1f}x (target >= 4x)")


if __name__ == "__main__":
    main()
