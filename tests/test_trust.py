"""Trust: every video says it is synthetic (seen, heard and machine-read), signed videos
verify and a one-byte change breaks them, and commercial builds refuse non-commercial weights.
Checked as a user would: ffprobe, the decoded sound and pictures, parsed subtitles, the
manifest, and `sopreel verify`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from certs import make_ca
from click.testing import CliRunner
from conftest import (
    TINY_PROFILE,
    base_script,
    ffprobe,
    make_photo,
    parse_srt,
    whole_frames,
    write_script,
)

from flows.cli import main
from stages import languages
from stages.disclosure import default_texts
from stages.licenses import license_table, parse_use
from stages.plan import plan_build
from stages.profile import load_profile
from stages.script import load_script
from stages.style import load_style, rgb

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
ZH_TW = {"title": "上鎖掛牌", "scenes": {
    "isolate": {"narration": "在主電源開關處關閉輸送帶。", "caption": "步驟一：隔離"},
    "lock": {"narration": "掛上你自己的鎖。鑰匙要隨身攜帶。", "caption": "步驟二：上鎖"}}}
LEAD, PAUSE = 0.4, 0.8          # the compose defaults TINY_PROFILE keeps


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def profile_file(folder: Path, name: str = "p.yaml", **blocks) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**TINY_PROFILE, **blocks}), encoding="utf-8")
    return path


def manifest_of(out: Path) -> dict:
    return json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))


def samples(video: Path, start: float, end: float) -> np.ndarray:
    done = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{start}", "-to", f"{end}", "-i",
                           str(video), "-ac", "1", "-ar", "48000", "-f", "f32le", "-"],
                          capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.float32)


def rms_db(audio: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(audio ** 2)) + 1e-9)


def frame(video: Path, at: float) -> np.ndarray:
    done = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", str(video),
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(180, 320, 3).astype(int)


# ------------------------------------------------------------------------------- disclosure

@pytest.mark.usefixtures("prefect_server")
def test_every_video_opens_with_a_seen_and_heard_ai_notice_and_machine_readable_marks(
        tmp_path, tiny_profile):
    script = write_script(tmp_path / "sop", base_script(
        music=None, languages=["en", "zh-TW"], translations={"zh-TW": ZH_TW}))
    out = tmp_path / "out"
    code, output = cli("build", str(script), "--profile", str(tiny_profile), "--out", str(out))
    assert code == 0, output
    manifest = manifest_of(out)
    background = np.array(rgb(load_style("clean-industrial").colors.background))
    cards = {}
    for lang in ("en", "zh-TW"):
        text = default_texts()[lang].for_pictures("generated")   # every scene is drawn
        entry, video = manifest["outputs"][lang], out / "test-sop" / lang / "video.mp4"
        assert entry["notice"] == {"text": text.notice, "spoken": True, "label": text.label}
        spoken = manifest["notices"][lang]
        assert spoken["language"] == lang and spoken["info"]["notice"] is True
        assert spoken["digital_source_type"] == IPTC + "algorithmicMedia"
        seconds = spoken["info"]["seconds"]
        card = whole_frames(LEAD + max(seconds, 3.0 - LEAD - PAUSE) + PAUSE)
        cards[lang] = card
        # The first subtitle comes after the card: the notice itself is on the card, not a cue.
        cues = parse_srt((out / "test-sop" / lang / "subtitles.srt").read_text("utf-8"))
        assert cues[0]["start"] == pytest.approx(card + LEAD, abs=0.01)
        # Heard: speech while the card is up, silence before it (this script has no music).
        assert rms_db(samples(video, 0.0, 0.3)) < -60
        assert rms_db(samples(video, LEAD + 0.05, LEAD + seconds - 0.05)) > -40
        # Seen: the card is the style's background with light text across its middle.
        picture = frame(video, card / 2)
        near_background = np.abs(picture - background).sum(axis=2) < 30
        assert near_background.mean() > 0.8
        assert (picture[60:120].min(axis=2) > 200).sum() > 50     # the notice's letters
        # Machine-read: MP4 tags, with GB 45438's implicit label.
        tags = ffprobe(video)["format"]["tags"]
        assert tags["ai_generated"] == "true"
        assert tags["digital_source_type"] == IPTC + "compositeSynthetic"
        assert text.notice in tags["comment"] and tags["description"] == text.notice
        aigc = json.loads(tags["AIGC"])
        assert aigc["Label"] == "1" and aigc["ContentProducer"] == "sopreel"
        assert aigc["ProduceID"].startswith(f"sopreel:test-sop:{lang}:")
        assert entry["digital_source_type"] == IPTC + "compositeSynthetic"
    # IPTC per asset: the draft's storyboards, camera moves and espeak voice are algorithmic.
    assert {a["digital_source_type"] for s in manifest["scenes"] for a in s["assets"]} == \
        {IPTC + "algorithmicMedia"}
    assert manifest["digital_source_type"] == IPTC + "compositeSynthetic"

    labelled = frame(out / "test-sop" / "en" / "video.mp4", cards["en"] + 1.0)

    # Turned off in a profile: no card, no label, and the manifest says so.
    quiet = profile_file(tmp_path, "quiet.yaml", disclosure={"notice": False, "label": False})
    code, output = cli("build", str(script), "--profile", str(quiet), "--out", str(out),
                       "--lang", "en")
    assert code == 0, output
    plain = manifest_of(out)
    assert plain["outputs"]["en"]["notice"] is None and "en" not in plain["notices"]
    assert any("turned off the AI disclosure's notice" in w for w in plain["warnings"])
    assert any("turned off the AI disclosure's label" in w for w in plain["warnings"])
    assert plain["outputs"]["en"]["duration_s"] == pytest.approx(
        manifest["outputs"]["en"]["duration_s"] - cards["en"], abs=0.01)
    # The label sits in the top right corner through the scenes; the rest of the picture,
    # one second into the first scene, is the same with or without it.
    unlabelled = frame(out / "test-sop" / "en" / "video.mp4", 1.0)
    corner = np.abs(labelled[:20, 240:] - unlabelled[:20, 240:]).mean()
    rest = np.abs(labelled[60:, :200] - unlabelled[60:, :200]).mean()
    assert corner > 8 and rest < 2, (corner, rest)


def test_every_language_has_its_notice_and_every_model_licence_is_defined():
    texts = default_texts()
    assert set(languages.languages()) <= set(texts)
    for code, text in texts.items():   # three different sentences for three kinds of pictures
        notices = {text.for_pictures(kind).notice for kind in ("generated", "mixed", "photos")}
        assert len(notices) == 3, code
    assert license_table().licenses     # loading checks every model's licence is defined
    assert parse_use("commercial") == ("training", True)
    assert parse_use("marketing, commercial") == ("marketing", True)
    assert parse_use("training") == ("training", False)


@pytest.mark.usefixtures("prefect_server")
def test_the_notice_says_what_the_pictures_are(tmp_path, tiny_profile):
    """Supplied photos moved only by a camera move are real: the notice says only the voice is
    synthetic; with one drawn scene among them it says some pictures are."""
    folder = tmp_path / "sop"
    make_photo(folder / "photos" / "a.jpg", (320, 180))
    make_photo(folder / "photos" / "b.jpg", (320, 180), colour=(40, 40, 200))
    script = base_script(music=None)
    for scene, photo in zip(script["scenes"], ("a.jpg", "b.jpg"), strict=True):
        scene["image"] = f"photos/{photo}"
    path = write_script(folder, script)
    out = tmp_path / "out"
    code, output = cli("build", str(path), "--profile", str(tiny_profile), "--out", str(out))
    assert code == 0, output
    photos = "This video was made with AI. Its voice is synthetic; its photos are real."
    assert manifest_of(out)["outputs"]["en"]["notice"]["text"] == photos
    assert ffprobe(out / "test-sop" / "en" / "video.mp4")["format"]["tags"]["description"] \
        == photos

    del script["scenes"][1]["image"]
    plan = plan_build(load_script(write_script(folder, script)), load_profile(tiny_profile),
                      out)
    assert plan.pictures == "mixed"
    assert plan.disclosure_text("en").notice == ("This video was made with AI. Its voice and "
                                                 "some of its pictures are synthetic.")
    zh = plan.disclosure_text("zh-TW").notice
    assert zh == "本影片由人工智慧製作，其中的聲音與部分畫面為合成。"


# ------------------------------------------------------------------------------- provenance

def flip_one_byte(video: Path, copy: Path) -> Path:
    """A copy of the video with one byte of its media data changed."""
    data = bytearray(video.read_bytes())
    at = data.index(b"mdat") + len(data) // 4
    data[at] ^= 0x01
    copy.write_bytes(bytes(data))
    return copy


@pytest.mark.usefixtures("prefect_server")
def test_a_signed_video_verifies_names_its_ingredients_and_a_one_byte_change_breaks_it(
        tmp_path):
    pki = make_ca(tmp_path / "pki")
    profile = profile_file(tmp_path, "signed.yaml", provenance={
        "certificate": str(pki["certificate"]), "key": str(pki["key"])})
    script = write_script(tmp_path / "sop", base_script())     # synth music: 8 ingredients
    out = tmp_path / "out"
    code, output = cli("build", str(script), "--profile", str(profile), "--out", str(out))
    assert code == 0, output
    video = out / "test-sop" / "en" / "video.mp4"
    signed = manifest_of(out)["outputs"]["en"]["provenance"]
    assert signed["signed"] is True and signed["ingredients"] == 8   # 2 stills, 2 clips,
    # 2 narrations, the music bed and the spoken notice
    # Signing was the last step, and the video is still a normal MP4 with its tags.
    probe = ffprobe(video)
    assert float(probe["format"]["duration"]) == pytest.approx(
        manifest_of(out)["outputs"]["en"]["duration_s"], abs=0.1)
    assert probe["format"]["tags"]["ai_generated"] == "true"

    code, output = cli("verify", str(video), "--trust", str(pki["ca"]))
    assert code == 0, output
    assert "valid Content Credentials" in output
    assert "signed by: Acme Training Videos (Acme Manufacturing), es256" in output
    assert "chains to a trust anchor you gave" in output
    assert "digital source type: compositeSynthetic" in output
    assert "ingredients: 8" in output and output.count(": algorithmicMedia") == 8
    code, output = cli("verify", str(video), "--json")        # no trust anchor given
    report = json.loads(output)
    assert code == 0 and report["valid"] is True and report["trusted"] is False
    assert report["source_type"] == "compositeSynthetic"
    titles = [i["title"] for i in report["manifest"]["ingredients"]]
    assert sum(t.startswith("images ") for t in titles) == 2
    assert sum(t.startswith("AI notice ") for t in titles) == 1

    code, output = cli("verify", str(flip_one_byte(video, tmp_path / "changed.mp4")),
                       "--trust", str(pki["ca"]))
    assert code == 1 and "INVALID Content Credentials" in output
    assert "assertion.bmffHash.mismatch" in output
    unsigned = tmp_path / "unsigned.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-c", "copy", str(unsigned)],
                   check=True)   # a plain remux drops the manifest
    code, output = cli("verify", str(unsigned))
    assert code == 1 and "no Content Credentials" in output
    code, output = cli("verify", str(script))
    assert code == 1 and "cannot be read as an MP4 with Content Credentials" in output

    # An unchanged re-run reuses the signed video as it is.
    before = video.read_bytes()
    code, output = cli("build", str(script), "--profile", str(profile), "--out", str(out))
    assert code == 0 and video.read_bytes() == before


def test_signers_c2pa_would_refuse_are_refused_before_any_work(tmp_path, monkeypatch):
    pki = make_ca(tmp_path / "pki")
    script = write_script(tmp_path / "sop", base_script())
    out = tmp_path / "out"
    cases = [({"certificate": str(pki["self_signed"]), "key": str(pki["self_signed_key"])},
              "is self-signed, and C2PA refuses self-signed"),
             ({"certificate": str(pki["certificate"]), "key": str(pki["self_signed_key"])},
              "is not the key of"),
             ({"certificate": str(pki["bare"]), "key": str(pki["bare_key"])},
              "C2PA refuses to sign with"),
             ({"certificate": str(pki["certificate"])}, "give both `certificate` and `key`")]
    for block, expected in cases:
        profile = profile_file(tmp_path, provenance=block)
        code, output = cli("build", str(script), "--profile", str(profile), "--out", str(out))
        assert code == 2 and expected in output, output
        assert not out.exists()
    monkeypatch.setenv("SOPREEL_C2PA_CERT", str(pki["certificate"]))
    code, output = cli("validate", str(script))
    assert code == 2 and "Set both SOPREEL_C2PA_CERT and SOPREEL_C2PA_KEY" in output
    monkeypatch.setenv("SOPREEL_C2PA_KEY", str(pki["key"]))
    code, output = cli("validate", str(script))
    assert code == 0, output


# ---------------------------------------------------------------------------------- licences

def test_commercial_use_refuses_non_commercial_weights_before_any_work(tmp_path):
    studio_ish = {"images": {"backend": "diffusers", "model": "black-forest-labs/FLUX.1-dev"},
                  "music": {"backend": "musicgen", "model": "facebook/musicgen-small"}}
    profile = profile_file(tmp_path, **studio_ish)
    script = write_script(tmp_path / "sop", base_script())
    out = tmp_path / "out"
    code, output = cli("build", str(script), "--profile", str(profile), "--out", str(out),
                       "--use", "commercial")
    assert code == 2
    assert "This build is for commercial use (--use commercial)" in output
    assert "images: black-forest-labs/FLUX.1-dev (FLUX.1 [dev] Non-Commercial License)" in output
    assert "music: facebook/musicgen-small (CC-BY-NC-4.0)" in output
    assert not out.exists()
    # The same from the profile.
    marked = profile_file(tmp_path, "marked.yaml", commercial=True, **studio_ish)
    code, output = cli("validate", str(script), "--profile", str(marked))
    assert code == 2 and f"commercial: true in {marked}" in output
    # Only what the script needs counts: photos for every scene, no music prompt.
    make_photo(tmp_path / "sop" / "a.jpg", (64, 48))
    photos = base_script(music=None)
    for scene in photos["scenes"]:
        scene.pop("visual")
        scene["image"] = "a.jpg"
    code, output = cli("validate", str(write_script(tmp_path / "sop", photos, "photos.yaml")),
                       "--profile", str(profile), "--use", "training,commercial")
    assert code == 0, output
    # A local model's licence must be stated, and be one the table knows.
    folder = tmp_path / "my-sd"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}", encoding="utf-8")
    local = profile_file(tmp_path, "local.yaml",
                         images={"backend": "diffusers", "model": str(folder)})
    code, output = cli("validate", str(script), "--profile", str(local), "--use", "commercial")
    assert code == 2 and "is not in model_licenses.yaml" in output
    local = profile_file(tmp_path, "local.yaml", images={
        "backend": "diffusers", "model": str(folder), "license": "Apache-2.0"})
    code, output = cli("validate", str(script), "--profile", str(local), "--use", "commercial")
    assert code == 0, output
    code, output = cli("validate", str(script), "--use", "commercial")    # the draft: no models
    assert code == 0, output
    code, output = cli("validate", str(script), "--use", "training,marketing")
    assert code == 2 and "give one purpose" in output
