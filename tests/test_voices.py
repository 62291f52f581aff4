"""Enrolment and the consent gate, exercised as a user would: `sopreel voices ...`, then
`sopreel validate` / `build` on a script that names the voice (draft profile, no weights)."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import STATEMENT, base_script, enrol_anna, speak, write_script

from flows.cli import main
from stages import voices
from stages.assets import file_sha256


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def add(voices_dir: Path, recordings: dict[str, Path], **changes: str) -> tuple[int, str]:
    options = {"--name": "Anna Chen", "--reference": recordings["reference"],
               "--consent": recordings["consent"], "--statement": STATEMENT,
               "--languages": "en,zh-TW", "--uses": "training", "--expires": "2099-12-31"}
    options.update(changes)
    args = [item for key, value in options.items() if value is not None
            for item in (key, value)]
    return cli("voices", "add", "anna", *args, "--voices-dir", voices_dir)


# ------------------------------------------------------------------------------ enrolment

def test_enrolment_copies_and_pins_the_recordings(tmp_path, recordings):
    code, output = add(tmp_path, recordings)
    assert code == 0, output
    folder = tmp_path / "anna"
    assert sorted(p.name for p in folder.iterdir()) == ["consent.wav", "reference.wav",
                                                        "voice.yaml"]
    record = yaml.safe_load((folder / "voice.yaml").read_text(encoding="utf-8"))
    assert record["reference"]["sha256"] == file_sha256(folder / "reference.wav")
    assert record["consent"]["recording"]["sha256"] == file_sha256(folder / "consent.wav")
    assert record["consent"]["languages"] == ["en", "zh-TW"]
    assert record["consent"]["uses"] == ["training"]
    assert record["consent"]["granted"] == datetime.date.today().isoformat()
    assert 3 < record["reference"]["seconds"] < 20
    code, listing = cli("voices", "list", "--voices-dir", tmp_path)
    assert code == 0 and "anna" in listing and "in force" in listing
    code, shown = cli("voices", "show", "anna", "--voices-dir", tmp_path)
    assert code == 0 and STATEMENT in shown and "2099-12-31" in shown


@pytest.mark.parametrize(("changes", "expected"), [
    ({"--consent": "missing.wav"}, "--consent missing.wav: file not found"),
    ({"--statement": "  "}, "--statement: expected the words of the recorded consent"),
    ({"--statement": "I allow Acme to use my voice."},
     "--statement: expected a statement that names the speaker 'Anna Chen'"),
    ({"--expires": "2020-01-01"}, "--expires: 2020-01-01 is in the past"),
    ({"--expires": "next year"}, "--expires: expected a date YYYY-MM-DD"),
    ({"--languages": "en,klingon"}, "--languages: 'klingon' is not a language"),
    ({"--uses": "Training!"}, "--uses: expected lowercase words"),
])
def test_enrolment_refusals(tmp_path, recordings, changes, expected):
    code, output = add(tmp_path / "voices", recordings, **changes)
    assert code == 2
    assert "Enrolment refused; nothing was written" in output
    assert expected in output
    assert not (tmp_path / "voices" / "anna").exists()
    assert not list((tmp_path / "voices").glob(".tmp-*"))


def test_enrolment_without_a_consent_option_is_refused(tmp_path, recordings):
    code, output = add(tmp_path, recordings, **{"--consent": None})
    assert code == 2 and "Missing option '--consent'" in output
    assert not (tmp_path / "anna").exists()


def test_enrolment_refuses_unusable_audio(tmp_path, recordings):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not a recording")
    short = speak(tmp_path / "short.wav", "Hi.")
    long = tmp_path / "long.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=200:d=301",
                    str(long)], check=True)
    silent = tmp_path / "silent.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=d=5",
                    str(silent)], check=True)
    for reference, expected in [
            (not_audio, f"{not_audio.name} is not a WAV, MP3, OGG, FLAC or M4A recording"),
            (short, "expected a recording of 3 s to 5 minutes, got"),
            (long, "expected a recording of 3 s to 5 minutes, got 301"),
            (silent, "the recording is silent")]:
        code, output = add(tmp_path / "voices", recordings, **{"--reference": reference})
        assert code == 2 and f"--reference {reference}: {expected}" in output, output
    assert not (tmp_path / "voices" / "anna").exists()


def test_an_enrolled_id_cannot_be_overwritten(tmp_path, recordings):
    assert add(tmp_path, recordings)[0] == 0
    code, output = add(tmp_path, recordings)
    assert code == 2 and "already enrolled" in output


# --------------------------------------------------------------------------- the consent gate

@pytest.fixture
def anna(tmp_path, recordings) -> Path:
    """A voices folder with Anna enrolled for en and zh-TW training videos."""
    folder = tmp_path / "voices"
    enrol_anna(folder, recordings)
    return folder


def validate(script: Path, voices_dir: Path, *args: str) -> tuple[int, str]:
    return cli("validate", script, "--voices-dir", voices_dir, *args)


def test_valid_consent_validates(tmp_path, anna):
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna)
    assert code == 0, output
    assert "en: voice 'anna'" in output


def test_wrong_language_is_refused_and_the_covered_ones_named(tmp_path, anna):
    script = write_script(tmp_path, base_script(voice="anna", languages=["en", "th"],
                                                translations={"th": {"scenes": {
                                                    "isolate": {"narration": "ปิดสวิตช์"},
                                                    "lock": {"narration": "ล็อกกุญแจ"}}}}))
    code, output = validate(script, anna)
    assert code == 2
    assert "Voice 'anna' may not speak th for training: consent covers en, zh-TW, not th" in output
    assert "build only --lang en" in output
    code, output = cli("build", script, "--voices-dir", anna, "--out", tmp_path / "out")
    assert code == 2 and "may not speak th" in output
    assert not (tmp_path / "out").exists()


def test_wrong_use_is_refused(tmp_path, anna):
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna, "--use", "marketing")
    assert code == 2 and "consent covers the use training, not 'marketing'" in output


def test_expired_consent_is_refused(tmp_path, anna, monkeypatch):
    script = write_script(tmp_path, base_script(voice="anna"))
    monkeypatch.setattr(voices, "today", lambda: datetime.date(2100, 1, 1))
    code, output = validate(script, anna)
    assert code == 2 and "consent expired on 2099-12-31 (today is 2100-01-01)" in output


def test_revoked_consent_is_refused_and_builds_listed(tmp_path, anna):
    out = tmp_path / "outputs" / "test-sop"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text('{"voice": {"id": "anna"}}')
    code, output = cli("voices", "revoke", "anna", "--reason", "left the company",
                       "--out", tmp_path / "outputs", "--voices-dir", anna)
    assert code == 0, output
    assert str(out) in output
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna)
    assert code == 2
    assert f"consent was revoked on {datetime.date.today()} (left the company)" in output
    code, listing = cli("voices", "list", "--voices-dir", anna)
    assert "revoked" in listing


@pytest.mark.parametrize("recording", ["reference.wav", "consent.wav"])
def test_a_recording_changed_after_enrolment_is_refused(tmp_path, anna, recordings, recording):
    (anna / "anna" / recording).write_bytes(recordings["other"].read_bytes())
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna)
    assert code == 2
    assert f"recording {anna / 'anna' / recording} has changed since enrolment" in output


def test_an_edited_consent_record_is_refused(tmp_path, anna):
    """voice.yaml is a view of the signed ledger: an edited statement or name is named.
    (tests/test_consent_ledger.py tampers with everything else.)"""
    path = anna / "anna" / "voice.yaml"
    record = yaml.safe_load(path.read_text(encoding="utf-8"))
    record["consent"]["statement"] = STATEMENT.replace("training videos", "any videos")
    record["name"] = "Anna Lee"
    path.write_text(yaml.safe_dump(record), encoding="utf-8")
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna)
    assert code == 2 and "disagrees with the signed consent ledger (name differs from the " \
        "name enrolled; consent.statement differs from the statement recorded)" in output


def test_a_broken_voice_record_names_its_line(tmp_path, anna):
    path = anna / "anna" / "voice.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("expires: '2099-12-31'",
                                                             "expires: someday"))
    script = write_script(tmp_path, base_script(voice="anna"))
    code, output = validate(script, anna)
    assert code == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if "expires" in text)
    assert f"{path}:{line}: consent.expires" in output


def test_voices_dir_from_the_environment(tmp_path, anna, monkeypatch):
    monkeypatch.setenv("SOPREEL_VOICES_DIR", str(anna))
    code, output = cli("voices", "list")
    assert code == 0 and "anna" in output
