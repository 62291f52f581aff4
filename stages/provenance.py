"""Content Credentials (C2PA): signing a finished video, and checking one.

When a signing certificate and key are configured (a profile's `provenance:` block, or
SOPREEL_C2PA_CERT and SOPREEL_C2PA_KEY), each video is signed with a C2PA manifest through
c2pa-python as the very last step, after every ffmpeg pass: a remux would drop the manifest.
The manifest says the video is `compositeWithTrainedAlgorithmicMedia` (or `compositeSynthetic`)
made by sopreel, and lists every generated ingredient (images, clips, narrations, music, the
spoken notice) with a `c2pa.placed` action carrying its own IPTC digital source type.

`verify` reads a video's credentials back: whether the signature and the content hash hold
(a one-byte change breaks them), whether the signer chains to a trust anchor you gave, and
what the manifest claims. C2PA refuses self-signed signing certificates; use one issued by a
CA (your organisation's, or a C2PA-conformant one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.disclosure import source_type_uri
from stages.errors import SopreelError

ENV_CERT, ENV_KEY, ENV_TRUST = "SOPREEL_C2PA_CERT", "SOPREEL_C2PA_KEY", "SOPREEL_C2PA_TRUST"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
        ".mp4": "video/mp4", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac"}


class ProvenanceOptions(BaseModel):
    """A profile's `provenance:` block: who signs the videos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    certificate: str | None = Field(None, description=(
        "PEM file: the signing certificate, then its intermediates (not the root)"))
    key: str | None = Field(None, description="PEM file: the certificate's private key")
    algorithm: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = "es256"
    timestamp_url: str | None = Field(None, description="an RFC 3161 time-stamp authority")

    @model_validator(mode="after")
    def _both_or_neither(self) -> ProvenanceOptions:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("give both `certificate` and `key`, or neither")
        return self


@dataclass(frozen=True)
class Signing:
    """A configured signer: certificate chain and key files, checked before any work."""

    certificate: Path
    key: Path
    algorithm: str = "es256"
    timestamp_url: str | None = None

    def identity(self) -> dict[str, Any]:
        """What a signed video depends on: a new certificate means signing again."""
        digest = hashlib.sha256(self.certificate.read_bytes()).hexdigest()
        return {"certificate_sha256": digest, "algorithm": self.algorithm,
                "timestamp_url": self.timestamp_url}


def signing_from(options: ProvenanceOptions, base: Path) -> Signing | None:
    """The profile's signer (paths relative to the profile's folder), else the environment's,
    else None (videos are not signed)."""
    if options.certificate and options.key:
        cert, key = options.certificate, options.key
    elif os.environ.get(ENV_CERT) or os.environ.get(ENV_KEY):
        cert, key = os.environ.get(ENV_CERT, ""), os.environ.get(ENV_KEY, "")
        if not cert or not key:
            raise SopreelError(f"Set both {ENV_CERT} and {ENV_KEY} to sign videos, or neither.")
    else:
        return None
    signing = Signing(certificate=(base / Path(cert).expanduser()).absolute(),
                      key=(base / Path(key).expanduser()).absolute(),
                      algorithm=options.algorithm, timestamp_url=options.timestamp_url)
    check_signing(signing)
    return signing


