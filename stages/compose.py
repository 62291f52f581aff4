"""Stage `compose`: one language's finished video, subtitles and captions, in one encode.

1. time the scenes (after the AI notice card, when there is one) and cut subtitle cues from
   the measured narration;
2. lay the narration on a timeline and mix the music under it (cut to length, faded, ducked
   by sidechain compression keyed on the narration);
3. measure the mix's loudness (EBU R128) and bring it to the target with one linear gain,
   a limiter guarding the true peak;
4. build the video graph: every clip fitted to its scene (trim, slow down a little, then hold),
   cross-faded, with subtitles, captions and the title burned in by libass;
5. encode H.264 + AAC once, `+faststart`, with the disclosure tags; `seal` (signing) is the
   last touch before the video is moved into place with its SRT and VTT.

Script text never reaches a filter argument: it is written into an ASS file in a private
temporary folder whose name needs no escaping.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from stages.assets import TEMP_PREFIX, atomic_path, write_text_atomic
from stages.errors import MediaError
from stages.languages import Language
from stages.media import SAMPLE_RATE, loudness, media_input, read_wav, run_ffmpeg, write_wav
from stages.profile import ComposeOptions
from stages.style import Style, rgb
from stages.subtitles import Overlay, to_ass, to_srt, to_vtt
from stages.text import wrap_lines
from stages.timeline import (
    SentenceTiming,
    Timeline,
    build_timeline,
    reading_speed,
    slot_seconds,
    slow_cues,
)

NARRATION_RMS_DB = -20.0
TITLE_SECONDS = 3.5


@dataclass(frozen=True)
class SceneInput:
    clip: Path | None             # None: a plain card in the style's background colour
    clip_seconds: float
    narration: Path
    narration_seconds: float
    sentences: list[SentenceTiming]
    caption: str | None = None
    clip_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Notice:
    """The AI notice the video opens with: a card showing `text` for at least `min_seconds`,
    read aloud when there is a `narration`."""

    text: str
    narration: Path | None = None
    narration_seconds: float = 0.0
    min_seconds: float = 3.0


@dataclass(frozen=True)
class ComposeJob:
    language: Language
    title: str | None
    scenes: list[SceneInput]
    style: Style
    options: ComposeOptions
    music: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    notice: Notice | None = None
    label: str | None = None      # a corner label shown for the whole video

    def slots(self) -> list[SceneInput]:
        """What the timeline lays out: the notice card (no footage, no cues), then the scenes."""
        if self.notice is None:
            return self.scenes
        spoken = notice_seconds(self.notice.narration_seconds, self.notice.min_seconds,
                                self.options)
        card = SceneInput(clip=None, clip_seconds=spoken, narration=self.notice.narration,
                          narration_seconds=spoken, sentences=[])
        return [card, *self.scenes]


@dataclass(frozen=True)
class ComposeResult:
    video: Path
    srt: Path
    vtt: Path
    duration_s: float
    cues: int
    loudness: dict[str, float]
    reading: dict[str, Any] = field(default_factory=dict)   # see `reading_report`
    cached: bool = False          # reused from an earlier build with identical inputs
    marks: dict[str, Any] = field(default_factory=dict)     # disclosure and provenance facts


def notice_seconds(spoken_s: float, min_seconds: float, options: ComposeOptions) -> float:
    """The notice card's narration slot: as long as the spoken notice, and long enough that
    the card (lead-in, notice, pause) stays up for `min_seconds`."""
    return max(spoken_s, min_seconds - options.lead_s - options.pause_s)


def compose(job: ComposeJob, out_dir: Path,
            on_progress: Callable[[float], None] | None = None,
            seal: Callable[[Path], None] | None = None) -> ComposeResult:
    """Write `video.mp4`, `subtitles.srt` and `subtitles.vtt` for one language into `out_dir`.

    `seal(video)` runs on the finished file before it is moved into place: it signs it."""
    options = job.options
    timeline = build_timeline([(s.narration_seconds, s.sentences) for s in job.slots()],
                              job.language, lead_s=options.lead_s, pause_s=options.pause_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A private folder beside the outputs: swept like every temporary file if a kill leaves it.
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}compose-", dir=out_dir)).absolute()
    try:
        narration = work / "narration.wav"
        lay_narration(job.slots(), timeline, narration)
        mix = work / "mix.wav"
        mix_audio(narration, job.music, timeline.duration, options, mix)
        master = work / "master.wav"
        master_loudness(mix, options, master)
        subtitles = work / "subtitles.ass"
        subtitles.write_text(_ass(job, timeline), encoding="utf-8")
        video = out_dir / "video.mp4"
        with atomic_path(video) as temp:
            args = _encode_args(job, timeline, master, subtitles, temp)
            run_ffmpeg(args, what=f"composing the {job.language.code} video",
                       duration_s=timeline.duration, on_progress=on_progress, cwd=work)
            final = loudness(temp)
            if seal:
                seal(temp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    srt, vtt = out_dir / "subtitles.srt", out_dir / "subtitles.vtt"
    write_text_atomic(srt, to_srt(timeline.cues))
    write_text_atomic(vtt, to_vtt(timeline.cues))
    return ComposeResult(video=video, srt=srt, vtt=vtt, duration_s=round(timeline.duration, 3),
                         cues=len(timeline.cues), loudness=final,
                         reading=reading_report(timeline, job.language))


def reading_report(timeline: Timeline, language: Language) -> dict[str, Any]:
    """Reading speed of the subtitles: the limit, the fastest cue, every cue over the limit."""
    speeds = [reading_speed(cue) for cue in timeline.cues]
    return {"limit_cps": language.reading_cps,
            "max_cps": round(max(speeds, default=0.0), 1),
            "slow_cues": [dataclasses.asdict(c) for c in slow_cues(timeline.cues, language)]}


def lay_narration(scenes: list[SceneInput], timeline: Timeline, out: Path) -> None:
    """Every scene's narration at its slot, levelled to a common speech loudness."""
    track = np.zeros(round(timeline.duration * SAMPLE_RATE) + 1, dtype=np.float32)
    for scene, slot in zip(scenes, timeline.slots, strict=True):
        if scene.narration is None:   # a silent notice card
            continue
        samples, rate = read_wav(scene.narration)
        if rate != SAMPLE_RATE:
            raise MediaError(f"{scene.narration.name}: narration must be {SAMPLE_RATE} Hz")
        rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
        if rms > 0:
            samples = samples * (10 ** (NARRATION_RMS_DB / 20) / rms)
        start = round(slot.narration_start * SAMPLE_RATE)
        end = min(len(track), start + len(samples))
        track[start:end] += samples[: end - start]
    write_wav(out, np.clip(track, -1, 1))


