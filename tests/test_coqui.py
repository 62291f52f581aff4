"""The coqui narrator on tiny random-weight XTTS and VITS models, loaded through the same code
path as the real ones, and the consent gate around it in real builds."""

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
from conftest import TINY_PROFILE, base_script, enrol_anna, ffprobe, parse_srt, write_script

from flows.cli import main
from stages.errors import ConsentError, SopreelError
from stages.media import read_wav
from stages.narrate import NarrationRequest
from stages.narrate.coqui import CoquiBackend, CoquiOptions
from stages.plan import make_narration, plan_build
from stages.profile import load_profile
from stages.registry import LoadedBackends
from stages.script import load_script

TH = {"scenes": {"isolate": {"narration": "ปิดสวิตช์หลัก"}, "lock": {"narration": "ล็อกกุญแจ"}}}
ZH = {"title": "上鎖", "scenes": {"isolate": {"narration": "關閉主電源。限速25 km/h。"},
                                   "lock": {"narration": "掛上你的鎖。"}}}


@pytest.fixture(scope="module")
def narrator_options(tiny_coqui_models) -> dict:
    return {"backend": "coqui", "model": str(tiny_coqui_models["xtts"]),
            "speaker": "Stock Speaker", "device": "cpu",
            "languages": {"th": {"model": str(tiny_coqui_models["vits"]),
                                 "license": "CC-BY-NC-4.0"}}}


@pytest.fixture(scope="module")
def narrator(narrator_options) -> CoquiBackend:
    options = {k: v for k, v in narrator_options.items() if k != "backend"}
    backend = CoquiBackend(CoquiOptions(**options))
    backend.load()
    yield backend
    backend.close()


def studio_profile(folder: Path, narrate: dict) -> Path:
    path = folder / "tiny-studio.yaml"
    path.write_text(yaml.safe_dump({**TINY_PROFILE, "narrate": narrate}), encoding="utf-8")
    return path


def test_xtts_clones_from_the_reference_sentence_by_sentence(narrator, recordings, tmp_path):
    request = NarrationRequest(sentences=("Check the forks.", "Max. 25 km/h."), language="en",
                               voice="anna", reference=recordings["reference"])
    info = narrator.narrate(request, tmp_path / "a.wav")
    samples, rate = read_wav(tmp_path / "a.wav")
    assert rate == 48000 and info["cloned"] is True
    assert abs(len(samples) / rate - info["seconds"]) < 0.01
    spans = info["sentences"]
    assert [s["text"] for s in spans] == ["Check the forks.", "Max. 25 km/h."]
    assert 0 == spans[0]["start"] < spans[0]["end"] < spans[1]["start"] < spans[1]["end"]
    again = narrator.narrate(request, tmp_path / "b.wav")
    assert again["sentences"] == spans
    assert np.array_equal(read_wav(tmp_path / "b.wav")[0], samples)   # seeded: reproducible


LONG_EN = ("Before you start the forklift, walk around it and check the tyres, the forks and "
           "the chains, then sit down and fasten your seat belt because a tip-over can crush "
           "anyone standing beside the truck, and never carry a passenger on the forks or the "
           "load, whatever the supervisor says about the schedule and however short the trip "
           "across the yard to the loading dock may be.")
LONG_ZH = ("開始操作堆高機之前，請繞車一周檢查輪胎、貨叉和鏈條，然後坐下並繫好安全帶，"
           "因為翻車可能會壓傷站在旁邊的人；無論主管怎麼說、路程多短，都不要讓任何人站在貨叉"
           "或貨物上，也不要在坡道上轉彎。")


@pytest.mark.parametrize(("language", "sentence"), [("en", LONG_EN), ("zh-TW", LONG_ZH)])
def test_a_sentence_past_the_models_text_limit_is_spoken_in_parts(narrator, recordings,
                                                                   tmp_path, language,
                                                                   sentence):
    """XTTS refuses text past gpt_max_text_tokens (100 in the tiny model) and degrades past
    its characters per language (250 English, 82 Chinese): sopreel speaks the sentence in
    parts that fit, one sentence on the clock and in the subtitles."""
    assert not narrator.fits(sentence, language)
    request = NarrationRequest(sentences=(sentence, "Stop."), language=language, voice="anna",
                               reference=recordings["reference"])
    info = narrator.narrate(request, tmp_path / "long.wav")
    assert [s["text"] for s in info["sentences"]] == [sentence, "Stop."]
    samples, rate = read_wav(tmp_path / "long.wav")
    assert abs(len(samples) / rate - info["seconds"]) < 0.01 and info["cloned"]


def test_stock_voice_is_a_built_in_speaker_and_thai_takes_its_route(narrator, tmp_path):
    info = narrator.narrate(NarrationRequest(sentences=("Hello.",), language="en"),
                            tmp_path / "en.wav")
    assert info["cloned"] is False and "Stock Speaker" in info["voice"]
    info = narrator.narrate(NarrationRequest(sentences=("ปิดสวิตช์หลัก",), language="th"),
                            tmp_path / "th.wav")
    assert info["cloned"] is False and info["license"] == "CC-BY-NC-4.0"
    assert info["seconds"] > 0


