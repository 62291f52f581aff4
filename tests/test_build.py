"""End-to-end draft builds on a real Prefect server, checked the way a user would check them:
ffprobe on the video, ebur128 on the sound, parsed subtitles, and the manifest."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import (
    TINY_PROFILE,
    base_script,
    build,
    ebur128,
    enrol_anna,
    ffprobe,
    make_photo,
    parse_srt,
    parse_vtt,
    whole_frames,
    write_script,
)
from conftest import ZH_TW as BASE_ZH_TW
from PIL import Image

from flows.cli import main
from stages.assets import file_sha256
from stages.text import width

pytestmark = pytest.mark.usefixtures("prefect_server")

ZH_TW = {**BASE_ZH_TW, "scenes": {**BASE_ZH_TW["scenes"],
                                  "photo": {"narration": "這是現場照片。", "caption": "現場"}}}


def cached_flags(manifest: dict) -> dict[tuple[str, str, str | None], bool]:
    return {(scene["id"], asset["stage"], asset["language"]): asset["cached"]
            for scene in manifest["scenes"] for asset in scene["assets"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A two-language script with a supplied portrait photo, built once for several tests."""
    folder = tmp_path_factory.mktemp("sop")
    make_photo(folder / "photos" / "portrait.jpg", (90, 160), colour=(220, 30, 30))
    script = base_script(languages=["en", "zh-TW"], translations={"zh-TW": ZH_TW})
    script["scenes"].append({"id": "photo", "narration": "This is the site photo.",
                             "caption": "On site", "image": "photos/portrait.jpg"})
    path = write_script(folder, script)
    profile = folder / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE))
    out = folder / "outputs"
    manifest = build(path, out, profile)
    return {"script": path, "out": out, "profile": profile, "manifest": manifest,
            "root": out / "test-sop"}


def test_video_streams_and_duration(project):
    manifest, root = project["manifest"], project["root"]
    assert set(manifest["outputs"]) == {"en", "zh-TW"}
    for lang, entry in manifest["outputs"].items():
        info = ffprobe(root / entry["video"])
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
        assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == (
            "h264", "yuv420p", 320, 180)
        assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == (
            "aac", "48000", 2)
        assert abs(float(info["format"]["duration"]) - entry["duration_s"]) < 0.2, lang
        data = (root / entry["video"]).read_bytes()
        assert data.find(b"moov") < data.find(b"mdat"), "+faststart puts the index first"


def test_loudness_is_broadcast_sane(project):
    for entry in project["manifest"]["outputs"].values():
        measured = ebur128(project["root"] / entry["video"])
        assert abs(measured["I"] - -16.0) <= 1.0, measured
        assert measured["TP"] <= -1.0, measured


def test_subtitles_follow_measured_narration(project):
    root, manifest = project["root"], project["manifest"]
    limits = {"en": 42, "zh-TW": 16}
    for lang, entry in manifest["outputs"].items():
        cues = parse_srt((root / entry["srt"]).read_text(encoding="utf-8"))
        assert len(cues) == entry["cues"] >= 3
        previous_end = 0.0
        for cue in cues:
            assert previous_end <= cue["start"] < cue["end"] <= entry["duration_s"]
            assert len(cue["lines"]) in (1, 2)
            assert all(width(line) <= limits[lang] for line in cue["lines"])
            previous_end = cue["end"]
        vtt = parse_vtt((root / entry["vtt"]).read_text(encoding="utf-8"))
        assert vtt == [{k: cue[k] for k in ("start", "end", "lines")} for cue in cues]
    en = parse_srt((root / "en" / "subtitles.srt").read_text(encoding="utf-8"))
    assert en[0]["lines"] and "Switch the conveyor off" in " ".join(en[0]["lines"])
    # The narration asset's measured sentence spans drive the cue times.
    narration = next(a for a in manifest["scenes"][0]["assets"]
                     if a["stage"] == "narrate" and a["language"] == "en")
    first = narration["info"]["sentences"][0]
    # The video opens with the AI notice card (lead-in, the notice read aloud, pause).
    card = whole_frames(0.4 + manifest["notices"]["en"]["info"]["seconds"] + 0.8)
    assert en[0]["start"] == pytest.approx(card + 0.4 + first["start"], abs=0.002)
    # A cue may stay up into the scene's pause to be read, never past its scene.
    assert en[-1]["end"] <= manifest["outputs"]["en"]["duration_s"] - 0.05
    reading = manifest["outputs"]["en"]["reading_speed"]
    assert reading["limit_cps"] == 17 and reading["max_cps"] > 0
    for cue in reading["slow_cues"]:   # each one also a warning naming the cue
        assert cue["cps"] > 17 and any(f"cue {cue['index']} " in w for w in manifest["warnings"])