def mix_audio(narration: Path, music: Path | None, seconds: float, options: ComposeOptions,
              out: Path) -> None:
    """Narration plus the music bed (`stages.music` makes it as long as the longest video of
    the build) cut to length, faded, and ducked under the speech."""
    voice = ffmpeg.input(str(narration)).audio.filter("aformat", channel_layouts="stereo")
    if music is None:
        mixed = voice
    else:
        split = voice.filter_multi_output("asplit", 2)
        key, speech = split.stream(0), split.stream(1)
        fade = min(3.0, seconds / 4)
        bed = (ffmpeg.input(str(music)).audio
               .filter("atrim", duration=seconds)
               .filter("afade", type="in", duration=fade)
               .filter("afade", type="out", start_time=max(0.0, seconds - fade), duration=fade)
               .filter("volume", f"{options.music_db}dB"))
        # Gain reduction is (speech level - threshold) x (1 - 1/ratio): place the threshold
        # so speech at its levelled loudness pulls the music down by about duck_db.
        threshold = 10 ** ((NARRATION_RMS_DB - options.duck_db / 0.95) / 20)
        ducked = ffmpeg.filter([bed, key], "sidechaincompress", threshold=round(threshold, 5),
                               ratio=20, attack=15, release=400)
        mixed = ffmpeg.filter([speech, ducked], "amix", inputs=2, duration="first",
                              normalize=0)
    stream = mixed.output(str(out), acodec="pcm_s16le", ar=SAMPLE_RATE, ac=2, t=seconds,
                          f="wav")
    run_ffmpeg(stream.get_args(), what="mixing narration and music")


