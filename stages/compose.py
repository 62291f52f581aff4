"""Stage `compose`: one language's finished video, subtitles and captions.

1. time the scenes (after the AI notice card, when there is one), each a whole number of
   frames, and cut subtitle cues from the measured narration;
2. the picture, scene by scene: each slot (the notice card, then every scene) is encoded as a
   segment of its own, keyed by exactly what it shows (its clip fitted to its slot, the
   transition into it, the subtitles, captions, title and label that fall in it, the style,
   size, frame rate and encoder settings), so an edit re-encodes only the segments it
   touches. A cross-fade is drawn into the head of the following segment from the previous
   clip's run-on; a dip fades each segment's own ends. Missing segments encode in parallel;
3. the sound, for the whole video: the narration laid on the timeline, the music under it (cut
   to length, faded, ducked by sidechain compression keyed on the narration), brought to the
   loudness target with one linear gain and a limiter guarding the true peak (EBU R128);
4. the segments joined without re-encoding (identical x264 settings, each opening on a
   keyframe), the sound encoded to AAC, `+faststart`, the disclosure tags; `seal` (signing)
   is the last touch before the video is moved into place with its SRT and VTT.

Segments and the mastered sound are assets in the build's store, so they are reused across
builds like any other. Script text never reaches a filter argument: it is written into ASS
files in a private folder whose names need no escaping.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from stages.assets import TEMP_PREFIX, Asset, AssetStore, atomic_path, write_text_atomic
from stages.errors import MediaError
from stages.languages import Language
from stages.media import (
    SAMPLE_RATE,
    fit_mode,
    loudness,
    media_input,
    read_wav,
    run_ffmpeg,
    write_wav,
)
from stages.profile import ComposeOptions
from stages.style import Style, rgb
from stages.subtitles import (
    AssEvent,
    Overlay,
    ass_events,
    ass_header,
    ass_script,
    framed_language,
    to_srt,
    to_vtt,
)
from stages.text import wrap_lines
from stages.timeline import (
    SentenceTiming,
    Timeline,
    build_timeline,
    reading_speed,
    slot_frames,
    slot_seconds,
    slow_cues,
)

NARRATION_RMS_DB = -20.0
TITLE_SECONDS = 3.5
SEGMENT_VERSION = 1   # bump when a segment comes out differently from the same inputs
SOUND_VERSION = 1
SEGMENT_WORKERS = max(1, min(4, os.cpu_count() or 1))   # encodes at once (2 cores: 6.4 s, not 7.5)


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

    @property
    def text_language(self) -> Language:
        """The language with subtitle lines as long as this frame holds (`framed_language`)."""
        return framed_language(self.language, self.options.width, self.options.height)

    def timeline(self) -> Timeline:
        """Where every slot and cue sits: each slot a whole number of frames."""
        options = self.options
        return build_timeline([(s.narration_seconds, s.sentences) for s in self.slots()],
                              self.text_language, lead_s=options.lead_s,
                              pause_s=options.pause_s, fps=options.fps)

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
    segments: dict[str, Any] = field(default_factory=dict)  # how many were made and reused


def notice_seconds(spoken_s: float, min_seconds: float, options: ComposeOptions) -> float:
    """The notice card's narration slot: as long as the spoken notice, and long enough that
    the card (lead-in, notice, pause) stays up for `min_seconds`."""
    return max(spoken_s, min_seconds - options.lead_s - options.pause_s)


def compose(job: ComposeJob, out_dir: Path, store: AssetStore,
            on_progress: Callable[[float], None] | None = None,
            seal: Callable[[Path], None] | None = None) -> ComposeResult:
    """Write `video.mp4`, `subtitles.srt` and `subtitles.vtt` for one language into `out_dir`;
    segments and the mastered sound go to (or come from) `store`.

    `seal(video)` runs on the finished file before it is moved into place: it signs it."""
    timeline = job.timeline()
    out_dir.mkdir(parents=True, exist_ok=True)
    # A private folder beside the outputs: swept like every temporary file if a kill leaves it.
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}compose-", dir=out_dir)).absolute()
    try:
        share = Progress(on_progress, timeline)
        with ThreadPoolExecutor(max_workers=1) as audio:   # the sound beside the segments
            mastering = audio.submit(master_sound, job, timeline, store)
            segments = encode_segments(job, timeline, store, work, share)
            sound = mastering.result()
        video = out_dir / "video.mp4"
        with atomic_path(video) as temp:
            join_segments(job, timeline, segments, sound.path, work, temp)
            if seal:
                seal(temp)
        share.done()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    srt, vtt = out_dir / "subtitles.srt", out_dir / "subtitles.vtt"
    write_text_atomic(srt, to_srt(timeline.cues))
    write_text_atomic(vtt, to_vtt(timeline.cues))
    made = sum(not segment.cached for segment in segments)
    return ComposeResult(video=video, srt=srt, vtt=vtt, duration_s=round(timeline.duration, 3),
                         cues=len(timeline.cues), loudness=sound.loudness,
                         reading=reading_report(timeline, job.language),
                         segments={"made": made, "reused": len(segments) - made,
                                   "sound": "reused" if sound.cached else "made"})


class Progress:
    """Fraction done, by frames encoded: the segments are nearly all of compose's work."""

    def __init__(self, report: Callable[[float], None] | None, timeline: Timeline):
        self.report, self.total = report, max(timeline.duration, 1e-6)
        self.finished, self.lock = 0.0, threading.Lock()

    def segment_done(self, seconds: float) -> None:
        with self.lock:
            self.finished += seconds
            if self.report:
                self.report(min(0.95, 0.95 * self.finished / self.total))

    def done(self) -> None:
        if self.report:
            self.report(1.0)


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
    """Bring the mix to the loudness target with one linear gain, a limiter guarding the
    peak, and encode it as the video's AAC track, in one pass.

    Linear gain keeps the ducking and the speech dynamics as mixed; the limiter only touches
    the rare peaks the gain would push over the true-peak ceiling (with a margin for AAC).
    aac_coder=fast: four times faster than the default two-loop search, same loudness and no
    audible difference at this bitrate.
    """
    measured = loudness(mix)
    gain = options.loudness_lufs - measured["integrated_lufs"]
    ceiling = 10 ** ((options.true_peak_db - 0.5) / 20)
    run_ffmpeg(["-i", media_input(mix), "-af", f"volume={gain:.2f}dB,alimiter="
                f"limit={ceiling:.4f}:attack=2:release=40:level=disabled", "-c:a", "aac",
                "-aac_coder", "fast", "-b:a", f"{options.audio_bitrate_k}k", "-ar",
                str(SAMPLE_RATE), "-ac", "2", "-f", "mp4", media_input(out)],
               what="levelling and encoding the sound")


