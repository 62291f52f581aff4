"""The consent ledger: every consent event, signed by the organisation and chained.

`voices/ledger.jsonl` holds one JSON entry per line, appended and never rewritten. Each entry
carries its position (`seq`), the sha256 of the entry before it (`prev`) and an Ed25519
signature by the organisation key. `voices/trust.yaml`, which the organisation commits, pins
that key's public half and the ledger's id. So an entry edited in a text editor fails its
signature, a deleted or reordered entry breaks the chain, a ledger copied from another folder
has another id, and a ledger signed again with another key fails against the pinned key.

Removing entries from the end leaves a valid chain, so two other records catch it: each
voice.yaml cites the last ledger entry about its voice, and every machine that appends keeps a
witness of the newest entry it wrote (`$XDG_STATE_HOME/sopreel/ledger-heads.json`), outside
voices/, as the key is.

The private key never sits in voices/: it is a file (`SOPREEL_CONSENT_KEY`, default
`~/.config/sopreel/consent-key.pem`, mode 0600) or, with `SOPREEL_CONSENT_KEY=
prefect-secret:NAME`, a Prefect Secret block (registered by `flows/`; stages import no Prefect).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stages.assets import write_text_atomic
from stages.errors import ConsentError

LEDGER_FILE, TRUST_FILE = "ledger.jsonl", "trust.yaml"
GENESIS_PREV = "0" * 64
SIGNED_AS = b"sopreel consent ledger v1\n"   # a signature made here means nothing elsewhere
KEY_VARIABLE = "SOPREEL_CONSENT_KEY"


# ---------------------------------------------------------------------------- the signing key

class KeySource(Protocol):
    """Where the organisation's private key is kept."""

    description: str

    def load(self) -> bytes | None:
        """The key as PEM, or None when none has been created there yet."""

    def create(self, pem: bytes) -> None:
        """Keep a new key; never overwrite one."""