def master_loudness(mix: Path, options: ComposeOptions, out: Path) -> None:
    """Bring the mix to the loudness target with one linear gain; a limiter guards the peak.

    Linear gain keeps the ducking and the speech dynamics as mixed; the limiter only touches
    the rare peaks the gain would push over the true-peak ceiling (with a margin for AAC).
    """
    measured = loudness(mix)
    gain = options.loudness_lufs - measured["integrated_lufs"]
    ceiling = 10 ** ((options.true_peak_db - 0.5) / 20)
    run_ffmpeg(["-i", str(mix), "-af", f"volume={gain:.2f}dB,alimiter=limit={ceiling:.4f}:"
                "attack=2:release=40:level=disabled", "-c:a", "pcm_s16le", "-ar",
                str(SAMPLE_RATE), "-f", "wav", str(out)], what="levelling the mix")


def _ass(job: ComposeJob, timeline: Timeline) -> str:
    options, language = job.options, job.language
    captions = [Overlay(slot.start + min(options.transition_s, 0.5), slot.end - 0.1,
                        tuple(wrap_lines(scene.caption, language)))
                for scene, slot in zip(job.slots(), timeline.slots, strict=True) if scene.caption]
    first = timeline.slots[1 if job.notice else 0]
    titles = [Overlay(first.start + 0.2, min(first.start + TITLE_SECONDS, first.end - 0.2),
                      tuple(wrap_lines(job.title, language)))] if job.title else []
    notices = [Overlay(0.0, timeline.slots[0].end, tuple(wrap_lines(job.notice.text, language)))
               ] if job.notice else []
    labels = [Overlay(0.0, timeline.duration, (job.label,))] if job.label else []
    return to_ass(timeline.cues, captions, titles, style=job.style, font=language.font,
                  width=options.width, height=options.height, notices=notices, labels=labels)


def transition_overlap(options: ComposeOptions, last: bool) -> float:
    """Seconds a scene's clip runs on under the next one's cross-fade."""
    return options.transition_s if options.transition == "crossfade" and not last else 0.0


def video_seconds(options: ComposeOptions, narration_s: list[float]) -> float:
    """How long a video lasts: its scenes' slots end to end, as `build_timeline` lays them."""
    return sum(slot_seconds(s, lead_s=options.lead_s, pause_s=options.pause_s)
               for s in narration_s)


def footage_seconds(options: ComposeOptions, narration_s: float, last: bool) -> float:
    """How long a scene's clip is on screen: its slot (lead-in, narration, pause) and the
    cross-fade into the next scene."""
    return (slot_seconds(narration_s, lead_s=options.lead_s, pause_s=options.pause_s)
            + transition_overlap(options, last))