@dataclass(frozen=True)
class Sound:
    path: Path                    # AAC, as the video carries it
    loudness: dict[str, float]    # measured on that AAC
    cached: bool


def master_sound(job: ComposeJob, timeline: Timeline, store: AssetStore) -> Sound:
    """The whole video's sound, mixed and mastered to AAC (`lay_narration`, `mix_audio`,
    `master_loudness`) and measured: an asset keyed by the narrations, where they sit, the music
    and the sound settings, so an edit that leaves them alone (a caption) renders none of it."""
    options = job.options
    slots = job.slots()
    recipe = {"narrations": [(s.narration, slot.narration_start) for s, slot
                             in zip(slots, timeline.slots, strict=True)],
              "music": job.music, "seconds": timeline.duration,
              "options": options.model_dump(include={"music_db", "duck_db", "loudness_lufs",
                                                     "true_peak_db", "audio_bitrate_k"}),
              "version": SOUND_VERSION}

    def make(out: Path) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}sound-", dir=out.parent) as tmp:
            narration, mix = Path(tmp) / "narration.wav", Path(tmp) / "mix.wav"
            lay_narration(slots, timeline, narration)
            mix_audio(narration, job.music, timeline.duration, options, mix)
            master_loudness(mix, options, out)
        # Which narrations the mix holds: an erased voice's mixes are found and deleted.
        return {"seconds": timeline.duration, "loudness": loudness(out),
                "narrations": [Path(s.narration).name for s in slots if s.narration]}

    asset = store.produce("sound", recipe, ".m4a", make)
    return Sound(asset.path, asset.info["loudness"], asset.cached)