def check_signing(signing: Signing) -> None:
    """Refuse, before any work, a signer C2PA would refuse: unreadable files, a self-signed
    or expired certificate, a key that is not the certificate's, or the wrong algorithm."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        chain = x509.load_pem_x509_certificates(signing.certificate.read_bytes())
        key = serialization.load_pem_private_key(signing.key.read_bytes(), password=None)
    except OSError as exc:
        raise SopreelError(f"Signing: cannot read {exc.filename}: {exc.strerror}.") from None
    except (ValueError, TypeError) as exc:
        raise SopreelError(f"Signing: {signing.certificate.name} / {signing.key.name} must be "
                           f"PEM files (certificate chain; unencrypted private key): {exc}.") \
            from None
    leaf = chain[0]
    where = f"Signing certificate {signing.certificate}"
    if leaf.issuer == leaf.subject:
        raise SopreelError(f"{where} is self-signed, and C2PA refuses self-signed signing "
                           "certificates. Use one issued by a certificate authority (your "
                           "organisation's CA, or a C2PA-conformant one).")
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise SopreelError(f"{where} is valid only from {leaf.not_valid_before_utc:%Y-%m-%d} "
                           f"to {leaf.not_valid_after_utc:%Y-%m-%d}.")
    if key.public_key().public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
        raise SopreelError(f"Signing key {signing.key} is not the key of {signing.certificate}.")
    family = signing.algorithm[:2]
    expected = {"es": ec.EllipticCurvePrivateKey, "ps": rsa.RSAPrivateKey,
                "ed": ed25519.Ed25519PrivateKey}[family]
    if not isinstance(key, expected):
        raise SopreelError(f"Signing key {signing.key} does not fit algorithm "
                           f"{signing.algorithm} (set `provenance.algorithm` to match the key).")
    _trial_signature(signing)


def _trial_signature(signing: Signing) -> None:
    """Sign a one-pixel PNG in memory: whatever else C2PA refuses (a certificate without the
    extensions its profile needs...) is found before hours of work, not at the end."""
    import io

    import c2pa
    from PIL import Image

    picture, signed = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (1, 1)).save(picture, format="PNG")
    picture.seek(0)
    manifest = {"claim_generator_info": [{"name": "sopreel"}], "title": "trial",
                "format": "image/png"}
    try:
        with c2pa.Signer.from_info(_signer_info(signing)) as signer, \
                c2pa.Builder(manifest, _signing_context()) as builder:
            builder.sign(signer, "image/png", picture, signed)
    except c2pa.C2paError as exc:
        raise SopreelError(f"C2PA refuses to sign with {signing.certificate}: {exc}. A "
                           "signing certificate needs the digitalSignature key usage, subject "
                           "and authority key identifiers, and a CA that issued it.") from None


def _signer_info(signing: Signing) -> Any:
    import c2pa

    return c2pa.C2paSignerInfo(alg=signing.algorithm.encode(),
                               sign_cert=signing.certificate.read_bytes(),
                               private_key=signing.key.read_bytes(),
                               ta_url=signing.timestamp_url.encode() if signing.timestamp_url
                               else None)


def _signing_context() -> Any:
    import c2pa

    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                   "verify": {"verify_after_sign": False}})


@dataclass(frozen=True)
class Ingredient:
    """A generated file the video was made from."""

    path: Path
    title: str
    source_type: str | None
    description: str


def sign_mp4(video: Path, signing: Signing, *, title: str, source_type: str,
             ingredients: list[Ingredient], generator: str) -> dict[str, Any]:
    """Embed a signed C2PA manifest in `video`, in place (through a temporary file)."""
    import c2pa

    actions: list[dict[str, Any]] = [{
        "action": "c2pa.created", "digitalSourceType": source_type_uri(source_type),
        "softwareAgent": {"name": "sopreel", "version": generator}}]
    for index, ingredient in enumerate(ingredients):
        placed: dict[str, Any] = {"action": "c2pa.placed", "description": ingredient.description,
                                  "parameters": {"ingredientIds": [f"ingredient-{index}"]}}
        if ingredient.source_type:
            placed["digitalSourceType"] = source_type_uri(ingredient.source_type)
        actions.append(placed)
    manifest = {"claim_generator_info": [{"name": "sopreel", "version": generator}],
                "title": title, "format": "video/mp4",
                "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}
    signed = video.with_name(video.stem + ".signed.mp4")
    try:
        with c2pa.Signer.from_info(_signer_info(signing)) as signer, \
                c2pa.Builder(manifest, _signing_context()) as builder:
            for index, ingredient in enumerate(ingredients):
                with ingredient.path.open("rb") as stream:
                    builder.add_ingredient(
                        {"title": ingredient.title, "relationship": "componentOf",
                         "label": f"ingredient-{index}", "description": ingredient.description},
                        MIME.get(ingredient.path.suffix.lower(), "application/octet-stream"),
                        stream)
            with video.open("rb") as source, signed.open("w+b") as dest:
                builder.sign(signer, "video/mp4", source, dest)
        os.replace(signed, video)
    except c2pa.C2paError as exc:
        raise SopreelError(f"Signing {video.name} with {signing.certificate.name} failed: "
                           f"{exc}.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            signed.unlink()
    return {"signed": True, "algorithm": signing.algorithm,
            "certificate_sha256": signing.identity()["certificate_sha256"],
            "ingredients": len(ingredients)}


@dataclass
class Verification:
    """What `sopreel verify` found in one video."""

    path: Path
    has_credentials: bool
    state: str | None = None              # c2pa's: Invalid, Valid or Trusted
    failures: list[tuple[str, str]] = field(default_factory=list)
    trust_anchors: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    unreadable: str | None = None         # why the file could not be read at all

    @property
    def valid(self) -> bool:
        """Signature and content hash hold (trust aside)."""
        return self.has_credentials and not [c for c, _ in self.failures
                                             if c != "signingCredential.untrusted"]

    @property
    def trusted(self) -> bool:
        return self.valid and self.state == "Trusted"

    def actions(self) -> list[dict[str, Any]]:
        return [action for assertion in self.manifest.get("assertions", [])
                if assertion.get("label", "").startswith("c2pa.actions")
                for action in assertion.get("data", {}).get("actions", [])]

    def claimed_source_type(self) -> str | None:
        created = [a for a in self.actions() if a.get("action") == "c2pa.created"]
        uri = created[0].get("digitalSourceType") if created else None
        return uri.rsplit("/", 1)[-1] if uri else None


def verify(video: Path, trust_anchors: list[Path] | None = None) -> Verification:
    """Read and validate a video's Content Credentials against the given trust anchors."""
    import c2pa

    anchors = [Path(p) for p in (trust_anchors or [])]
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False}}
    pem = "".join(_read_anchor(path) for path in anchors)
    if pem:
        settings["trust"] = {"user_anchors": pem}
    try:
        with video.open("rb") as stream:
            reader = c2pa.Reader("video/mp4", stream, context=c2pa.Context.from_dict(settings))
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except OSError as exc:
        raise SopreelError(f"Cannot read {video}: {exc.strerror}.") from None
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return Verification(video, has_credentials=False)
        # Not an MP4, or a manifest too damaged to parse: nothing can be vouched for.
        return Verification(video, has_credentials=False, unreadable=str(exc))
    failures = [(item.get("code", "?"), item.get("explanation", ""))
                for item in results.get("activeManifest", {}).get("failure", [])]
    return Verification(video, True, state, failures, [str(p) for p in anchors], manifest)