def test_a_language_without_a_route_is_refused_before_any_work(narrator_options):
    options = {k: v for k, v in narrator_options.items() if k not in ("backend", "languages")}
    backend = CoquiBackend(CoquiOptions(**options))
    with pytest.raises(SopreelError, match=r"cannot speak vi: .* speaks en, zh-cn. Add a route"):
        backend.voice_plan("vi", clone=True)
    assert backend.voice_plan("zh-TW", clone=True).clones


def test_speaker_similarity_uses_xtts_speaker_encoder(narrator, recordings):
    same = narrator.same_speaker_score(recordings["reference"], recordings["reference"])
    other = narrator.same_speaker_score(recordings["reference"], recordings["other"])
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other < same


@pytest.mark.usefixtures("prefect_server")
def test_cloned_build_records_consent_then_revocation_stops_reuse(
        tmp_path, recordings, narrator_options):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings, languages=["en", "zh-TW", "th"])
    script = write_script(tmp_path, base_script(voice="anna", music=None,
                                                languages=["en", "zh-TW", "th"],
                                                translations={"zh-TW": ZH, "th": TH}))
    profile = studio_profile(tmp_path, narrator_options)
    out = tmp_path / "out"
    args = ["build", str(script), "--profile", str(profile), "--out", str(out),
            "--voices-dir", str(voices)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    voice = manifest["voice"]
    assert voice["id"] == "anna" and voice["use"] == "training"
    assert voice["consent_statement_sha256"] == yaml.safe_load(
        (voices / "anna" / "voice.yaml").read_text())["consent"]["statement_sha256"]
    assert voice["expires"] == "2099-12-31" and voice["granted"]
    assert 0 < voice["similarity"]["score"] <= 1 and voice["similarity"]["threshold"] == 0.6
    assert voice["spoken"]["en"]["cloned"] and voice["spoken"]["zh-TW"]["cloned"]
    assert voice["spoken"]["en"]["license"] == "Coqui Public Model License 1.0.0"
    assert not voice["spoken"]["th"]["cloned"]
    # How much each cloned language sounds like the enrolled reference; a warning under the
    # threshold (random tiny weights: whatever the score, the warning follows it).
    for lang in ("en", "zh-TW"):
        score = voice["spoken"][lang]["output_similarity"]
        assert -1 <= score <= 1
        warned = any(f"{lang}: the cloned narration sounds little like" in w
                     for w in manifest["warnings"])
        assert warned == (score < 0.6)
    assert voice["spoken"]["th"]["output_similarity"] is None
    assert any("th: spoken by the stock voice" in w for w in manifest["warnings"])
    assert "cloned voice 'anna'" in manifest["disclosure"]
    for lang in ("en", "zh-TW", "th"):
        video = out / "test-sop" / lang / "video.mp4"
        duration = float(ffprobe(video)["format"]["duration"])
        cues = parse_srt((video.parent / "subtitles.srt").read_text(encoding="utf-8"))
        assert cues and cues[-1]["end"] <= duration + 0.05

    # Every synthesis in the cloned voice, and every video it went into, is in the ledger,
    # citing the consent entry the manifest cites.
    record = yaml.safe_load((voices / "anna" / "voice.yaml").read_text(encoding="utf-8"))
    assert voice["ledger"]["authorised_by"] == record["ledger"]["consent"]
    entries = ledger_entries(voices)
    synthesised = [e for e in entries if e["event"] == "synthesis"]
    assert {(e["language"], e["scene"]) for e in synthesised} >= {
        (lang, scene) for lang in ("en", "zh-TW") for scene in ("isolate", "lock")}
    assert not [e for e in synthesised if e["language"] == "th"]   # stock voice there
    assert all(e["authorised_by"] == record["ledger"]["consent"] and e["use"] == "training"
               and e["script"] == "test-sop" for e in synthesised)
    narrations = {json.loads(m.read_text())["sha256"]: m for m in
                  (out / "test-sop" / "assets" / "narrate").glob("*.wav.json")}
    assert {e["narration_sha256"] for e in synthesised} <= narrations.keys()
    videos = {e["language"]: e for e in entries if e["event"] == "video"}
    assert videos.keys() == {"en", "zh-TW"}
    assert videos["en"]["video"] == str((out / "test-sop" / "en" / "video.mp4").resolve())
    from stages import voices as voice_records

    voice_records.record_videos(voices, voice_records.load_voice(voices, "anna"), "training",
                                "test-sop", {"en": out / "test-sop" / "en" / "video.mp4"})
    assert len(ledger_entries(voices)) == len(entries)   # a video is recorded once

    # Revoked after a successful build: the next build stops before any synthesis, and
    # `revoke` names the build that used the voice.
    revoked = CliRunner().invoke(main, ["voices", "revoke", "anna", "--voices-dir", str(voices),
                                        "--out", str(out)])
    assert revoked.exit_code == 0 and str(out / "test-sop") in revoked.output
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "consent was revoked" in result.output

    # Erased (a data-subject request): recordings and cached narrations in the voice go, the
    # videos that still hold it are listed, the ledger keeps only hashes.
    erased = CliRunner().invoke(main, ["voices", "erase", "anna", "--voices-dir", str(voices),
                                       "--outputs", str(out)])
    assert erased.exit_code == 0, erased.output
    assert str((out / "test-sop" / "zh-TW" / "video.mp4").resolve()) in erased.output
    assert not (voices / "anna").exists()
    left = {json.loads(m.read_text())["sha256"] for m in
            (out / "test-sop" / "assets" / "narrate").glob("*.wav.json")}
    assert not left & {e["narration_sha256"] for e in synthesised}
    assert left   # Thai, spoken by the stock voice, stays
    mixes = [json.loads(m.read_text())["info"] for m in
             (out / "test-sop" / "assets" / "sound").glob("*.json")]
    assert len(mixes) == 1   # only the Thai mix holds no clone
    audit = CliRunner().invoke(main, ["voices", "audit", "anna", "--json", "--voices-dir",
                                      str(voices)])
    history = json.loads(audit.output)["voices"]["anna"]
    assert [e["event"] for e in history["history"]] == ["enrol", "consent", "revoke", "erase"]
    assert history["status"].startswith("erased on ") and len(history["videos"]) == 2
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "was erased on" in result.output


def ledger_entries(voices: Path) -> list[dict]:
    return [json.loads(line) for line in
            (voices / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]


def test_cached_narration_is_not_reused_after_revocation(tmp_path, recordings,
                                                        narrator_options):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings)
    script = write_script(tmp_path, base_script(voice="anna", music=None))
    plan = plan_build(load_script(script, voices=voices),
                      load_profile(str(studio_profile(tmp_path, narrator_options))),
                      tmp_path / "out", voices_folder=voices)
    backends = LoadedBackends()
    first = make_narration(plan, plan.scenes[0], "en", backends)
    assert not first.cached and first.info["cloned"]
    assert make_narration(plan, plan.scenes[0], "en", backends).cached
    from stages.voices import revoke

    revoke(voices, "anna")
    with pytest.raises(ConsentError, match="consent was revoked"):
        make_narration(plan, plan.scenes[0], "en", backends)
    assert first.path.is_file()   # the gate refused reuse; it did not need the file gone
    backends.release("narrate")


def test_consent_in_another_voice_is_refused(tmp_path, recordings, narrator_options):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings, consent=recordings["other"])
    script = write_script(tmp_path, base_script(voice="anna", music=None))
    strict = {**narrator_options, "speaker_similarity": 0.9999}
    plan = plan_build(load_script(script, voices=voices),
                      load_profile(str(studio_profile(tmp_path, strict))),
                      tmp_path / "out", voices_folder=voices)
    backends = LoadedBackends()
    with pytest.raises(ConsentError, match=r"do not sound like the same speaker \(speaker "
                                           r"similarity 0\.\d+, needs at least 0\.9999\)"):
        make_narration(plan, plan.scenes[0], "en", backends)
    assert not (tmp_path / "out" / "test-sop" / "assets" / "narrate").exists()
    backends.release("narrate")