def test_manifest_records_every_asset(project):
    manifest, root = project["manifest"], project["root"]
    assert manifest["script"]["id"] == "test-sop" and len(manifest["script"]["sha256"]) == 64
    assert manifest["profile"]["images"]["backend"] == "storyboard"
    for scene in manifest["scenes"]:
        stages = [(a["stage"], a["language"]) for a in scene["assets"]]
        assert stages == [("images", None), ("animate", None), ("narrate", "en"),
                          ("narrate", "zh-TW")]
        for asset in scene["assets"]:
            assert file_sha256(root / asset["path"]) == asset["sha256"]
            assert asset["backend"] and asset["cached"] is False
    storyboard = manifest["scenes"][0]["assets"][0]
    assert storyboard["backend"] == "storyboard" and isinstance(storyboard["seed"], int)
    assert manifest["scenes"][2]["assets"][0]["backend"] == "file"
    assert manifest["music"]["backend"] == "synth"
    assert manifest["voice"]["id"] == "stock" and manifest["disclosure"]
    assert not list(root.rglob(".tmp-*")), "no temporary files are left behind"


def test_supplied_portrait_photo_is_shown_whole_over_its_blur_not_stretched(project):
    manifest, root = project["manifest"], project["root"]
    asset = manifest["scenes"][2]["assets"][0]
    still = Image.open(root / asset["path"]).convert("RGB")
    pixels = np.asarray(still).astype(int)
    assert still.size == (480, 272)
    red = np.flatnonzero((pixels[136, :, 0] > 180) & (pixels[136, :, 1] < 80))
    assert abs((red.max() - red.min() + 1) - round(90 * 272 / 160)) <= 2, "aspect kept"
    edge = pixels[136, 5]
    assert tuple(edge) != (0x1F, 0x29, 0x33), "no bars of the style background"
    assert edge[0] > edge[1] + 40, "beside the photo: its own blurred, dimmed red"


def test_unchanged_rerun_reuses_everything(project):
    before = {lang: file_sha256(project["root"] / e["video"])
              for lang, e in project["manifest"]["outputs"].items()}
    manifest = build(project["script"], project["out"], project["profile"])
    assert all(cached_flags(manifest).values())
    assert manifest["music"]["cached"] is True
    assert all(entry["cached"] for entry in manifest["outputs"].values())
    assert before == {lang: file_sha256(project["root"] / e["video"])
                      for lang, e in manifest["outputs"].items()}


def test_editing_one_narration_recomputes_only_it(project):
    path = project["script"]
    path.write_text(path.read_text(encoding="utf-8").replace(
        "Keep the key with you.", "Keep the key in your pocket."), encoding="utf-8")
    manifest = build(path, project["out"], project["profile"])
    fresh = {key for key, cached in cached_flags(manifest).items() if not cached}
    assert fresh == {("lock", "narrate", "en")}
    assert manifest["outputs"]["en"]["cached"] is False
    assert manifest["outputs"]["zh-TW"]["cached"] is True
    srt = (project["root"] / "en" / "subtitles.srt").read_text(encoding="utf-8")
    assert "pocket" in srt