def _events(job: ComposeJob, timeline: Timeline) -> list[AssEvent]:
    """Every subtitle and overlay of the video, on the video's clock."""
    options, language = job.options, job.text_language
    captions = [Overlay(slot.start + min(options.transition_s, 0.5), slot.end - 0.1,
                        tuple(wrap_lines(scene.caption, language)))
                for scene, slot in zip(job.slots(), timeline.slots, strict=True) if scene.caption]
    first = timeline.slots[1 if job.notice else 0]
    titles = [Overlay(first.start + 0.2, min(first.start + TITLE_SECONDS, first.end - 0.2),
                      tuple(wrap_lines(job.title, language)))] if job.title else []
    notices = [Overlay(0.0, timeline.slots[0].end,   # a line break starts a new line
                       tuple(line for part in job.notice.text.split("\n")
                             for line in wrap_lines(part, language)))] if job.notice else []
    labels = [Overlay(0.0, timeline.duration, (job.label,))] if job.label else []
    return ass_events(timeline.cues, captions, titles, font=language.font, notices=notices,
                      labels=labels)


def transition_overlap(options: ComposeOptions, last: bool) -> float:
    """Seconds a scene's clip runs on under the next one's cross-fade."""
    return options.transition_s if options.transition == "crossfade" and not last else 0.0


def video_seconds(options: ComposeOptions, narration_s: list[float]) -> float:
    """How long a video lasts: its scenes' slots end to end, as `build_timeline` lays them."""
    return sum(slot_frames(s, lead_s=options.lead_s, pause_s=options.pause_s, fps=options.fps)
               for s in narration_s) / options.fps


def footage_seconds(options: ComposeOptions, narration_s: float, last: bool) -> float:
    """How long a scene's clip is on screen: its slot (lead-in, narration, pause) and the
    cross-fade into the next scene."""
    return (slot_seconds(narration_s, lead_s=options.lead_s, pause_s=options.pause_s,
                         fps=options.fps) + transition_overlap(options, last))


def needs_fitting(scene: SceneInput, frame: tuple[int, int]) -> bool:
    """The scene's clip is not the frame's size: compose's `fit` says how it fills the frame."""
    return scene.clip is not None and scene.clip_size != frame


def _fitted_clip(scene: SceneInput, seconds: float, options: ComposeOptions,
                 background: str) -> ffmpeg.nodes.FilterableStream:
    """A clip played at most `max_slowdown` times slower, then held, cut to `seconds`, filling
    the frame (`_filled`); with no clip, a card of the background colour."""
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
    if needs_fitting(scene, (w, h)):
        clip = _filled(clip, fit_mode(options.filling, scene.clip_size or (w, h), (w, h)),
                       w, h, background)
    return (clip.filter("tpad", stop_mode="clone", stop_duration=seconds + 1)
            .filter("trim", duration=seconds)
            .filter("setpts", "PTS-STARTPTS")
            .filter("settb", "AVTB")
            .filter("format", "yuv420p"))


