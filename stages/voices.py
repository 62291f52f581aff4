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
import dataclasses
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
from typing import Annotated, Any

import numpy as np
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from stages import languages, ledger, media
from stages.assets import TEMP_PREFIX, atomic_path, file_sha256, write_text_atomic
from stages.errors import ConsentError, MediaError, SopreelError, VoiceFileError
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
    # What is said in it (`reference.txt` beside it): cloning models such as OmniVoice need it.
    transcript_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


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


class Citation(BaseModel):
    """Which ledger entry a record stands on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry: int
    sha256: str


class LedgerCitations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str                 # the ledger (voices/trust.yaml pins it)
    consent: Citation       # the consent (or terms) entry the voice speaks under
    latest: Citation        # the newest entry about this voice: a later one must not vanish


class VoiceRecord(BaseModel):
    """What `voice.yaml` holds: a readable view of the voice's ledger entries, plus the name
    and statement (personal data the ledger keeps only as hashes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 2
    id: str
    name: Text
    reference: Recording
    consent: Consent
    ledger: LedgerCitations
    # A clone a hosted service keeps for this person (service -> its voice id), linked with
    # `sopreel voices link`: it speaks under this consent, gated like a local clone.
    services: dict[str, str] = Field(default_factory=dict)

    def describe(self) -> dict:
        """The facts a manifest records: enough to audit the consent, no personal recordings."""
        c = self.consent
        return {"id": self.id, "consent_statement_sha256": c.statement_sha256,
                "consent_recording_sha256": c.recording.sha256,
                "reference_sha256": self.reference.sha256, "granted": c.granted.isoformat(),
                "expires": c.expires.isoformat(), "languages": c.languages, "uses": c.uses,
                "ledger": {"id": self.ledger.id, "authorised_by": self.ledger.consent.model_dump()}}


@dataclass(frozen=True)
class VoiceState:
    """A voice as its ledger entries say it is: the truth voice.yaml must agree with."""

    id: str
    name_sha256: str
    reference: Recording
    consent: Consent               # statement text left empty: the ledger keeps its hash
    authorised_by: ledger.Entry
    latest: ledger.Entry
    erased: date | None
    consent_recordings: frozenset[str]   # every consent recording this voice ever gave
    services: dict[str, str] = dataclasses.field(default_factory=dict)

    def view(self, name: str, statement: str, ledger_id: str) -> VoiceRecord:
        return VoiceRecord(id=self.id, name=name, reference=self.reference,
                           services=dict(self.services),
                           consent=self.consent.model_copy(update={"statement": statement}),
                           ledger=LedgerCitations(id=ledger_id,
                                                  consent=Citation(**self.authorised_by.cite()),
                                                  latest=Citation(**self.latest.cite())))


STATE_EVENTS = ("enrol", "consent", "terms", "transcript", "service", "revoke", "erase")
TRANSCRIPT_FILE = "reference.txt"


def voice_state(book: ledger.Ledger, voice_id: str) -> VoiceState | None:
    """Replay the voice's entries; None when the ledger never enrolled it."""
    state: dict[str, Any] = {}
    recordings: set[str] = set()
    for entry in book.about(voice_id):
        body = entry.body
        if entry.event == "enrol":
            state = {"name_sha256": body["name_sha256"], "reference": body["reference"],
                     "erased": None, "enrolled": entry}
        elif entry.event in ("consent", "terms"):
            terms = {k: body[k] for k in ("granted", "expires", "languages", "uses")}
            recorded = ({k: body[k] for k in ("recording", "statement_sha256", "organisation")}
                        if "recording" in body else {})
            fresh = ({"revoked": None, "revoked_reason": None} if entry.event == "consent"
                     else {})   # only new consent follows a revocation; terms never undo one
            state["consent"] = {**state.get("consent", {}), **terms, **recorded, **fresh}
            state["authorised_by"] = entry
            recordings.update([body["recording"]["sha256"]] if recorded else [])
        elif entry.event == "transcript":
            state["reference"] = {**state["reference"],
                                  "transcript_sha256": body["transcript_sha256"]}
        elif entry.event == "service":   # a link, or with no voice id an unlink
            services = dict(state.get("services", {}))
            services.pop(body["service"], None)
            if body.get("service_voice"):
                services[body["service"]] = body["service_voice"]
            state["services"] = services
        elif entry.event == "revoke":
            state["consent"] = {**state["consent"], "revoked": body["on"],
                                "revoked_reason": body.get("reason")}
        elif entry.event == "erase":
            state["erased"] = date.fromisoformat(body["on"])
        if entry.event in STATE_EVENTS:
            state["latest"] = entry
    if "consent" not in state:
        return None
    consent = Consent(statement="-", **state["consent"])
    return VoiceState(voice_id, state["name_sha256"], Recording(**state["reference"]), consent,
                      state["authorised_by"], state["latest"], state["erased"],
                      frozenset(recordings), state.get("services", {}))


def today() -> date:
    """The date consent is checked against (a function, so tests can move the clock)."""
    return date.today()


# ---------------------------------------------------------------------------- reading records

def voice_folder(voices: Path, voice_id: str) -> Path:
    return voices / voice_id


def load_voice(voices: Path, voice_id: str) -> VoiceRecord:
    """`voices/<id>/voice.yaml`, checked against the ledger: the view must match the truth."""
    book = ledger.open_ledger(voices)
    state = voice_state(book, voice_id)
    path = voice_folder(voices, voice_id) / "voice.yaml"
    if not path.is_file():
        known = ", ".join(list_voice_ids(voices)) or "none"
        if state is not None and state.erased:
            raise ConsentError(f"Voice '{voice_id}' was erased on {state.erased.isoformat()} "
                               f"(ledger entry #{state.latest.seq}); it cannot speak again "
                               "unless the person records new consent.")
        if state is not None:
            raise ConsentError(f"{path} is missing, but the consent ledger enrolled '{voice_id}' "
                               f"(entry #{state.latest.seq}): restore the voice folder from "
                               "version control or a backup.")
        raise ConsentError(f"Voice '{voice_id}' is not enrolled in {voices} (enrolled: {known}). "
                           f"Enrol it with `sopreel voices add {voice_id} ...`.")
    record = _read_record(path)
    if record.id != voice_id:
        raise ConsentError(f"{path}: id is '{record.id}' but the folder is '{voice_id}'; a "
                           "record must live in the folder named by its id.")
    if record.ledger.id != book.trust.ledger_id:
        raise ConsentError(f"{path} was recorded in ledger {record.ledger.id}, but {voices} "
                           f"keeps ledger {book.trust.ledger_id} (a new key starts a new "
                           f"ledger): move the folder aside and enrol '{voice_id}' again.")
    if state is None:
        raise ConsentError(f"{path}: the consent ledger has no enrolment of '{voice_id}': the "
                           "record was not written by `sopreel voices add` in this folder.")
    if book.cites(record.ledger.latest.model_dump()) is None:
        raise ConsentError(f"{path} cites ledger entry #{record.ledger.latest.entry}, which "
                           f"{book.folder / ledger.LEDGER_FILE} does not hold (it ends at "
                           f"#{book.head.seq}): entries were removed from the ledger.")
    differences = _differences(record, state, book.trust.ledger_id)
    if differences:
        raise ConsentError(f"{path} disagrees with the signed consent ledger ("
                           + "; ".join(differences) + "). The ledger is the record: restore "
                           "voice.yaml, or change consent with `sopreel voices` commands.")
    return record


def _read_record(path: Path) -> VoiceRecord:
    return validate(VoiceRecord, load_yaml(path, VoiceFileError), VoiceFileError)


def _differences(record: VoiceRecord, state: VoiceState, ledger_id: str) -> list[str]:
    """Every field where the readable view and the ledger part, named as in voice.yaml."""
    found = []
    if _sha256(record.name) != state.name_sha256:
        found.append("name differs from the name enrolled")
    if _sha256(record.consent.statement) != state.consent.statement_sha256:
        found.append("consent.statement differs from the statement recorded")
    truth = _flat(state.view(record.name, record.consent.statement, ledger_id)
                  .model_dump(mode="json"))
    shown = _flat(record.model_dump(mode="json"))
    for field in sorted(truth.keys() | shown.keys()):
        if truth.get(field) != shown.get(field):
            found.append(f"{field} is {_show(shown.get(field))}, the ledger says "
                         f"{_show(truth.get(field))}")
    return found


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def not_enrolled(voices: Path, voice_id: str) -> str:
    """Why a script cannot name this voice: never enrolled, or erased (the ledger says when)."""
    with contextlib.suppress(ConsentError):
        state = voice_state(ledger.open_ledger(voices), voice_id)
        if state is not None and state.erased:
            return (f"voice {voice_id!r} was erased on {state.erased.isoformat()} (consent "
                    f"ledger entry #{state.latest.seq}); use 'stock', or another voice")
    return (f"voice {voice_id!r} is not enrolled in {voices}; enrol it with `sopreel voices add "
            f"{voice_id} ...`, or use 'stock'")


def list_voice_ids(voices: Path) -> list[str]:
    if not voices.is_dir():
        return []
    return sorted(p.name for p in voices.iterdir() if (p / "voice.yaml").is_file())


# ----------------------------------------------------------------------------- the consent gate

def refusals(record: VoiceRecord, voices: Path, language: str | None = None,
             use: str | None = None, on: date | None = None) -> list[str]:
    """Every reason this voice may not speak `language` for `use` on `on`; empty when it may.

    `record` has been checked against the ledger (`load_voice`). With `language` or `use`
    left out, only the checks that do not depend on them run (dates, revocation, recordings),
    which is what `voices list` shows as a voice's status.
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
                           f"(its sha256 is not the one the ledger recorded); enrol the voice "
                           "again")
    if record.reference.transcript_sha256 is not None:
        transcript = folder / TRANSCRIPT_FILE
        if not transcript.is_file():
            reasons.append(f"the reference transcript {transcript} is missing")
        elif _sha256(transcript.read_text(encoding="utf-8")) \
                != record.reference.transcript_sha256:
            reasons.append(f"the reference transcript {transcript} has changed since it was "
                           "recorded; set it with `sopreel voices transcript`")
    return reasons


def reference_text(voices: Path, record: VoiceRecord) -> str | None:
    """What is said in the voice's reference recording, as the ledger recorded it (the gate,
    `refusals`, has checked the file); None when no transcript was recorded."""
    path = voice_folder(voices, record.id) / TRANSCRIPT_FILE
    if record.reference.transcript_sha256 is None or not path.is_file():
        return None
    return path.read_text(encoding="utf-8")


def set_transcript(voices: Path, voice_id: str, text: str) -> VoiceRecord:
    """Record what is said in the reference recording (for a voice enrolled without it, or to
    correct it): signed into the ledger, kept in `reference.txt`."""
    record = load_voice(voices, voice_id)
    text = _transcript(text, "--text")
    if record.consent.revoked is not None:
        raise ConsentError(f"Voice '{voice_id}' was revoked on "
                           f"{record.consent.revoked.isoformat()}; it will not speak again.")
    folder = voice_folder(voices, voice_id)
    ledger.append(voices, organisation_key(voices), "transcript", voice=voice_id,
                  transcript_sha256=_sha256(text))
    write_text_atomic(folder / TRANSCRIPT_FILE, text)
    updated = _view(voices, voice_id, record.name, record.consent.statement)
    _write_record(folder, updated)
    return updated


SERVICE_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def link_service_voice(voices: Path, voice_id: str, service: str,
                       service_voice: str | None) -> VoiceRecord:
    """Link the clone a hosted service keeps of this person (`None` unlinks it): signed into
    the ledger, so a narrator of that service may speak it under this voice's consent."""
    record = load_voice(voices, voice_id)
    if service_voice is not None and not SERVICE_VOICE_ID.fullmatch(service_voice):
        raise SopreelError(f"--voice-id {service_voice!r}: expected the service's voice id "
                           "(letters, digits, - and _).")
    if service_voice is not None and record.consent.revoked is not None:
        raise ConsentError(f"Voice '{voice_id}' was revoked on "
                           f"{record.consent.revoked.isoformat()}; it will not speak again.")
    if service_voice is None and service not in record.services:
        raise SopreelError(f"Voice '{voice_id}' has no {service} voice linked.")
    ledger.append(voices, organisation_key(voices), "service", voice=voice_id,
                  service=service, service_voice=service_voice)
    updated = _view(voices, voice_id, record.name, record.consent.statement)
    _write_record(voice_folder(voices, voice_id), updated)
    return updated