def test_lang_option_builds_one_language(tmp_path, tiny_profile):
    script = write_script(tmp_path, base_script(languages=["en", "zh-TW"], music=None,
                                                translations={"zh-TW": {"scenes": {
                                                    k: v for k, v in ZH_TW["scenes"].items()
                                                    if k != "photo"}}}))
    manifest = build(script, tmp_path / "out", tiny_profile, "--lang", "zh-TW")
    assert set(manifest["outputs"]) == {"zh-TW"}
    assert manifest["music"] is None
    assert manifest["warnings"] == ["zh-TW: no translated title; the opening title card is left "
                                    "out in that language"]


def test_hostile_text_and_file_names(tmp_path, tiny_profile):
    """Characters special to shells, ffmpeg filters, ASS and HTML reach the video as written."""
    folder = tmp_path / "it's a: [test], 100%"
    make_photo(folder / "photos" / "it's; a, photo: $(x).png", (160, 90))
    hostile = "Press \"STOP\": it's 100% {\\an8}C:\\new\\N <i>now</i> $(rm -rf /) `x` %{pts}"
    script = base_script(music=None)
    script["scenes"][0]["narration"] = hostile
    script["scenes"][0]["caption"] = "{\\b1}50% off: 'quote' \\N <b>"
    script["scenes"][1]["image"] = "photos/it's; a, photo: $(x).png"
    out = folder / "out: here, 'x'"
    manifest = build(write_script(folder, script), out, tiny_profile)
    srt = (out / "test-sop" / manifest["outputs"]["en"]["srt"]).read_text(encoding="utf-8")
    flat = " ".join(srt.split())
    for fragment in ("\"STOP\":", "it's", "100%", "{\\an8}C:\\new\\N", "<i>now</i>",
                     "$(rm -rf /)", "%{pts}"):
        assert fragment in flat
    assert ffprobe(out / "test-sop" / "en" / "video.mp4")["format"]["duration"]


def test_music_from_a_file(tmp_path, tiny_profile):
    (tmp_path / "audio").mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=220:d=3",
                    str(tmp_path / "audio" / "bed.mp3")], check=True)
    manifest = build(write_script(tmp_path, base_script(music="audio/bed.mp3")),
                     tmp_path / "out", tiny_profile)
    assert manifest["music"]["backend"] == "file"
    assert manifest["music"]["info"]["source"] == "bed.mp3"


def test_enrolled_voice_in_draft_speaks_stock_and_says_so(tmp_path, tiny_profile, recordings):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings)
    script = write_script(tmp_path, base_script(voice="anna", music=None))
    manifest = build(script, tmp_path / "out", tiny_profile, "--voices-dir", str(voices))
    assert manifest["voice"]["id"] == "anna"
    assert manifest["voice"]["spoken"]["en"]["cloned"] is False
    assert any("not a clone" in warning for warning in manifest["warnings"])
    assert "stock synthetic voice" in manifest["disclosure"]