def _filled(clip: ffmpeg.nodes.FilterableStream, how: str, w: int, h: int,
            background: str) -> ffmpeg.nodes.FilterableStream:
    """A clip of another size filling the frame as `stages.media.fit_mode` says; never
    stretched."""
    if how == "crop":   # cover the frame, the centre kept
        return (clip.filter("scale", w, h, force_original_aspect_ratio="increase")
                .filter("crop", w, h).filter("setsar", 1))
    if how == "pad":
        return (clip.filter("scale", w, h, force_original_aspect_ratio="decrease")
                .filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color=background)
                .filter("setsar", 1))
    copies = clip.split()   # blur: the clip itself, enlarged, blurred and dimmed, behind it
    behind = (copies[0].filter("scale", w, h, force_original_aspect_ratio="increase")
              .filter("crop", w, h).filter("boxblur", f"{max(2, max(w, h) // 60)}:2")
              .filter("eq", brightness=-0.12))
    whole = copies[1].filter("scale", w, h, force_original_aspect_ratio="decrease")
    return ffmpeg.overlay(behind, whole, x="(W-w)/2", y="(H-h)/2").filter("setsar", 1)


@dataclass(frozen=True)
class SegmentInput:
    """Everything one slot's segment shows: its key is this, as data. The slot's own footage
    and, for a cross-fade into it, the previous slot's footage and length (its run-on is
    drawn into this segment's head)."""

    index: int
    scene: SceneInput
    seconds: float                       # the slot: a whole number of frames
    run_on: float                        # the footage's length past the slot (cross-fade)
    previous: tuple[SceneInput, float, float] | None   # scene, slot seconds, run-on
    transition: str                      # "crossfade", "dip" or "cut"
    fade_s: float
    last: bool
    ass: str                             # this segment's subtitles and overlays, own clock
    background: str
    options: dict[str, Any]              # size, frame rate, encoder settings
    fit: str = "auto"                    # how footage of another size fills the frame

    def describe(self) -> dict[str, Any]:
        """The recipe: files by content, and a scene's narration, which the picture does not
        show, left out (its timing is in `seconds` and `ass`)."""
        def footage(scene: SceneInput) -> dict[str, Any]:
            fitted = needs_fitting(scene, (self.options["width"], self.options["height"]))
            return {"clip": scene.clip, "clip_seconds": scene.clip_seconds,
                    "clip_size": scene.clip_size, **({"fit": self.fit} if fitted else {})}

        return {"footage": footage(self.scene), "seconds": self.seconds, "run_on": self.run_on,
                "previous": (footage(self.previous[0]), *self.previous[1:])
                if self.previous else None,
                "transition": self.transition if self.index else "cut",
                "fade_s": self.fade_s, "first": self.index == 0, "last": self.last,
                "ass": self.ass, "background": self.background, "options": self.options,
                "version": SEGMENT_VERSION}


def segment_inputs(job: ComposeJob, timeline: Timeline) -> list[SegmentInput]:
    options, slots = job.options, job.slots()
    last = len(slots) - 1
    kind = options.transition if last > 0 and options.transition_s > 0 else "cut"
    header = ass_header(style=job.style, font=job.language.font, width=options.width,
                        height=options.height)
    events = _events(job, timeline)
    encoder = options.model_dump(include={"width", "height", "fps", "preset", "crf"})
    inputs, previous = [], None
    for index, (scene, slot) in enumerate(zip(slots, timeline.slots, strict=True)):
        run_on = transition_overlap(options, index == last) if kind == "crossfade" else 0.0
        seen = [e for event in events if (e := event.within(slot.start, slot.end))]
        inputs.append(SegmentInput(
            index=index, scene=scene, seconds=slot.length, run_on=run_on,
            previous=previous if kind == "crossfade" else None, transition=kind,
            fade_s=options.transition_s, last=index == last, ass=ass_script(header, seen),
            background=job.style.colors.background, options=encoder, fit=options.filling))
        previous = (scene, slot.length, run_on)
    return inputs