def _transcript(text: str, option: str, problems: list[str] | None = None) -> str:
    """A transcript as stored: stripped, one line, not empty."""
    cleaned = " ".join(text.split())
    if not cleaned:
        message = f"{option}: expected the words spoken in the reference recording"
        if problems is None:
            raise SopreelError(message)
        problems.append(message)
    return cleaned


def check_consent(voices: Path, voice_id: str, language: str, use: str) -> VoiceRecord:
    """The gate: the record as it is on disk now, agreeing with the verified ledger, or
    `ConsentError` naming what failed."""
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
    reference_text: str | None = None   # what is said in the reference recording


def enrol(voices: Path, request: Enrolment) -> VoiceRecord:
    """Check everything, copy the recordings, sign the enrolment and the consent into the
    ledger, write voice.yaml; all or nothing. The first enrolment in a folder creates the
    organisation key (when there is none) and the ledger."""
    problems: list[str] = []
    voice_id = request.voice_id
    before = None
    if voice_id == "stock" or not VOICE_ID.fullmatch(voice_id):
        problems.append(f"ID: expected lowercase letters, digits and dashes (not 'stock'), "
                        f"got {voice_id!r}")
    else:
        before = _enrolled_before(voices, voice_id, problems)
    name, statement = request.name.strip(), request.statement.strip()
    if not name:
        problems.append("--name: expected the speaker's full name")
    organisation = (request.organisation or "").strip() or None
    _check_statement(statement, name, organisation, problems)
    codes = _languages(request.languages, problems)
    uses = _uses(request.uses, problems)
    granted = today()
    expires = _expiry(request.expires, granted, problems)
    reference_seconds = _audio_seconds(request.reference, "--reference", problems,
                                       REFERENCE_SECONDS)
    consent_seconds = _audio_seconds(request.consent, "--consent", problems,
                                     (CONSENT_MIN_SECONDS, CONSENT_MAX_SECONDS))
    if before is not None and request.consent.is_file() \
            and file_sha256(request.consent) in before.consent_recordings:
        problems.append("--consent: this recording was already given for this voice; coming "
                        "back after a revocation needs a new consent recording")
    transcript = (None if request.reference_text is None
                  else _transcript(request.reference_text, "--reference-text", problems))
    _refuse("Enrolment", problems)
    assert expires is not None and reference_seconds and consent_seconds

    key = organisation_key(voices, organisation)
    with _staging(voices, voice_id) as staging:
        reference = _copy_recording(request.reference, staging / "reference.wav",
                                    reference_seconds)
        if transcript is not None:
            write_text_atomic(staging / TRANSCRIPT_FILE, transcript)
            reference = reference.model_copy(update={"transcript_sha256": _sha256(transcript)})
        recording = _copy_recording(request.consent, staging / "consent.wav", consent_seconds)
        ledger.append(voices, key, "enrol", voice=voice_id, name_sha256=_sha256(name),
                      reference=reference.model_dump(mode="json"))
        ledger.append(voices, key, "consent", voice=voice_id,
                              recording=recording.model_dump(mode="json"),
                              statement_sha256=_sha256(statement), organisation=organisation,
                              granted=granted.isoformat(), expires=expires.isoformat(),
                              languages=codes, uses=uses)
        record = _view(voices, voice_id, name, statement)
        _write_record(staging, record)
    return record


