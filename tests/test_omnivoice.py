"""The omnivoice narrator on a tiny random-weight OmniVoice (and WavLM speaker encoder), loaded
through the same `from_pretrained` path as the real model; per-language routing between
narrators in a profile; the reference transcript a clone is made from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, enrol_anna, parse_srt, write_script

from flows.cli import main
from stages.errors import ProfileError, SopreelError
from stages.media import read_wav
from stages.narrate import NarrationRequest
from stages.narrate.omnivoice import OmniVoiceBackend, OmniVoiceOptions
from stages.profile import load_profile

TRANSCRIPT = ("Good morning. This is how I sound when I explain a safety procedure to my team "
              "on the shop floor.")
TH = {"scenes": {"isolate": {"narration": "ปิดสวิตช์หลักก่อนเริ่มงาน"},
                 "lock": {"narration": "ล็อกกุญแจของคุณ"}}}
VI = {"scenes": {"isolate": {"narration": "Tắt công tắc chính trước khi làm việc."},
                 "lock": {"narration": "Khóa ổ khóa của bạn."}}}


@pytest.fixture(scope="module")
def omni_options(tiny_omnivoice_models) -> dict:
    return {"model": str(tiny_omnivoice_models["omnivoice"]), "license": "Apache-2.0",
            "speaker_encoder": str(tiny_omnivoice_models["speaker_encoder"]), "steps": 4,
            "device": "cpu", "speaker_similarity": 0.5}


@pytest.fixture(scope="module")
def narrator(omni_options) -> OmniVoiceBackend:
    backend = OmniVoiceBackend(OmniVoiceOptions(**omni_options))
    backend.load()
    yield backend
    backend.close()


@pytest.mark.parametrize(("language", "sentences"), [
    ("th", ("ปิดสวิตช์หลัก", "ล็อกกุญแจ")), ("vi", ("Tắt công tắc chính.", "Khóa lại."))])
def test_omnivoice_clones_from_the_reference_and_its_transcript(narrator, recordings, tmp_path,
                                                                 language, sentences):
    request = NarrationRequest(sentences=sentences, language=language, voice="anna",
                               reference=recordings["reference"], reference_text=TRANSCRIPT)
    info = narrator.narrate(request, tmp_path / "a.wav")
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 48000 and info["cloned"] is True and info["language_id"] == language
    assert info["license"] == "Apache-2.0" and len(info["sha256"]) == 64
    assert abs(len(samples) / rate - info["seconds"]) < 0.01
    spans = info["sentences"]
    assert [s["text"] for s in spans] == list(sentences)
    assert 0 == spans[0]["start"] < spans[0]["end"] < spans[1]["start"] < spans[1]["end"]
    narrator.narrate(request, tmp_path / "b.wav")
    assert np.array_equal(read_wav(tmp_path / "b.wav")[0], samples)   # seeded: reproducible


def test_a_clone_without_a_transcript_is_refused(narrator, recordings, tmp_path):
    request = NarrationRequest(sentences=("Xin chào.",), language="vi", voice="anna",
                               reference=recordings["reference"])
    with pytest.raises(SopreelError, match="sopreel voices transcript anna"):
        narrator.narrate(request, tmp_path / "a.wav")


def test_the_stock_voice_is_a_described_voice_or_a_licensed_recording(
        narrator, omni_options, recordings, tmp_path):
    info = narrator.narrate(NarrationRequest(sentences=("Xin chào.",), language="vi"),
                            tmp_path / "designed.wav")
    assert info["cloned"] is False and "described voice 'female" in info["voice"]
    licensed = OmniVoiceBackend(OmniVoiceOptions(**omni_options, stock={
        "recording": recordings["other"], "transcript": "Somebody else entirely is talking.",
        "license": "CC-BY-4.0"}))
    info = licensed.narrate(NarrationRequest(sentences=("สวัสดี",), language="th"),
                            tmp_path / "licensed.wav")
    assert info["cloned"] is False and "other.wav (CC-BY-4.0)" in info["voice"]
    assert info["license"] == "Apache-2.0; stock recording CC-BY-4.0"
    with pytest.raises(SopreelError, match="unsupported; did you mean 'female'"):
        OmniVoiceBackend(OmniVoiceOptions(**omni_options, stock={"design": "femail"})
                         ).voice_plan("en", clone=False)
    with pytest.raises(ValueError, match="needs its `transcript` and its `license`"):
        OmniVoiceOptions(**omni_options, stock={"recording": recordings["other"]})
    with pytest.raises(SopreelError, match="OmniVoice does not speak xx-YY"):
        narrator.voice_plan("xx-YY", clone=False)


LONG = {
    "en": ("Before you start the forklift, walk around it and check the tyres, the forks and "
           "the chains, then sit down and fasten your seat belt because a tip-over can crush "
           "anyone standing beside the truck."),
    "zh-CN": ("开始操作叉车之前，请绕车一周检查轮胎、货叉和链条，然后坐下并系好安全带，"
              "因为翻车可能会压伤站在旁边的人。"),
    "th": "ก่อนขับรถยก ให้เดินรอบรถ ตรวจยาง งา และโซ่ แล้วนั่งลงคาดเข็มขัดนิรภัยทุกครั้ง",
    "vi": ("Trước khi lái xe nâng, hãy đi một vòng quanh xe và kiểm tra lốp, càng nâng và xích, "
           "rồi ngồi xuống thắt dây an toàn vì xe lật có thể đè người đứng bên cạnh."),
}


@pytest.mark.parametrize("language", list(LONG))
def test_a_sentence_longer_than_the_model_takes_is_spoken_in_parts(omni_options, language,
                                                                   tmp_path):
    """With `max_part_s: 2` the tiny model takes about two seconds of speech at a time: the
    sentence is spoken in parts joined by a pause, and stays one sentence on the clock."""
    short = OmniVoiceBackend(OmniVoiceOptions(**omni_options, max_part_s=2))
    sentence = LONG[language]
    assert not short.fits(sentence, language)
    whole = OmniVoiceBackend(OmniVoiceOptions(**omni_options))
    assert whole.fits(sentence, language)
    info = short.narrate(NarrationRequest(sentences=(sentence, "OK."), language=language),
                         tmp_path / "long.wav")
    assert [s["text"] for s in info["sentences"]] == [sentence, "OK."]
    samples, rate = read_wav(tmp_path / "long.wav")
    first = samples[: round(info["sentences"][0]["end"] * rate)]
    # The joins: runs of silence at least as long as the pause between parts.
    silent = np.abs(first) < 1e-6
    runs, run = 0, 0
    for quiet in silent:
        run = run + 1 if quiet else 0
        runs += run == round(0.1 * rate)
    assert runs >= 2


def test_speaker_similarity_uses_the_speaker_encoder(narrator, recordings):
    same = narrator.same_speaker_score(recordings["reference"], recordings["reference"])
    other = narrator.same_speaker_score(recordings["reference"], recordings["other"])
    assert same == pytest.approx(1.0, abs=1e-6) and other < same


def routed_profile(folder: Path, omni_options: dict, xtts: Path, **extra) -> Path:
    """OmniVoice for every language but English, which XTTS speaks."""
    narrate = {"backend": "omnivoice", **omni_options, "routes": [
        {"languages": ["en"], "backend": "coqui", "model": str(xtts),
         "speaker": "Stock Speaker", "device": "cpu"}], **extra}
    path = folder / "routed.yaml"
    path.write_text(yaml.safe_dump({**TINY_PROFILE, "narrate": narrate}, allow_unicode=True),
                    encoding="utf-8")
    return path


@pytest.mark.usefixtures("prefect_server")
def test_a_routed_build_clones_thai_and_vietnamese_with_omnivoice_and_english_with_xtts(
        tmp_path, recordings, omni_options, tiny_coqui_models):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings, languages=["en", "th", "vi"])
    script = write_script(tmp_path, base_script(voice="anna", music=None,
                                                languages=["en", "th", "vi"],
                                                translations={"th": TH, "vi": VI}))
    profile = routed_profile(tmp_path, omni_options, tiny_coqui_models["xtts"])
    out = tmp_path / "out"
    args = ["build", str(script), "--profile", str(profile), "--out", str(out),
            "--voices-dir", str(voices)]

    # Enrolled without a transcript: refused before any work, saying how to add one.
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "omnivoice narrator of th, vi clones from the reference recording and its " \
           "transcript" in result.output and "sopreel voices transcript anna" in result.output
    assert not (out / "test-sop" / "assets").exists()

    said = CliRunner().invoke(main, ["voices", "transcript", "anna", "--text", TRANSCRIPT,
                                     "--voices-dir", str(voices)])
    assert said.exit_code == 0, said.output
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    spoken = manifest["voice"]["spoken"]
    assert {lang: (s["narrator"], s["cloned"]) for lang, s in spoken.items()} == {
        "en": ("coqui", True), "th": ("omnivoice", True), "vi": ("omnivoice", True)}
    assert spoken["th"]["model"] == omni_options["model"]
    assert spoken["en"]["model"] == str(tiny_coqui_models["xtts"])
    assert spoken["th"]["license"] == "Apache-2.0"
    assert spoken["en"]["similarity_threshold"] == 0.6   # each narrator's own scale
    assert spoken["vi"]["similarity_threshold"] == 0.5
    for lang in ("th", "vi"):
        score = spoken[lang]["output_similarity"]
        assert -1 <= score <= 1
        warned = any(f"{lang}: the cloned narration sounds little like" in w
                     for w in manifest["warnings"])
        assert warned == (score < 0.5)
    assert manifest["profile"]["narrate"]["routes"]["en"]["backend"] == "coqui"
    entries = [json.loads(line) for line in
               (voices / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in entries[1:4]] == ["enrol", "consent", "transcript"]
    assert {e["language"] for e in entries if e["event"] == "synthesis"} == {"en", "th", "vi"}
    for lang, text in (("th", TH), ("vi", VI)):
        cues = parse_srt((out / "test-sop" / lang / "subtitles.srt").read_text(encoding="utf-8"))
        heard = "".join("".join(c["lines"]).replace(" ", "") for c in cues)
        for scene in text["scenes"].values():
            assert scene["narration"].replace(" ", "") in heard

    # A transcript edited outside sopreel stops the build: it no longer matches the ledger.
    (voices / "anna" / "reference.txt").write_text("Something else.", encoding="utf-8")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "reference transcript" in result.output


@pytest.mark.usefixtures("prefect_server")
def test_omnivoice_clones_no_language_the_person_did_not_consent_to(tmp_path, recordings,
                                                                    omni_options):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings, languages=["en", "th"], reference_text=TRANSCRIPT)
    script = write_script(tmp_path, base_script(voice="anna", music=None, languages=["th", "vi"],
                                                translations={"th": TH, "vi": VI}))
    profile = tmp_path / "omni.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "narrate": {"backend": "omnivoice",
                                                                   **omni_options}}),
                       encoding="utf-8")
    result = CliRunner().invoke(main, ["build", str(script), "--profile", str(profile),
                                       "--out", str(tmp_path / "out"), "--voices-dir",
                                       str(voices)])
    assert result.exit_code == 2
    assert "Voice 'anna' may not speak vi for training: consent covers en, th, not vi" \
        in result.output and "build only --lang th" in result.output
    assert not (tmp_path / "out" / "test-sop" / "assets").exists()


def test_a_voice_enrolled_with_its_transcript_shows_it(tmp_path, recordings):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings, reference_text=f"  {TRANSCRIPT}\n")
    shown = CliRunner().invoke(main, ["voices", "show", "anna", "--voices-dir", str(voices)])
    assert shown.exit_code == 0 and f"transcript:   {TRANSCRIPT}" in shown.output
    record = yaml.safe_load((voices / "anna" / "voice.yaml").read_text(encoding="utf-8"))
    assert len(record["reference"]["transcript_sha256"]) == 64
    enrol = json.loads((voices / "ledger.jsonl").read_text(encoding="utf-8").splitlines()[1])
    assert TRANSCRIPT not in json.dumps(enrol)   # the ledger keeps its hash only


def test_routes_in_a_profile_are_checked_with_file_and_line(tmp_path, omni_options):
    path = tmp_path / "bad.yaml"
    narrate = {"backend": "espeak", "routes": [
        {"languages": ["th"], "backend": "omnivoice", "stepz": 3},
        {"backend": "espeak"},
        {"languages": ["th"], "backend": "espeak"}]}
    path.write_text(yaml.safe_dump({**TINY_PROFILE, "narrate": narrate}, sort_keys=False),
                    encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    text = str(caught.value)
    assert str(path) in text
    assert "narrate.routes[0].stepz: unknown key; did you mean 'steps'" in text
    assert "narrate.routes[1]: expected" in text and "expected `languages: [...]`" in text
    assert "th is routed twice" in text
    good = tmp_path / "good.yaml"
    narrate = {"backend": "espeak", "routes": [{"languages": ["zh"], "backend": "omnivoice",
                                                **omni_options}]}
    good.write_text(yaml.safe_dump({**TINY_PROFILE, "narrate": narrate}), encoding="utf-8")
    profile = load_profile(good)
    assert profile.narrator("zh-TW").backend == "omnivoice"
    assert profile.narrator("en").backend == "espeak"


def test_inference_needs_no_web_ui_or_training_tools():
    """The lock leaves out omnivoice's gradio, webdataset and tensorboardx; loading and
    generating import none of them."""
    code = ("import sys, omnivoice, omnivoice.models.omnivoice; "
            "print(sorted(m for m in ('gradio', 'webdataset', 'tensorboardX') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.stdout.strip() == "[]"
    missing = subprocess.run([sys.executable, "-c", "import gradio"], capture_output=True)
    assert missing.returncode != 0
