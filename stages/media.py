"""Thin, safe wrappers around ffmpeg, ffprobe and WAV files.

Every program is run with an argument list (never a shell), and a failure becomes a
`MediaError` carrying the end of the program's own message.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
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
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        raise MediaError(f"{what}: {args[0]} failed (exit {done.returncode}): " + " | ".join(tail))
    return done


def run_ffmpeg(args: list[str], *, what: str, duration_s: float | None = None,
               on_progress: Callable[[float], None] | None = None) -> None:
    """Run ffmpeg, reporting the fraction done (0..1) from its `-progress` stream."""
    command = [program("ffmpeg"), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-progress", "pipe:1", "-nostats", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
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
        errors = proc.stderr.read().decode("utf-8", "replace")
        code = proc.wait()
    if code != 0:
        tail = " | ".join(errors.strip().splitlines()[-6:])
        if "No space left on device" in errors:
            raise MediaError(f"{what}: the disk is full (No space left on device)")
        raise MediaError(f"{what}: ffmpeg failed (exit {code}): {tail}")
    if on_progress:
        on_progress(1.0)


def probe(path: Path) -> dict:
    """ffprobe's JSON description of a media file (format and streams)."""
    done = run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                "-show_streams", str(path)], what=f"reading {path.name}", timeout=60)
    return json.loads(done.stdout)


def duration(path: Path) -> float:
    return float(probe(path)["format"]["duration"])


def audio_problem(path: Path) -> str | None:
    """Why a supplied audio file cannot be used as music, or None."""
    try:
        info = probe(path)
    except MediaError:
        return f"{path.name} is not an audio file ffmpeg can read"
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        return f"{path.name} has no audio stream"
    if float(info.get("format", {}).get("duration") or 0) < 1.0:
        return f"{path.name} is shorter than one second"
    return None


def loudness(path: Path) -> dict[str, float]:
    """EBU R128 integrated loudness (LUFS), loudness range (LU) and true peak (dBTP)."""
    done = run(["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-vn",
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