def organisation_key(voices: Path, organisation: str | None = None) -> Ed25519PrivateKey:
    """The key that signs this folder's ledger; with no ledger yet, the key (made when there
    is none) starts one."""
    if ledger.read_trust(voices) is None and not (voices / ledger.LEDGER_FILE).exists():
        key = ledger.signing_key(voices, create=True)
        ledger.start_ledger(voices, key, organisation)
        return key
    ledger.open_ledger(voices)
    return ledger.signing_key(voices)


def _enrolled_before(voices: Path, voice_id: str, problems: list[str]) -> VoiceState | None:
    """The voice's earlier enrolment, when it may enrol again (revoked or erased); problems
    noted when the id is taken."""
    book = ledger.open_ledger(voices) if (voices / ledger.TRUST_FILE).exists() else None
    state = voice_state(book, voice_id) if book else None
    folder = voice_folder(voices, voice_id)
    if state is not None and state.consent.revoked is None and state.erased is None:
        problems.append(f"ID: voice '{voice_id}' is already enrolled in {voices} and its "
                        "consent is in force; change its terms with `sopreel voices amend`")
        return None
    elif state is None and folder.exists():
        problems.append(f"ID: {folder} exists but the consent ledger never enrolled "
                        f"'{voice_id}' (it was enrolled before the ledger, or under a retired "
                        "key): move the folder aside and enrol again")
    return state


