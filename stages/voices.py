"""Enrolled voices and the consent gate.

A person's voice is personal data. A cloned voice may speak only while that person's recorded
consent covers the language, the use and the date, and only from the recordings they gave:
`voices/<id>/voice.yaml` pins `reference.wav` and `consent.wav` by sha256, and the gate re-reads
the record from disk before every synthesis and every reuse of cached narration, so a revocation
or an edited recording takes effect on the next build, not at some later enrolment.

Enrolment is atomic: the folder is assembled under a temporary name and renamed into place, so
a refused or interrupted enrolment leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from stages import languages, media
from stages.assets import file_sha256, write_text_atomic
from stages.errors import ConsentError, MediaError, VoiceFileError
from stages.yamlfile import load_yaml, validate

VOICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
USE = re.compile(r"[a-z][a-z0-9-]{0,31}")
REFERENCE_SECONDS = (3.0, 300.0)
CONSENT_MIN_SECONDS, CONSENT_MAX_SECONDS = 1.0, 600.0
DEFAULT_USE = "training"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class Recording(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    seconds: float = Field(gt=0)
    source_sha256: str | None = None   # the file the user supplied, before conversion to WAV


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recording: Recording
    statement: Text
    statement_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    organisation: str | None = None
    granted: date
    expires: date
    languages: list[str] = Field(min_length=1)
    uses: list[str] = Field(min_length=1)
    revoked: date | None = None
    revoked_reason: str | None = None
    terms_sha256: str = Field("", description="digest of the terms as enrolled")

    def terms_digest(self) -> str:
        """sha256 of what the person agreed to (everything but the revocation), so terms
        widened by hand (a language, a use, a later expiry) are noticed."""
        terms = self.model_dump(mode="json", exclude={"revoked", "revoked_reason",
                                                      "terms_sha256"})
        return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()


class VoiceRecord(BaseModel):
    """What `voice.yaml` holds: who speaks, from which recording, under which consent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    id: str
    name: Text
    reference: Recording
    consent: Consent

    def describe(self) -> dict:
        """The facts a manifest records: enough to audit the consent, no personal recordings."""
        c = self.consent
        return {"id": self.id, "consent_statement_sha256": c.statement_sha256,
                "consent_recording_sha256": c.recording.sha256,
                "reference_sha256": self.reference.sha256, "granted": c.granted.isoformat(),
                "expires": c.expires.isoformat(), "languages": c.languages, "uses": c.uses}


def today() -> date:
    """The date consent is checked against (a function, so tests can move the clock)."""
    return date.today()


# ---------------------------------------------------------------------------- reading records

def voice_folder(voices: Path, voice_id: str) -> Path:
    return voices / voice_id


def load_voice(voices: Path, voice_id: str) -> VoiceRecord:
    """Read `voices/<id>/voice.yaml`, with file:line errors for a hand-edited record."""
    folder = voice_folder(voices, voice_id)
    if not (folder / "voice.yaml").is_file():
        known = ", ".join(list_voice_ids(voices)) or "none"
        raise ConsentError(f"Voice '{voice_id}' is not enrolled in {voices} (enrolled: {known}). "
                           f"Enrol it with `sopreel voices add {voice_id} ...`.")
    record = validate(VoiceRecord, load_yaml(folder / "voice.yaml", VoiceFileError),
                      VoiceFileError)
    if record.id != voice_id:
        raise ConsentError(f"{folder / 'voice.yaml'}: id is '{record.id}' but the folder is "
                           f"'{voice_id}'; a record must live in the folder named by its id.")
    return record


def list_voice_ids(voices: Path) -> list[str]:
    if not voices.is_dir():
        return []
    return sorted(p.name for p in voices.iterdir() if (p / "voice.yaml").is_file())


# ----------------------------------------------------------------------------- the consent gate

def refusals(record: VoiceRecord, voices: Path, language: str | None = None,
             use: str | None = None, on: date | None = None) -> list[str]:
    """Every reason this voice may not speak `language` for `use` on `on`; empty when it may.

    With `language` or `use` left out, only the checks that do not depend on them run (dates,
    revocation, recordings), which is what `voices list` shows as a voice's status.
    """
    consent, on = record.consent, on or today()
    reasons = []
    if consent.revoked is not None and consent.revoked <= on:
        why = f" ({consent.revoked_reason})" if consent.revoked_reason else ""
        reasons.append(f"consent was revoked on {consent.revoked.isoformat()}{why}")
    if on > consent.expires:
        reasons.append(f"consent expired on {consent.expires.isoformat()} "
                       f"(today is {on.isoformat()})")
    if on < consent.granted:
        reasons.append(f"consent is granted only from {consent.granted.isoformat()}")
    if language is not None and language not in consent.languages:
        reasons.append(f"consent covers {', '.join(consent.languages)}, not {language}")
    if use is not None and use not in consent.uses:
        reasons.append(f"consent covers the use{'s' if len(consent.uses) > 1 else ''} "
                       f"{', '.join(consent.uses)}, not '{use}'")
    folder = voice_folder(voices, record.id)
    for what, recording in (("reference", record.reference), ("consent", consent.recording)):
        path = folder / recording.file
        if not path.is_file():
            reasons.append(f"the {what} recording {path} is missing")
        elif file_sha256(path) != recording.sha256:
            reasons.append(f"the {what} recording {path} has changed since enrolment "
                           f"(its sha256 no longer matches voice.yaml); enrol the voice again")
    if hashlib.sha256(consent.statement.encode("utf-8")).hexdigest() != consent.statement_sha256:
        reasons.append("the consent statement in voice.yaml has been edited since enrolment")
    elif consent.terms_digest() != consent.terms_sha256:
        reasons.append("the consent terms in voice.yaml (languages, uses or dates) have been "
                       "edited since enrolment; record new consent with `sopreel voices add`")
    return reasons