class KeyFile:
    """A PEM file readable only by its owner, like an SSH key."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.description = str(self.path)

    def load(self) -> bytes | None:
        if not self.path.is_file():
            return None
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConsentError(f"The organisation key {self.path} can be read by others (mode "
                               f"{mode:o}); run `chmod 600 {self.path}`.")
        return self.path.read_bytes()

    def create(self, pem: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)


KEY_SOURCES: dict[str, Callable[[str], KeySource]] = {"file": KeyFile}


def register_key_source(scheme: str, factory: Callable[[str], KeySource]) -> None:
    """`SOPREEL_CONSENT_KEY=<scheme>:<name>` keeps the key there (flows/ adds prefect-secret)."""
    KEY_SOURCES[scheme] = factory


def key_source() -> KeySource:
    """The key named by $SOPREEL_CONSENT_KEY: `prefect-secret:NAME`, or a file path."""
    setting = os.environ.get(KEY_VARIABLE) or str(_config_home() / "sopreel" / "consent-key.pem")
    scheme, _, name = setting.partition(":")
    if name and scheme in KEY_SOURCES and scheme != "file":
        return KEY_SOURCES[scheme](name)
    if name and "/" not in scheme and len(scheme) > 1 and scheme not in KEY_SOURCES:
        raise ConsentError(f"{KEY_VARIABLE}={setting}: '{scheme}:' is not a place sopreel keeps "
                           f"keys (known: a file path, or {', '.join(sorted(KEY_SOURCES))}:NAME)")
    return KeyFile(setting.removeprefix("file:"))


def signing_key(voices: Path, create: bool = False) -> Ed25519PrivateKey:
    """The organisation key, checked against the one voices/trust.yaml pins."""
    source = key_source()
    if isinstance(source, KeyFile) and source.path.resolve().is_relative_to(voices.resolve()):
        raise ConsentError(f"The organisation key {source.path} is inside the voices folder "
                           f"{voices}; keep it outside (set {KEY_VARIABLE} to another path).")
    pem = source.load()
    if pem is None:
        if not create:
            raise ConsentError(
                f"The organisation's consent key is not at {source.description}: it signs every "
                f"consent event and every synthesis in a cloned voice. Set {KEY_VARIABLE} to "
                "where it is kept, or create one with `sopreel voices init-key`.")
        key = Ed25519PrivateKey.generate()
        source.create(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        return key
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ConsentError(f"{source.description}: expected an unencrypted Ed25519 private key "
                           f"in PEM form ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConsentError(f"{source.description}: expected an Ed25519 key, got "
                           f"{type(key).__name__}")
    trust = read_trust(voices)
    if trust and public_text(key.public_key()) != trust.public_key:
        raise ConsentError(
            f"The organisation key at {source.description} ({fingerprint(key.public_key())}) is "
            f"not the key {voices / TRUST_FILE} pins ({trust.fingerprint}): either the key or "
            "the pinned key was replaced. Find the right key; if it is lost, see "
            "docs/voices.md (a new key starts a new ledger).")
    return key


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def fingerprint(key: Ed25519PublicKey | str) -> str:
    raw = base64.b64decode(key) if isinstance(key, str) else base64.b64decode(public_text(key))
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


# ------------------------------------------------------------------------- trust.yaml, the pin

@dataclass(frozen=True)
class Trust:
    ledger_id: str
    public_key: str
    created: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


def read_trust(voices: Path) -> Trust | None:
    path = voices / TRUST_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Trust(str(data["ledger"]), str(data["public_key"]), str(data["created"]))
    except (yaml.YAMLError, TypeError, KeyError) as error:
        raise ConsentError(f"{path}: expected `ledger`, `public_key` and `created` as "
                           f"`sopreel voices init-key` writes them ({error})") from None


def start_ledger(voices: Path, key: Ed25519PrivateKey, organisation: str | None) -> Entry:
    """A new ledger: its first entry names the key, and trust.yaml pins both."""
    if (voices / LEDGER_FILE).exists() or (voices / TRUST_FILE).exists():
        raise ConsentError(f"{voices} already has a consent ledger.")
    voices.mkdir(parents=True, exist_ok=True)
    ledger_id = str(uuid.uuid4())
    public = public_text(key.public_key())
    first = _signed({"seq": 0, "prev": GENESIS_PREV, "event": "ledger", "ledger": ledger_id,
                     "key": public, "organisation": organisation, **_stamp()}, key)
    _write_line(voices / LEDGER_FILE, first)
    write_text_atomic(voices / TRUST_FILE, (
        "# The organisation key that signs this folder's consent ledger (ledger.jsonl).\n"
        "# Commit this file with voices/: a ledger signed with any other key is refused.\n"
        + yaml.safe_dump({"ledger": ledger_id, "public_key": public,
                          "fingerprint": fingerprint(public),
                          "created": datetime.now(UTC).date().isoformat()}, sort_keys=False)))
    entry = Entry.parse(first, 1)
    _witness(ledger_id, entry)
    return entry


# ------------------------------------------------------------------------------- the entries

@dataclass(frozen=True)
class Entry:
    seq: int
    sha256: str
    body: dict[str, Any]
    line: int

    @classmethod
    def parse(cls, text: str, line: int) -> Entry:
        body = json.loads(text)
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            raise ValueError("not a ledger entry")
        return cls(body["seq"], hashlib.sha256(_canonical(body).encode()).hexdigest(), body,
                   line)

    @property
    def event(self) -> str:
        return str(self.body.get("event"))

    @property
    def voice(self) -> str | None:
        return self.body.get("voice")

    def cite(self) -> dict[str, Any]:
        """How a voice.yaml or a manifest points at this entry."""
        return {"entry": self.seq, "sha256": self.sha256}


@dataclass(frozen=True)
class Ledger:
    """A verified ledger: every signature checked, the chain whole, the pins matched."""

    folder: Path
    trust: Trust
    entries: tuple[Entry, ...]

    @property
    def head(self) -> Entry:
        return self.entries[-1]

    def about(self, voice_id: str) -> list[Entry]:
        return [entry for entry in self.entries if entry.voice == voice_id]

    def cites(self, citation: dict[str, Any] | None) -> Entry | None:
        """The entry a citation names, when the ledger holds exactly that entry."""
        if not citation:
            return None
        seq = citation.get("entry")
        if isinstance(seq, int) and 0 <= seq < len(self.entries):
            entry = self.entries[seq]
            return entry if entry.sha256 == citation.get("sha256") else None
        return None


_verified: dict[tuple[Path, int, int, int], Ledger] = {}
_lock = threading.Lock()


def open_ledger(voices: Path, _appending: bool = False) -> Ledger:
    """The folder's ledger, verified end to end, or `ConsentError` saying what is wrong.

    Verification is remembered while the file is unchanged (size, time, inode)."""
    path = voices / LEDGER_FILE
    trust = read_trust(voices)
    if trust is None:
        if path.exists():
            raise ConsentError(f"{path} has no {TRUST_FILE} beside it to say which key signs "
                               "it; restore voices/trust.yaml from version control.")
        raise ConsentError(f"{voices} has no consent ledger: run `sopreel voices init-key` "
                           "(and enrol voices again: a voice enrolled without the ledger has "
                           "no signed consent record).")
    if not path.is_file():
        raise ConsentError(f"{path} is missing: {voices / TRUST_FILE} says this folder keeps a "
                           f"consent ledger (id {trust.ledger_id}). Restore it from version "
                           "control or a backup; without it no voice in the folder may speak.")
    # The witness first: whatever it names was written to the ledger before it, so the file
    # read next holds it even while another process appends.
    seen = _witnessed().get(trust.ledger_id)
    # The file lock before the threads' lock, as `append` takes them: the other order lets a
    # reader and an appender in two threads (two narrations at once) wait on each other.
    with contextlib.nullcontext() if _appending else _locked(path, fcntl.LOCK_SH):
        stat = path.stat()   # under the lock, so the memo describes the bytes read
        memo = (path.resolve(), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with _lock:
            ledger = _verified.get(memo)
        if ledger is None or ledger.trust != trust:
            ledger = _verify(voices, trust, path.read_bytes())   # never half an appended line
            with _lock:
                _verified[memo] = ledger
    _check_witness(ledger, seen)
    _check_local_key(ledger)
    return ledger


def _check_local_key(ledger: Ledger) -> None:
    """A key file on this machine that is not the pinned key: the pin (and perhaps the whole
    ledger, signed again) was replaced."""
    source = key_source()
    if isinstance(source, KeyFile) and source.path.is_file():
        signing_key(ledger.folder)


def append(voices: Path, key: Ed25519PrivateKey, event: str, **fields: Any) -> Entry:
    """Add one signed entry at the end, under a lock: two builds appending at once both land."""
    path = voices / LEDGER_FILE
    with _locked(path):
        ledger = open_ledger(voices, _appending=True)
        head = ledger.head
        text = _signed({"seq": head.seq + 1, "prev": head.sha256, "event": event, **fields,
                        **_stamp()}, key)
        _write_line(path, text)
        entry = Entry.parse(text, head.line + 1)
        with _lock:
            stat = path.stat()
            _verified[(path.resolve(), stat.st_size, stat.st_mtime_ns, stat.st_ino)] = Ledger(
                voices, ledger.trust, (*ledger.entries, entry))
        _witness(ledger.trust.ledger_id, entry)
    return entry


def _verify(voices: Path, trust: Trust, data: bytes) -> Ledger:
    path = voices / LEDGER_FILE
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(trust.public_key))
    entries: list[Entry] = []
    text = data.decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):
        raise ConsentError(f"{path}: the last line is incomplete (a write was cut off, or the "
                           "file was edited); restore it from version control or a backup.")
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path} line {number}"
        try:
            entry = Entry.parse(line, number)
        except ValueError:
            raise ConsentError(f"{where}: expected one signed ledger entry (a JSON object), "
                               "got something else: the file was edited.") from None
        expected_seq = len(entries)
        prev = entries[-1].sha256 if entries else GENESIS_PREV
        if entry.seq != expected_seq:
            raise ConsentError(f"{where}: entry #{entry.seq} where #{expected_seq} belongs: "
                               "entries were removed, reordered or inserted.")
        if entry.body.get("prev") != prev:
            raise ConsentError(f"{where}: entry #{entry.seq} does not follow the entry before it "
                               "(its `prev` hash differs): the ledger was edited.")
        _check_signature(entry, public, trust, where)
        entries.append(entry)
    if not entries:
        raise ConsentError(f"{path} is empty; restore it from version control or a backup.")
    first = entries[0].body
    if first.get("event") != "ledger" or first.get("ledger") != trust.ledger_id:
        raise ConsentError(f"{path} is ledger {first.get('ledger')} but {voices / TRUST_FILE} "
                           f"pins ledger {trust.ledger_id}: it was copied from another voices "
                           "folder, or trust.yaml was.")
    return Ledger(voices, trust, tuple(entries))


def _check_signature(entry: Entry, public: Ed25519PublicKey, trust: Trust, where: str) -> None:
    body = {k: v for k, v in entry.body.items() if k != "sig"}
    try:
        public.verify(base64.b64decode(entry.body.get("sig", "")),
                      SIGNED_AS + _canonical(body).encode())
    except (InvalidSignature, ValueError, TypeError):
        about = f" ({entry.event} of voice '{entry.voice}')" if entry.voice else ""
        raise ConsentError(f"{where}: entry #{entry.seq}{about} is not signed by the organisation "
                           f"key pinned in trust.yaml ({trust.fingerprint}): it was edited, or "
                           "signed again with another key.") from None


def _signed(body: dict[str, Any], key: Ed25519PrivateKey) -> str:
    signature = key.sign(SIGNED_AS + _canonical(body).encode())
    return _canonical({**body, "sig": base64.b64encode(signature).decode()})


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _stamp() -> dict[str, str]:
    with contextlib.suppress(Exception):
        return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": getpass.getuser()}
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "by": str(os.getuid())}


def _write_line(path: Path, text: str) -> None:
    """One write of a whole line, flushed to disk before the lock is let go."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (text + "\n").encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _locked(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[None]:
    """A lock every process (and thread) appending to `path` takes (exclusive), and readers
    take shared; a reader that cannot create the lock file (a read-only copy) reads without."""
    lock = path.with_name(f".{path.name}.lock")
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if mode == fcntl.LOCK_EX:
            raise
        yield
        return
    try:
        fcntl.flock(descriptor, mode)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