def _check_statement(statement: str, name: str, organisation: str | None,
                     problems: list[str]) -> None:
    if not statement:
        problems.append("--statement: expected the words of the recorded consent statement")
    elif name and _fold(name) not in _fold(statement):
        problems.append(f"--statement: expected a statement that names the speaker "
                        f"'{name}'; it does not")
    if statement and organisation and _fold(organisation) not in _fold(statement):
        problems.append(f"--statement: expected a statement that names the organisation "
                        f"'{organisation}'; it does not")


def _refuse(what: str, problems: list[str]) -> None:
    if problems:
        raise ConsentError(f"{what} refused; nothing was written:\n"
                           + "\n".join(f"  {p}" for p in problems))


def _view(voices: Path, voice_id: str, name: str, statement: str) -> VoiceRecord:
    """voice.yaml as the ledger now says it is."""
    book = ledger.open_ledger(voices)
    state = voice_state(book, voice_id)
    assert state is not None
    return state.view(name, statement, book.trust.ledger_id)


@dataclass(frozen=True)
class Amendment:
    """What `sopreel voices amend` was given: new terms, and a new consent recording when
    they are wider than what the person agreed to."""

    voice_id: str
    languages: list[str] | None = None
    uses: list[str] | None = None
    expires: str | None = None
    consent: Path | None = None
    statement: str | None = None