def test_progress_is_reported_per_stage(tmp_path, tiny_profile):
    script = write_script(tmp_path, base_script(music=None))
    result = CliRunner().invoke(main, ["build", str(script), "--profile", str(tiny_profile),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for stage in ("images: done", "animate: done", "narrate: done", "compose en: done"):
        assert result.output.count(stage) == 1, result.output
    assert f"en: {tmp_path / 'out' / 'test-sop' / 'en' / 'video.mp4'}" in result.output


def test_a_damaged_manifest_is_written_whole_again(project):
    """A manifest.json cut short held the other language's entry: a build of one language
    warns, and builds the other again from the cache so the manifest comes out whole."""
    path = project["root"] / "manifest.json"
    path.write_text(path.read_text(encoding="utf-8")[:300], encoding="utf-8")
    manifest = build(project["script"], project["out"], project["profile"], "--lang", "en")
    assert set(manifest["outputs"]) == {"en", "zh-TW"}
    assert manifest["outputs"]["zh-TW"]["cached"] is True
    assert all(cached_flags(manifest).values())
    damaged = [w for w in manifest["warnings"] if w.startswith("manifest.json could not be read")]
    assert len(damaged) == 1 and damaged[0].endswith("written anew; zh-TW built again from "
                                                     "the cache"), manifest["warnings"]


def test_temporary_files_a_killed_build_left_are_swept(project):
    """A kill -9 can leave a half-written video in a language folder and compose's private
    folder; the next build deletes them once they are an hour old, never a fresh one."""
    root = project["root"]
    stale_video = root / "en" / ".tmp-1a2b3c4d-video.mp4"
    stale_video.write_bytes(b"\0" * 1000)
    stale_work = root / "zh-TW" / ".tmp-compose-k1ll3d"
    stale_work.mkdir()
    (stale_work / "mix.wav").write_bytes(b"\0" * 1000)
    fresh = root / "en" / ".tmp-5e6f7a8b-subtitles.srt"   # another build's, still being written
    fresh.write_text("1\n", encoding="utf-8")
    hour_ago = time.time() - 7200
    for path in (stale_video, stale_work / "mix.wav", stale_work):
        os.utime(path, (hour_ago, hour_ago))
    build(project["script"], project["out"], project["profile"])
    assert not stale_video.exists() and not stale_work.exists()
    assert fresh.exists()
    fresh.unlink()


def _frames_md5(video: Path) -> list[str]:
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-map", "0:v",
                           "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[1].strip() for line in done.stdout.splitlines()
            if line and not line.startswith("#")]


@pytest.mark.parametrize(("transition", "remade"), [("dip", 1), ("crossfade", 2)])
def test_an_edit_reencodes_only_its_segments_and_equals_a_cold_build(tmp_path, transition,
                                                                     remade):
    """One sentence of the middle scene edited: only that scene's segment is encoded again
    (with a cross-fade, also the next one, whose head shows this scene's run-on), and the
    video equals a cold build of the edited script: the same decoded frames, the same
    subtitles, the same loudness and length."""
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "compose": {
        **TINY_PROFILE["compose"], "transition": transition}}), encoding="utf-8")
    script = base_script(music="calm ambient, 90 bpm")
    script["scenes"].append({"id": "tag", "narration": "Hang your tag on the lock.",
                             "caption": "Step 3: tag", "visual": "a red danger tag"})
    path = write_script(tmp_path / "sop", script)
    out = tmp_path / "out"
    build(path, out, profile)
    segments = out / "test-sop" / "assets" / "segments"
    before = {p: p.stat().st_mtime_ns for p in segments.glob("*.ts")}
    assert len(before) == 4   # the notice card and three scenes

    path.write_text(path.read_text(encoding="utf-8").replace(
        "Keep the key with you.", "Keep the key with you at all times."), encoding="utf-8")
    edited = build(path, out, profile)
    after = {p: p.stat().st_mtime_ns for p in segments.glob("*.ts")}
    assert all(after[p] == mtime for p, mtime in before.items())   # none encoded again
    assert len(after) - len(before) == remade

    cold = build(write_script(tmp_path / "cold", yaml.safe_load(path.read_text("utf-8"))),
                 tmp_path / "cold-out", profile)
    ours, theirs = out / "test-sop" / "en", tmp_path / "cold-out" / "test-sop" / "en"
    assert _frames_md5(ours / "video.mp4") == _frames_md5(theirs / "video.mp4")
    assert (ours / "subtitles.srt").read_text() == (theirs / "subtitles.srt").read_text()
    assert edited["outputs"]["en"]["duration_s"] == cold["outputs"]["en"]["duration_s"]
    assert abs(ebur128(ours / "video.mp4")["I"] - ebur128(theirs / "video.mp4")["I"]) <= 0.2
    for video in (ours / "video.mp4", theirs / "video.mp4"):   # A/V: both streams end together
        streams = ffprobe(video)["streams"]
        assert abs(float(streams[0]["duration"]) - float(streams[1]["duration"])) < 0.05