# ------------------------------------------------------------- the witness of the newest entry

def witness_file() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "sopreel" / "ledger-heads.json"


def _witnessed() -> dict[str, dict[str, Any]]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(witness_file().read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def _witness(ledger_id: str, entry: Entry) -> None:
    """Remember the newest entry this machine wrote, outside voices/."""
    path = witness_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        heads = _witnessed()
        if heads.get(ledger_id, {}).get("entry", -1) < entry.seq:
            heads[ledger_id] = entry.cite()
            write_text_atomic(path, json.dumps(heads, indent=1, sort_keys=True))


def _check_witness(ledger: Ledger, seen: dict[str, Any] | None) -> None:
    if seen and ledger.cites(seen) is None:
        ends = ledger.head.seq
        what = (f"now ends at entry #{ends}: entries were removed from its end"
                if ends < seen["entry"] else f"holds another entry #{seen['entry']}: it was "
                "rewritten")
        raise ConsentError(
            f"{ledger.folder / LEDGER_FILE} {what}. This machine wrote entry #{seen['entry']} "
            f"(sha256 {seen['sha256'][:16]}...), as {witness_file()} records. Restore the "
            "ledger from version control or a backup.")


def retire(voices: Path) -> list[Path]:
    """Set a ledger and its pin aside, kept under new names, when its key is lost: a new key
    starts a new ledger, and every voice must be enrolled again."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    moved = []
    for name in (LEDGER_FILE, TRUST_FILE):
        path = voices / name
        if path.exists():
            moved.append(path.rename(path.with_name(f"retired-{stamp}-{name}")))
    if not moved:
        raise ConsentError(f"{voices} has no consent ledger to retire.")
    return moved