def amend(voices: Path, request: Amendment) -> VoiceRecord:
    """Change a voice's terms. Narrowing (fewer languages or uses, an earlier expiry) needs
    nothing more; widening needs the person's new recorded consent."""
    record = load_voice(voices, request.voice_id)
    old = record.consent
    if old.revoked is not None:
        raise ConsentError(f"Voice '{record.id}' was revoked on {old.revoked.isoformat()}; a "
                           "revocation is final. Coming back is a new consent with a new "
                           f"recording: `sopreel voices add {record.id} ...`.")
    problems: list[str] = []
    codes = _languages(request.languages, problems) if request.languages else old.languages
    uses = _uses(request.uses, problems) if request.uses else old.uses
    expires = _expiry(request.expires, today(), problems) if request.expires else old.expires
    wider = ([f"languages {', '.join(sorted(set(codes) - set(old.languages)))}"]
             if set(codes) - set(old.languages) else []) \
        + ([f"uses {', '.join(sorted(set(uses) - set(old.uses)))}"]
           if set(uses) - set(old.uses) else []) \
        + ([f"expiry {expires.isoformat()}"] if expires and expires > old.expires else [])
    recorded: dict[str, Any] = {}
    seconds = None
    if request.consent is not None or request.statement is not None:
        statement = (request.statement or "").strip()
        _check_statement(statement, record.name, old.organisation, problems)
        if request.consent is None:
            problems.append("--consent: expected the recording of the new statement")
        else:
            seconds = _audio_seconds(request.consent, "--consent", problems,
                                     (CONSENT_MIN_SECONDS, CONSENT_MAX_SECONDS))
        recorded = {"statement": statement}
    elif wider:
        problems.append(f"widening the terms ({'; '.join(wider)}) needs the person's new "
                        "recorded consent: --consent RECORDING --statement TEXT")
    _refuse("Amendment", problems)
    assert expires is not None
    key = organisation_key(voices)
    folder = voice_folder(voices, record.id)
    statement = recorded.get("statement", old.statement)
    if seconds is not None and request.consent is not None:
        target = folder / f"consent-{ledger.open_ledger(voices).head.seq + 1}.wav"
        with atomic_path(target) as temp:
            recording = _copy_recording(request.consent, temp, seconds)
        recorded = {"recording": recording.model_copy(update={"file": target.name})
                    .model_dump(mode="json"), "statement_sha256": _sha256(statement),
                    "organisation": old.organisation}
    granted = today() if recorded else old.granted
    ledger.append(voices, key, "terms", voice=record.id, granted=granted.isoformat(),
                  expires=expires.isoformat(), languages=codes, uses=uses, **recorded)
    updated = _view(voices, record.id, record.name, statement)
    _write_record(folder, updated)
    return updated


