"""One MP4 with every language: a shared, text-free picture, a language-tagged AAC track and a
mov_text subtitle track per language, the script's language the default."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import (
    TINY_PROFILE,
    ZH_TW,
    base_script,
    build,
    ebur128,
    ffprobe,
    parse_srt,
    write_script,
)

pytestmark = pytest.mark.usefixtures("prefect_server")



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multitrack")
    script = write_script(folder, base_script(languages=["en", "zh-TW"],
                                              translations={"zh-TW": ZH_TW}))
    profile = folder / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    out = folder / "out"
    manifest = build(script, out, profile, "--multitrack")
    return {"manifest": manifest, "root": out / "test-sop", "script": script, "out": out,
            "profile": profile}


def extract(video: Path, *args: str) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), *args], check=True,
                          capture_output=True).stdout


def test_every_language_has_a_tagged_audio_and_subtitle_track(built):
    entry = built["manifest"]["multitrack"]
    video = built["root"] / entry["video"]
    assert entry["languages"] == ["en", "zh-TW"] and entry["default"] == "en"
    streams = ffprobe(video)["streams"]
    kinds = [(s["codec_type"], s.get("codec_name"), s.get("tags", {}).get("language"),
              s["disposition"]["default"]) for s in streams]
    assert kinds == [("video", "h264", "und", 1),
                     ("audio", "aac", "eng", 1), ("audio", "aac", "zho", 0),
                     ("subtitle", "mov_text", "eng", 1), ("subtitle", "mov_text", "zho", 0)]
    # One timeline: as long as the longer language in every scene, so at least either video.
    outputs = built["manifest"]["outputs"]
    assert entry["duration_s"] >= max(o["duration_s"] for o in outputs.values()) - 0.05
    assert float(ffprobe(video)["format"]["duration"]) == pytest.approx(entry["duration_s"],
                                                                       abs=0.1)


def test_each_track_carries_its_language(built, tmp_path):
    video = built["root"] / built["manifest"]["multitrack"]["video"]
    for index, lang in enumerate(["en", "zh-TW"]):
        cues = parse_srt(extract(video, "-map", f"0:s:{index}", "-f", "srt", "-").decode())
        own = parse_srt((built["root"] / lang / "subtitles.srt").read_text(encoding="utf-8"))
        assert [c["lines"] for c in cues] == [c["lines"] for c in own]
        track = tmp_path / f"{lang}.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-map", f"0:a:{index}",
                        "-c", "copy", str(track)], check=True)
        assert ebur128(track)["I"] == pytest.approx(-16, abs=1.0)
    first_zh = parse_srt(extract(video, "-map", "0:s:1", "-f", "srt", "-").decode())[0]
    first_en = parse_srt(extract(video, "-map", "0:s:0", "-f", "srt", "-").decode())[0]
    assert "電源" in "".join(first_zh["lines"]) and "conveyor" in " ".join(first_en["lines"])
    assert abs(first_zh["start"] - first_en["start"]) < 0.05, "both start with their scene"


def bright_bottom(video: Path, seconds: float) -> int:
    """Near-white pixels in the band where subtitles sit (above the storyboard's stripe)."""
    width, height = TINY_PROFILE["compose"]["width"], TINY_PROFILE["compose"]["height"]
    raw = extract(video, "-ss", f"{seconds:.2f}", "-frames:v", "1", "-f", "rawvideo",
                  "-pix_fmt", "gray", "-")
    frame = np.frombuffer(raw, dtype=np.uint8)[: width * height].reshape(height, width)
    return int((frame[round(height * 0.6): round(height * 0.97)] > 225).sum())


def test_the_picture_has_no_language_text(built):
    root, manifest = built["root"], built["manifest"]
    cue = parse_srt((root / "en" / "subtitles.srt").read_text(encoding="utf-8"))[0]
    middle = (cue["start"] + cue["end"]) / 2
    assert bright_bottom(root / "en" / "video.mp4", middle) > 10, \
        "subtitles burned in (white; the sketch is grey)"
    shared = parse_srt(extract(root / "multitrack.mp4", "-map", "0:s:0", "-f", "srt",
                               "-").decode())[0]
    assert bright_bottom(root / manifest["multitrack"]["video"],
                         (shared["start"] + shared["end"]) / 2) == 0


def test_an_unchanged_rebuild_reuses_the_file(built):
    before = (built["root"] / "multitrack.mp4").stat().st_mtime_ns
    manifest = build(built["script"], built["out"], built["profile"], "--multitrack")
    assert manifest["multitrack"]["cached"] is True
    assert (built["root"] / "multitrack.mp4").stat().st_mtime_ns == before