def encode_segments(job: ComposeJob, timeline: Timeline, store: AssetStore, work: Path,
                    progress: Progress) -> list[Asset]:
    """Every slot's segment: from the store, or encoded now, several at once."""
    inputs = segment_inputs(job, timeline)

    def one(segment: SegmentInput) -> Asset:
        asset = store.produce("segments", segment.describe(), ".ts",
                              lambda out: _encode_segment(segment, job.options, work, out))
        progress.segment_done(segment.seconds)
        return asset

    with ThreadPoolExecutor(max_workers=SEGMENT_WORKERS) as pool:
        return list(pool.map(one, inputs))


def _encode_segment(segment: SegmentInput, options: ComposeOptions, work: Path,
                    out: Path) -> dict[str, Any]:
    """One segment: its footage fitted to the slot, the transition into it, its text burned
    in by libass, H.264 in MPEG-TS with the settings every segment shares."""
    seconds, fade = segment.seconds, segment.fade_s
    picture = _fitted_clip(segment.scene, seconds + segment.run_on, options,
                           segment.background).filter("trim", duration=seconds)
    if segment.previous is not None:   # the cross-fade from the previous clip's run-on
        scene, length, run_on = segment.previous
        tail = (_fitted_clip(scene, length + run_on, options, segment.background)
                .filter("trim", start=length, duration=fade)
                .filter("setpts", "PTS-STARTPTS"))
        picture = ffmpeg.filter([tail, picture], "xfade", transition="fade", duration=fade,
                                offset=0)
    elif segment.transition == "dip":   # through the style colour, each segment its own ends
        half = min(fade / 2, seconds / 4)
        if segment.index > 0:
            picture = picture.filter("fade", type="in", start_time=0, duration=half,
                                     color=segment.background)
        if not segment.last:
            picture = picture.filter("fade", type="out", start_time=round(seconds - half, 4),
                                     duration=half, color=segment.background)
    # ffmpeg runs in the work folder: the filter argument is a bare name, never a path that
    # would need escaping for the filter graph.
    ass = work / f"segment-{segment.index}-{uuid.uuid4().hex[:8]}.ass"
    ass.write_text(segment.ass, encoding="utf-8")
    frames = round(seconds * options.fps)
    stream = ffmpeg.output(picture.filter("ass", ass.name), media_input(out), format="mpegts",
                           vcodec="libx264", preset=options.preset, crf=options.crf,
                           pix_fmt="yuv420p", r=options.fps, an=None,
                           **{"frames:v": frames})
    run_ffmpeg(stream.get_args(), what=f"encoding segment {segment.index}", cwd=work)
    return {"frames": frames, "seconds": seconds}


def metadata_arguments(metadata: dict[str, str]) -> list[str]:
    """ffmpeg's arguments writing the video's tags."""
    return [item for key, value in metadata.items() for item in ("-metadata", f"{key}={value}")]


def link_segments(segments: list[Asset], work: Path) -> Path:
    """The concat demuxer's list of the segments, linked into `work` under safe names (the
    list then needs no escaping)."""
    listing = work / "segments.txt"
    names = []
    for index, segment in enumerate(segments):
        name = work / f"segment-{index:04d}.ts"
        try:
            os.link(segment.path, name)
        except OSError:
            shutil.copyfile(segment.path, name)
        names.append(f"file '{name.name}'")
    listing.write_text("\n".join(names) + "\n", encoding="utf-8")
    return listing


def join_segments(job: ComposeJob, timeline: Timeline, segments: list[Asset], sound: Path,
                  work: Path, out: Path) -> None:
    """The segments and the sound end to end without re-encoding, the tags, faststart."""
    listing = link_segments(segments, work)
    # use_metadata_tags keeps keys beyond the iTunes set (ai_generated, AIGC...).
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", listing.name, "-i", media_input(sound),
                "-map", "0:v", "-map", "1:a", "-c", "copy",
                "-metadata:s:a:0", f"language={job.language.iso639_2}",
                "-t", f"{timeline.duration:.3f}", *metadata_arguments(job.metadata),
                "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", media_input(out)],
               what=f"joining the {job.language.code} video", cwd=work)