def revoke(voices: Path, voice_id: str, reason: str | None = None) -> VoiceRecord:
    """Record today's revocation in the ledger; every later build in this voice is refused,
    and nothing can undo it."""
    record = load_voice(voices, voice_id)
    if record.consent.revoked is not None:
        raise ConsentError(f"Voice '{voice_id}' was already revoked on "
                           f"{record.consent.revoked.isoformat()}.")
    ledger.append(voices, organisation_key(voices), "revoke", voice=voice_id,
                  on=today().isoformat(), reason=reason or None)
    updated = _view(voices, voice_id, record.name, record.consent.statement)
    _write_record(voice_folder(voices, voice_id), updated)
    return updated


def builds_using(voice_id: str, outputs: Path) -> list[Path]:
    """Manifests under `outputs` whose build spoke in this voice."""
    found = []
    for manifest in sorted(outputs.glob("*/manifest.json")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(manifest.read_text(encoding="utf-8")).get("voice", {}).get(
                    "id") == voice_id:
                found.append(manifest)
    return found


# ------------------------------------------------------------- what the voice was used for

def require_signing(voices: Path) -> None:
    """Before a build clones a voice: every synthesis will be signed into the ledger, so the
    organisation key must be here (and be the pinned one) before any work starts."""
    ledger.signing_key(voices)


def record_synthesis(voices: Path, record: VoiceRecord, language: str, use: str,
                     script_id: str, scene_id: str, narration_sha256: str) -> ledger.Entry:
    """One narration made in a cloned voice, citing the consent that allowed it."""
    return ledger.append(voices, ledger.signing_key(voices), "synthesis", voice=record.id,
                         language=language, use=use, script=script_id, scene=scene_id,
                         narration_sha256=narration_sha256, on=today().isoformat(),
                         authorised_by=record.ledger.consent.model_dump())


def record_videos(voices: Path, record: VoiceRecord, use: str, script_id: str,
                  videos: dict[str, Path]) -> None:
    """The videos (per language) a cloned voice went into, once each: what an erasure lists
    and an audit reports."""
    known = {(e.body.get("video"), e.body.get("video_sha256"))
             for e in ledger.open_ledger(voices).about(record.id) if e.event == "video"}
    for language, video in videos.items():
        where, digest = str(video.resolve()), file_sha256(video)
        if (where, digest) not in known:
            ledger.append(voices, ledger.signing_key(voices), "video", voice=record.id,
                          language=language, use=use, script=script_id, video=where,
                          video_sha256=digest, on=today().isoformat(),
                          authorised_by=record.ledger.consent.model_dump())


@dataclass(frozen=True)
class Erasure:
    recordings: list[str]        # sha256 of each recording deleted
    narrations: list[Path]       # cached narrations (and sound mixes) deleted
    videos: list[Path]           # videos that still hold the voice: rebuild or withdraw them
    entry: ledger.Entry


def erase(voices: Path, voice_id: str, outputs: list[Path]) -> Erasure:
    """Revoke (if not yet), delete the recordings and every cached narration in the voice
    under `outputs`, and record the erasure; the ledger keeps hashes, never audio."""
    book = ledger.open_ledger(voices)
    state = voice_state(book, voice_id)
    if state is None:
        raise ConsentError(f"Voice '{voice_id}' was never enrolled in {voices}.")
    if state.erased:
        raise ConsentError(f"Voice '{voice_id}' was already erased on "
                           f"{state.erased.isoformat()} (ledger entry #{state.latest.seq}).")
    key = organisation_key(voices)
    if state.consent.revoked is None:
        revoke(voices, voice_id, "erasure requested")
        book = ledger.open_ledger(voices)
    spoken = {e.body["narration_sha256"] for e in book.about(voice_id) if e.event == "synthesis"}
    deleted = _delete_narrations(spoken, outputs)
    videos = sorted({Path(e.body["video"]) for e in book.about(voice_id) if e.event == "video"
                     and Path(e.body["video"]).is_file()
                     and file_sha256(Path(e.body["video"])) == e.body["video_sha256"]})
    recordings = sorted({state.reference.sha256, *state.consent_recordings})
    shutil.rmtree(voice_folder(voices, voice_id), ignore_errors=True)
    entry = ledger.append(voices, key, "erase", voice=voice_id, on=today().isoformat(),
                          recordings=recordings, narrations=sorted(spoken),
                          deleted=len(deleted), videos=[str(v) for v in videos])
    return Erasure(recordings, deleted, videos, entry)


def _delete_narrations(spoken: set[str], outputs: list[Path]) -> list[Path]:
    """Cached narrations whose sha256 the ledger recorded for the voice, and the sound mixes
    made from them."""
    deleted: list[Path] = []
    for root in outputs:
        for meta_path in sorted(root.glob("**/assets/narrate/*.wav.json")):
            meta = _meta(meta_path)
            if meta.get("sha256") in spoken:
                deleted += _delete_asset(meta_path)
        names = {p.name for p in deleted}
        for meta_path in sorted(root.glob("**/assets/sound/*.json")):
            if names & set(_meta(meta_path).get("info", {}).get("narrations", [])):
                deleted += _delete_asset(meta_path)
    return deleted


def _meta(path: Path) -> dict[str, Any]:
    if path.name.startswith(TEMP_PREFIX):
        return {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    return {}


def _delete_asset(meta_path: Path) -> list[Path]:
    media_path = meta_path.with_name(meta_path.name.removesuffix(".json"))
    meta_path.unlink(missing_ok=True)   # the asset stops being complete first
    media_path.unlink(missing_ok=True)
    return [media_path]


def audit(voices: Path, voice_id: str | None = None) -> dict[str, Any]:
    """The verified ledger, and per voice its history, its syntheses and the videos it went
    into: what a data-subject request needs. Raises `ConsentError` when verification fails."""
    book = ledger.open_ledger(voices)
    ids = sorted({e.voice for e in book.entries if e.voice})
    if voice_id is not None:
        if voice_id not in ids:
            raise ConsentError(f"Voice '{voice_id}' has no entries in the consent ledger of "
                               f"{voices} (voices: {', '.join(ids) or 'none'}).")
        ids = [voice_id]
    report: dict[str, Any] = {
        "ledger": {"file": str(book.folder / ledger.LEDGER_FILE), "id": book.trust.ledger_id,
                   "key": book.trust.fingerprint, "entries": len(book.entries),
                   "head": book.head.cite(), "verified": True},
        "voices": {}}
    for each in ids:
        state = voice_state(book, each)
        entries = book.about(each)
        report["voices"][each] = {
            "status": _status(state),
            "history": [_event(e) for e in entries if e.event in STATE_EVENTS],
            "syntheses": [_event(e) for e in entries if e.event == "synthesis"],
            "videos": [_event(e) for e in entries if e.event == "video"]}
    return report


def _status(state: VoiceState | None) -> str:
    if state is None:
        return "never consented"
    if state.erased:
        return f"erased on {state.erased.isoformat()}"
    consent = state.consent
    if consent.revoked:
        return f"revoked on {consent.revoked.isoformat()}"
    if today() > consent.expires:
        return f"expired on {consent.expires.isoformat()}"
    return (f"in force until {consent.expires.isoformat()} ({', '.join(consent.languages)}; "
            f"{', '.join(consent.uses)})")


def _event(entry: ledger.Entry) -> dict[str, Any]:
    hidden = {"seq", "prev", "sig", "voice", "event", "at", "by"}
    return {"entry": entry.seq, "event": entry.event, "at": entry.body.get("at"),
            "by": entry.body.get("by"),
            **{k: v for k, v in entry.body.items() if k not in hidden}}


def _write_record(folder: Path, record: VoiceRecord) -> None:
    header = ("# Written by `sopreel voices`: a readable view of this voice's entries in the\n"
              "# signed consent ledger (../ledger.jsonl). Editing it, or the recordings, makes\n"
              "# every build in this voice stop; change consent with `sopreel voices`.\n")
    body = yaml.safe_dump(record.model_dump(mode="json"), sort_keys=False, allow_unicode=True,
                          width=100)
    write_text_atomic(folder / "voice.yaml", header + body)


@contextlib.contextmanager
def _staging(voices: Path, voice_id: str) -> Iterator[Path]:
    """A temporary folder beside the final one, renamed into place only on success (over the
    folder of an earlier, revoked enrolment)."""
    voices.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{voice_id}-", dir=voices))
    final = voices / voice_id
    retired = voices / f".tmp-{voice_id}-retired-{os.getpid()}"
    try:
        yield staging
        if final.exists():
            os.rename(final, retired)
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


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

