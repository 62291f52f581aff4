"""Thin, safe wrappers around ffmpeg, ffprobe and WAV files.

Every program is run with an argument list (never a shell), and a failure becomes a
`MediaError` carrying the end of the program's own message. Files reach ffmpeg as `file:`
URLs of absolute paths, so no name (`-x.wav`, `concat:a|b`, `http:...`) is read as an option
or a protocol.

Supplied media (photos, music, voice recordings) pass `check_supplied` before anything
decodes them: ffprobe, allowed only the file protocol and the demuxers of the expected kind,
must find an allowed container and codec, within the size, dimensions and duration limits.
A playlist or a concat list posing as an .mp3 is refused unread.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import threading
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from stages.errors import MediaError, MissingToolError

SAMPLE_RATE = 48_000
PACKAGES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "espeak-ng": "espeak-ng"}


@cache
def program(name: str) -> str:
    """Absolute path of a required system program, or a clear error saying how to install it."""
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(name, PACKAGES.get(name, name))
    return found


def run(args: list[str], *, what: str, stdin: bytes | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a program; on failure raise `MediaError` naming `what` with the program's last words."""
    try:
        done = subprocess.run([program(args[0]), *args[1:]], input=stdin, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{what}: {args[0]} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        if DISK_FULL.encode() in done.stderr:
            raise disk_full(what)
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise MediaError(f"{what}: {args[0]} failed (exit {done.returncode}): " + " | ".join(tail))
    return done


def media_input(path: Path) -> str:
    """A file as ffmpeg should be given it: never an option, never another protocol."""
    return f"file:{Path(path).absolute()}"


DISK_FULL = "No space left on device"


def disk_full(what: str) -> MediaError:
    return MediaError(f"{what}: the disk is full ({DISK_FULL}); free some space and build "
                      "again: finished assets are reused.")


def run_ffmpeg(args: list[str], *, what: str, duration_s: float | None = None,
               on_progress: Callable[[float], None] | None = None,
               cwd: Path | None = None) -> None:
    """Run ffmpeg, reporting the fraction done (0..1) from its `-progress` stream.

    Its messages are read on a thread of their own while progress is read here: a damaged
    input can make ffmpeg write hundreds of kilobytes of errors, and a full pipe nobody reads
    would stop it (and this function) for good. Only the last lines are kept, for the error."""
    command = [program("ffmpeg"), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-progress", "pipe:1", "-nostats", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=cwd) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        errors: deque[bytes] = deque(maxlen=200)
        drain = threading.Thread(target=errors.extend, args=(proc.stderr,), daemon=True)
        drain.start()
        try:
            for raw in proc.stdout:
                line = raw.decode("ascii", "replace").strip()
                if on_progress and duration_s and line.startswith("out_time_us="):
                    value = line.split("=", 1)[1]
                    if value.isdigit():
                        on_progress(min(1.0, int(value) / 1e6 / duration_s))
        except BaseException:   # a time limit or an interrupt: ffmpeg must not run on
            proc.kill()
            raise
        code = proc.wait()
        drain.join()
    if code != 0:
        message = b"".join(errors).decode("utf-8", "replace")
        if DISK_FULL in message:
            raise disk_full(what)
        tail = " | ".join(message.strip().splitlines()[-6:])
        raise MediaError(f"{what}: ffmpeg failed (exit {code}): {tail}")
    if on_progress:
        on_progress(1.0)


def probe(path: Path, formats: tuple[str, ...] | None = None) -> dict:
    """ffprobe's JSON description of a media file (format and streams); with `formats`, only
    those demuxers may open it, and only from the file protocol."""
    limits = ["-protocol_whitelist", "file", "-format_whitelist", ",".join(formats)] \
        if formats else []
    done = run(["ffprobe", "-v", "error", *limits, "-print_format", "json", "-show_format",
                "-show_streams", media_input(path)], what=f"reading {path.name}", timeout=60)
    return json.loads(done.stdout)


def duration(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


@dataclass(frozen=True)
class MediaRules:
    """What a kind of supplied file may be: containers (ffprobe demuxer names), codecs, and
    limits. Anything else is refused before it is decoded."""

    kind: str                       # "photo", "music", "recording"
    expected: str                   # for messages: "a JPEG, PNG or WEBP photo"
    formats: tuple[str, ...]
    codecs: frozenset[str]
    max_bytes: int
    max_seconds: float = 0.0        # audio: longest allowed
    min_seconds: float = 0.0
    max_side: int = 0               # photos: longest side in pixels
    max_pixels: int = 0


AUDIO_CODECS = frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8", "mp3",
                          "vorbis", "opus", "flac", "aac", "alac"})
AUDIO_FORMATS = ("wav", "mp3", "ogg", "flac", "mov", "aac")
PHOTO = MediaRules("photo", "a JPEG, PNG or WEBP photo",
                   ("image2", "png_pipe", "jpeg_pipe", "webp_pipe"),
                   frozenset({"mjpeg", "png", "webp"}), max_bytes=50 << 20, max_side=16384,
                   max_pixels=50_000_000)
MUSIC = MediaRules("music", "a WAV, MP3, OGG, FLAC or M4A audio file", AUDIO_FORMATS,
                   AUDIO_CODECS, max_bytes=500 << 20, max_seconds=3 * 3600, min_seconds=1.0)
RECORDING = MediaRules("recording", "a WAV, MP3, OGG, FLAC or M4A recording", AUDIO_FORMATS,
                       AUDIO_CODECS, max_bytes=200 << 20, max_seconds=3600)


def check_supplied(path: Path, rules: MediaRules) -> str | None:
    """Why a supplied file may not be used as `rules.kind`, or None; nothing is decoded."""
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"{name} cannot be read: {exc.strerror}"
    if size > rules.max_bytes:
        return f"{name} is {size / 1e6:.0f} MB; the limit for {rules.kind} is " \
               f"{rules.max_bytes / 1e6:.0f} MB"
    try:
        info = probe(path, rules.formats)
    except MediaError:
        return f"{name} is not {rules.expected} (ffprobe could not open it as one)"
    streams = info.get("streams", [])
    if rules.kind == "photo":
        return _photo_problem(name, streams, rules)
    return _audio_problem(name, info, streams, rules)


def _photo_problem(name: str, streams: list[dict], rules: MediaRules) -> str | None:
    pictures = [s for s in streams if s.get("codec_type") == "video"]
    if len(pictures) != 1 or pictures[0].get("codec_name") not in rules.codecs:
        found = ", ".join(str(s.get("codec_name")) for s in streams) or "no picture"
        return f"{name} is not {rules.expected} (it holds {found})"
    width, height = int(pictures[0].get("width") or 0), int(pictures[0].get("height") or 0)
    if not width or not height:
        return f"{name} is not {rules.expected} (no picture could be read from it)"
    if max(width, height) > rules.max_side or width * height > rules.max_pixels:
        return (f"{name} is {width}x{height} pixels; the limit is {rules.max_side} pixels a "
                f"side and {rules.max_pixels // 1_000_000} megapixels")
    if min(width, height) < 16:
        return f"{name} is only {width}x{height} pixels"
    return None


def _audio_problem(name: str, info: dict, streams: list[dict],
                   rules: MediaRules) -> str | None:
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    # Cover art (an attached picture) is the only other stream an audio file may carry.
    others = [s for s in streams if s.get("codec_type") != "audio"
              and not s.get("disposition", {}).get("attached_pic")]
    if not audio:
        return f"{name} has no audio stream"
    if others or len(audio) > 1:
        return f"{name} must hold one audio stream and nothing else (it holds " \
               f"{len(audio)} audio and {len(others)} other streams)"
    if audio[0].get("codec_name") not in rules.codecs:
        return f"{name} is {audio[0].get('codec_name')} audio; expected {rules.expected}"
    seconds = float(info.get("format", {}).get("duration") or 0)
    if seconds < rules.min_seconds:
        return f"{name} is shorter than {rules.min_seconds:g} second(s)"
    if seconds > rules.max_seconds:
        return f"{name} lasts {seconds / 60:.0f} minutes; the limit for {rules.kind} is " \
               f"{rules.max_seconds / 60:.0f} minutes"
    return None


def audio_problem(path: Path) -> str | None:
    """Why a supplied audio file cannot be used as music, or None."""
    return check_supplied(path, MUSIC)


def loudness(path: Path) -> dict[str, float]:
    """EBU R128 integrated loudness (LUFS), loudness range (LU) and true peak (dBTP)."""
    done = run(["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", media_input(path), "-vn",
                "-af", "ebur128=peak=true", "-f", "null", "-"], what=f"measuring {path.name}")
    summary = done.stderr.decode("utf-8", "replace").rpartition("Summary:")[2]
    found = {name: re.search(rf"{label}:\s+(-?[\d.]+|-inf)", summary)
             for name, label in (("integrated_lufs", "I"), ("range_lu", "LRA"),
                                 ("true_peak_dbtp", "Peak"))}
    if not all(found.values()):
        raise MediaError(f"measuring {path.name}: ffmpeg printed no loudness figures")
    return {name: float(match.group(1)) for name, match in found.items()}


def read_wav(path: Path, mono: bool = True) -> tuple[np.ndarray, int]:
    """Float32 samples in -1..1 (mono, or frames x channels) and the sample rate of a 16-bit
    PCM WAV file."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise MediaError(f"{path.name}: expected 16-bit PCM WAV")
        frames = wav.readframes(wav.getnframes())
        channels, rate = wav.getnchannels(), wav.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1 or not mono:
        samples = samples.reshape(-1, channels)
        if mono:
            samples = samples.mean(axis=1)
    return samples, rate


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write float samples (mono, or frames x channels) as 16-bit PCM."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


def write_video(frames: np.ndarray, fps: float, out: Path, crf: int = 16) -> None:
    """RGB frames (count, height, width, 3; uint8, or floats in 0..1) as an H.264 MP4."""
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    count, height, width, _ = frames.shape
    run(["ffmpeg", "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
         "-frames:v", str(count), "-c:v", "libx264", "-preset", "fast", "-crf", str(crf),
         "-pix_fmt", "yuv420p", "-an", "-f", "mp4", str(out)],
        what="encoding a generated clip", stdin=np.ascontiguousarray(frames).tobytes())


CROP_KEEPS = 0.75   # `auto` crops when at least this much of the picture stays in the frame


def fit_mode(requested: str, source: tuple[int, int], frame: tuple[int, int]) -> str:
    """How a picture of `source` size fills a frame of another aspect: `crop` (cover, the
    centre kept), `blur` (all of it, over a blurred enlargement of itself) or `pad` (all of
    it, bars of the style colour). `auto` crops a near aspect (4:3 into 16:9 keeps 75%) and
    blurs a far one (a portrait photo in a landscape frame), so nothing important is cut."""
    if requested != "auto":
        return requested
    aspect, framed = source[0] / source[1], frame[0] / frame[1]
    kept = min(aspect, framed) / max(aspect, framed)
    return "crop" if kept >= CROP_KEEPS - 1e-6 else "blur"


def size_at_aspect(width: int, height: int, area: int, multiple: int) -> tuple[int, int]:
    """About `area` pixels at the aspect of `width` x `height`, both sides multiples of
    `multiple` (rounded down, so within the budget)."""
    aspect = height / width
    return (max(multiple, round(math.sqrt(area / aspect)) // multiple * multiple),
            max(multiple, round(math.sqrt(area * aspect)) // multiple * multiple))