def _read_anchor(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SopreelError(f"Trust anchors {path}: cannot be read as a PEM file ({exc}).") \
            from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SopreelError(f"Trust anchors {path}: no PEM certificate in it.")
    return text if text.endswith("\n") else text + "\n"


def report(found: Verification) -> list[str]:
    """The lines `sopreel verify` prints."""
    if found.unreadable:
        return [f"{found.path}: cannot be read as an MP4 with Content Credentials "
                f"({found.unreadable})."]
    if not found.has_credentials:
        return [f"{found.path}: no Content Credentials (C2PA manifest) in this file."]
    manifest = found.manifest
    if not found.valid:
        lines = [f"{found.path}: INVALID Content Credentials: the file was changed after "
                 "signing, or the signature does not hold."]
    else:
        lines = [f"{found.path}: valid Content Credentials (signature and content hash match)."]
    for code, explanation in found.failures:
        if code != "signingCredential.untrusted":   # said on the trust line
            lines.append(f"  problem: {code}: {explanation}")
    signer = manifest.get("signature_info", {})
    if signer:
        lines.append(f"  signed by: {signer.get('common_name', '?')} ({signer.get('issuer', '?')}"
                     f"), {str(signer.get('alg', '?')).lower()}"
                     + (f", at {signer['time']}" if signer.get("time") else ""))
    if found.trusted:
        lines.append(f"  trust: the signer chains to a trust anchor you gave "
                     f"({', '.join(found.trust_anchors) or 'built-in list'})")
    elif found.valid:
        lines.append(f"  trust: the signer is not on any trust list given (pass --trust CA.pem "
                     f"or set {ENV_TRUST} to check it against your organisation's CA)")
    generators = manifest.get("claim_generator_info") or [{}]
    lines += [f"  title: {manifest.get('title', '?')}",
              f"  made with: {generators[0].get('name', '?')} {generators[0].get('version', '')}"
              .rstrip(),
              f"  digital source type: {found.claimed_source_type() or 'not stated'}"]
    ingredients = manifest.get("ingredients", [])
    placed = [a for a in found.actions() if a.get("action") == "c2pa.placed"]
    lines.append(f"  ingredients: {len(ingredients)}")
    for ingredient, action in zip(ingredients, placed + [{}] * len(ingredients), strict=False):
        kind = (action.get("digitalSourceType") or "").rsplit("/", 1)[-1] or "supplied"
        lines.append(f"    {ingredient.get('title', '?')}: {kind}")
    return lines


def as_json(found: Verification) -> str:
    return json.dumps({"file": str(found.path), "credentials": found.has_credentials,
                       "valid": found.valid, "trusted": found.trusted, "state": found.state,
                       "failures": [{"code": c, "explanation": e} for c, e in found.failures],
                       "source_type": found.claimed_source_type(),
                       "manifest": found.manifest}, indent=2, ensure_ascii=False)