@pytest.mark.usefixtures("prefect_server")
def test_an_error_inside_the_model_library_is_one_line_and_a_log(tmp_path, narrator_options,
                                                                  recordings):
    """An XTTS whose text limit (2 tokens) no piece of a sentence fits, not even one letter:
    coqui asserts deep inside. The user's terminal shows one line naming the stage, scene,
    language and backend with coqui's own words; the traceback is in the log file the line
    names, and in the run log."""
    from prefect.settings import get_current_settings
    from tiny_coqui import build_xtts

    narrator_options = {**narrator_options, "model": str(build_xtts(
        tmp_path / "xtts-2", recordings["reference"], max_text_tokens=2))}
    script = write_script(tmp_path, base_script(music=None, scenes=[
        {"id": "forks", "narration": "Check the forks.", "visual": "a forklift"}]))
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items()   # a user's terminal, no test logs
           if key != "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"}
    env["PREFECT_API_URL"] = get_current_settings().api.url
    done = subprocess.run([str(Path(sys.executable).with_name("sopreel")), "build", str(script),
                           "--profile", str(studio_profile(tmp_path, narrator_options)),
                           "--out", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, done.stderr
    assert error[0].startswith("Error: narrate (scene 'forks', language en, backend coqui) "
                               "failed: AssertionError raised in coqui-tts (TTS.")
    assert "XTTS can only generate text with a maximum of" in error[0]
    log = Path(error[0].rpartition("Full traceback: ")[2])
    assert log.parent == out / "test-sop" / "logs"
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "AssertionError" in text
    assert not (out / "test-sop" / "manifest.json").exists()