def check_consent(voices: Path, voice_id: str, language: str, use: str) -> VoiceRecord:
    """The gate: the record as it is on disk now, or `ConsentError` naming what failed."""
    record = load_voice(voices, voice_id)
    reasons = refusals(record, voices, language, use)
    if reasons:
        raise ConsentError(f"Voice '{voice_id}' may not speak {language} for {use}: "
                           + "; ".join(reasons) + ".")
    return record


def check_same_speaker(record: VoiceRecord, score: float, threshold: float) -> None:
    if score < threshold:
        raise ConsentError(
            f"Voice '{record.id}': the consent recording and the reference do not sound like the "
            f"same speaker (speaker similarity {score:.4f}, needs at least {threshold:g}). "
            "Consent must come from the person whose voice is cloned; re-record both and enrol "
            "again, or lower `speaker_similarity` in the profile if this is a false alarm.")


# ---------------------------------------------------------------------------------- enrolment

@dataclass(frozen=True)
class Enrolment:
    """What `sopreel voices add` was given."""

    voice_id: str
    name: str
    reference: Path
    consent: Path
    statement: str
    languages: list[str]
    uses: list[str]
    expires: str
    organisation: str | None = None


def enrol(voices: Path, request: Enrolment) -> VoiceRecord:
    """Check everything, copy the recordings, write voice.yaml; all or nothing."""
    problems: list[str] = []
    voice_id = request.voice_id
    if voice_id == "stock" or not VOICE_ID.fullmatch(voice_id):
        problems.append(f"ID: expected lowercase letters, digits and dashes (not 'stock'), "
                        f"got {voice_id!r}")
    elif (voices / voice_id).exists():
        problems.append(f"ID: voice '{voice_id}' is already enrolled in {voices}; revoke it "
                        "and enrol under a new id to record new consent")
    name, statement = request.name.strip(), request.statement.strip()
    if not name:
        problems.append("--name: expected the speaker's full name")
    if not statement:
        problems.append("--statement: expected the words of the recorded consent statement")
    elif name and _fold(name) not in _fold(statement):
        problems.append(f"--statement: expected a statement that names the speaker "
                        f"'{name}'; it does not")
    organisation = (request.organisation or "").strip() or None
    if statement and organisation and _fold(organisation) not in _fold(statement):
        problems.append(f"--statement: expected a statement that names the organisation "
                        f"'{organisation}'; it does not")
    codes = _languages(request.languages, problems)
    uses = _uses(request.uses, problems)
    granted = today()
    expires = _expiry(request.expires, granted, problems)
    reference_seconds = _audio_seconds(request.reference, "--reference", problems,
                                       REFERENCE_SECONDS)
    consent_seconds = _audio_seconds(request.consent, "--consent", problems,
                                     (CONSENT_MIN_SECONDS, CONSENT_MAX_SECONDS))
    if problems:
        raise ConsentError("Enrolment refused; nothing was written:\n"
                           + "\n".join(f"  {p}" for p in problems))
    assert expires is not None and reference_seconds and consent_seconds

    voices.mkdir(parents=True, exist_ok=True)
    with _staging(voices, voice_id) as staging:
        reference = _copy_recording(request.reference, staging / "reference.wav",
                                    reference_seconds)
        consent_recording = _copy_recording(request.consent, staging / "consent.wav",
                                            consent_seconds)
        consent = Consent(recording=consent_recording, statement=statement,
                          statement_sha256=hashlib.sha256(statement.encode()).hexdigest(),
                          organisation=organisation, granted=granted, expires=expires,
                          languages=codes, uses=uses)
        consent = consent.model_copy(update={"terms_sha256": consent.terms_digest()})
        record = VoiceRecord(id=voice_id, name=name, reference=reference, consent=consent)
        _write_record(staging, record)
    return record