def _fitted_clip(scene: SceneInput, seconds: float, options: ComposeOptions,
                 background: str) -> ffmpeg.nodes.FilterableStream:
    """A clip played at most `max_slowdown` times slower, then held, cut to `seconds`; with
    no clip, a card of the background colour."""
    w, h = options.width, options.height
    if scene.clip is None:
        red, green, blue = rgb(background)
        return (ffmpeg.input(f"color=c=0x{red:02x}{green:02x}{blue:02x}:s={w}x{h}:"
                             f"r={options.fps}:d={seconds:.3f}", f="lavfi").video
                .filter("setsar", 1).filter("settb", "AVTB").filter("format", "yuv420p"))
    slowdown = min(options.max_slowdown, max(1.0, seconds / scene.clip_seconds))
    clip = (ffmpeg.input(media_input(scene.clip)).video
            .filter("setpts", f"(PTS-STARTPTS)*{slowdown:.5f}")
            .filter("fps", options.fps))
    if scene.clip_size != (w, h):   # letterbox a clip of another size; never stretch it
        clip = (clip.filter("scale", w, h, force_original_aspect_ratio="decrease")
                .filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color=background)
                .filter("setsar", 1))
    return (clip.filter("tpad", stop_mode="clone", stop_duration=seconds + 1)
            .filter("trim", duration=seconds)
            .filter("setpts", "PTS-STARTPTS")
            .filter("settb", "AVTB")
            .filter("format", "yuv420p"))


def _scene_sequence(job: ComposeJob, timeline: Timeline) -> ffmpeg.nodes.FilterableStream:
    """The fitted clips joined by the profile's transition, scene i starting at slot i."""
    options, slots = job.options, job.slots()
    last = len(slots) - 1
    kind = options.transition if last > 0 and options.transition_s > 0 else "cut"
    fade = options.transition_s
    clips = []
    for index, (scene, slot) in enumerate(zip(slots, timeline.slots, strict=True)):
        overlap = transition_overlap(options, index == last)
        clip = _fitted_clip(scene, slot.length + overlap, options, job.style.colors.background)
        if kind == "dip":   # fade out to the style colour and back in: cheap, no overlap
            colour = job.style.colors.background
            half = min(fade / 2, slot.length / 4)
            if index > 0:
                clip = clip.filter("fade", type="in", start_time=0, duration=half, color=colour)
            if index < last:
                clip = clip.filter("fade", type="out", start_time=round(slot.length - half, 4),
                                   duration=half, color=colour)
        clips.append(clip)
    if kind != "crossfade":
        return ffmpeg.concat(*clips, v=1, a=0) if len(clips) > 1 else clips[0]
    video = clips[0]
    for clip, slot in zip(clips[1:], timeline.slots[1:], strict=True):
        video = ffmpeg.filter([video, clip], "xfade", transition="fade", duration=fade,
                              offset=round(slot.start, 4))
    return video


def _encode_args(job: ComposeJob, timeline: Timeline, master: Path, subtitles: Path,
                 out: Path) -> list[str]:
    options = job.options
    # ffmpeg runs in the work folder: the filter argument is a bare name, never a path that
    # would need escaping for the filter graph.
    video = _scene_sequence(job, timeline).filter("ass", subtitles.name)
    audio = (ffmpeg.input(media_input(master)).audio
             .filter("aformat", sample_rates=SAMPLE_RATE, channel_layouts="stereo"))
    # aac_coder=fast: four times faster than the default two-loop search, same loudness and
    # no audible difference at this bitrate; the encode runs on ffmpeg's main thread.
    stream = ffmpeg.output(
        video, audio, str(out), format="mp4", vcodec="libx264", preset=options.preset,
        crf=options.crf, pix_fmt="yuv420p", r=options.fps, acodec="aac", aac_coder="fast",
        audio_bitrate=f"{options.audio_bitrate_k}k", ar=SAMPLE_RATE, movflags="+faststart",
        t=round(timeline.duration, 3),
        **{"metadata:s:a:0": f"language={job.language.iso639_2}"})
    args = stream.get_args()
    # use_metadata_tags: keys beyond the iTunes set (ai_generated, AIGC...) are kept.
    args[args.index("+faststart")] = "+faststart+use_metadata_tags"
    tags = [item for key, value in job.metadata.items() for item in ("-metadata", f"{key}={value}")]
    # ffmpeg-python cannot repeat an option, so the tags go in by hand
    return [*args[:-1], *tags, media_input(Path(args[-1]))]