def revoke(voices: Path, voice_id: str, reason: str | None = None) -> VoiceRecord:
    """Record today's revocation; every later build in this voice is refused."""
    record = load_voice(voices, voice_id)
    if record.consent.revoked is not None:
        raise ConsentError(f"Voice '{voice_id}' was already revoked on "
                           f"{record.consent.revoked.isoformat()}.")
    consent = record.consent.model_copy(update={"revoked": today(),
                                                "revoked_reason": reason or None})
    record = record.model_copy(update={"consent": consent})
    _write_record(voice_folder(voices, voice_id), record)
    return record


def builds_using(voice_id: str, outputs: Path) -> list[Path]:
    """Manifests under `outputs` whose build spoke in this voice."""
    found = []
    for manifest in sorted(outputs.glob("*/manifest.json")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(manifest.read_text(encoding="utf-8")).get("voice", {}).get(
                    "id") == voice_id:
                found.append(manifest)
    return found


def _write_record(folder: Path, record: VoiceRecord) -> None:
    header = ("# Written by `sopreel voices`. The recordings are pinned by sha256: editing them,\n"
              "# or this file's consent, makes every build in this voice stop.\n")
    body = yaml.safe_dump(record.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          width=100)
    write_text_atomic(folder / "voice.yaml", header + body)


@contextlib.contextmanager
def _staging(voices: Path, voice_id: str) -> Iterator[Path]:
    """A temporary folder beside the final one, renamed into place only on success."""
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{voice_id}-", dir=voices))
    try:
        yield staging
        os.rename(staging, voices / voice_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _languages(given: list[str], problems: list[str]) -> list[str]:
    codes = []
    for code in given:
        canonical = languages.canonical(code)
        if canonical is None:
            problems.append(f"--languages: '{code}' is not a language sopreel builds "
                            f"(known: {', '.join(languages.languages())})")
        elif canonical not in codes:
            codes.append(canonical)
    if not given:
        problems.append("--languages: expected at least one language, e.g. en,zh-TW")
    return codes


def _uses(given: list[str], problems: list[str]) -> list[str]:
    uses = []
    for use in given:
        if not USE.fullmatch(use):
            problems.append(f"--uses: expected lowercase words such as 'training', got {use!r}")
        elif use not in uses:
            uses.append(use)
    if not given:
        problems.append("--uses: expected at least one use, e.g. training")
    return uses


def _expiry(text: str, granted: date, problems: list[str]) -> date | None:
    try:
        expires = date.fromisoformat(text)
    except ValueError:
        problems.append(f"--expires: expected a date YYYY-MM-DD, got {text!r}")
        return None
    if expires < granted:
        problems.append(f"--expires: {expires.isoformat()} is in the past "
                        f"(today is {granted.isoformat()})")
    return expires


def _audio_seconds(path: Path, option: str, problems: list[str],
                   bounds: tuple[float, float]) -> float | None:
    """Decode the whole file (a header can lie); its length, or None with a problem noted."""
    if not path.is_file():
        problems.append(f"{option} {path}: file not found")
        return None
    low, high = bounds
    problem = media.check_supplied(path, media.RECORDING)
    if problem:
        problems.append(f"{option} {path}: {problem}")
        return None
    try:
        claimed = float(media.probe(path, media.RECORDING.formats)
                        .get("format", {}).get("duration") or 0)
        if claimed > high + 1:   # refuse an hour-long file without decoding it
            problems.append(f"{option} {path}: expected a recording of {_span(low)} to "
                            f"{_span(high)}, got {claimed:.0f} s")
            return None
        samples = _decode(path)
    except MediaError:
        problems.append(f"{option} {path}: expected an audio recording ffmpeg can read")
        return None
    seconds = len(samples) / media.SAMPLE_RATE
    if not low <= seconds <= high:
        problems.append(f"{option} {path}: expected a recording of {_span(low)} to "
                        f"{_span(high)}, got {seconds:.1f} s")
        return None
    if samples.size == 0 or float(np.max(np.abs(samples))) < 10 ** (-50 / 20):
        problems.append(f"{option} {path}: the recording is silent")
        return None
    return seconds


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 else f"{seconds:g} s"


def _decode(path: Path) -> np.ndarray:
    done = media.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
                      "-i", media.media_input(path), "-vn", "-ac", "1",
                      "-ar", str(media.SAMPLE_RATE), "-f", "f32le", "-"],
                     what=f"reading {path.name}", timeout=300)
    return np.frombuffer(done.stdout, dtype=np.float32)


def _copy_recording(source: Path, target: Path, seconds: float) -> Recording:
    """The recording as mono 16-bit WAV at its own sample rate, pinned by sha256."""
    media.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
               "-i", media.media_input(source), "-vn", "-ac", "1", "-c:a", "pcm_s16le",
               "-map_metadata", "-1", "-fflags", "+bitexact",
               "-flags:a", "+bitexact", str(target)], what=f"copying {source.name}", timeout=300)
    return Recording(file=target.name, sha256=file_sha256(target), seconds=round(seconds, 2),
                     source_sha256=file_sha256(source))

