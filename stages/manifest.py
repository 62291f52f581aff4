"""`manifest.json`: the build's record, and the one place tools read results from."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from stages.assets import Asset, write_text_atomic
from stages.disclosure import source_type_uri

MANIFEST_VERSION = 1


class AssetEntry(BaseModel):
    stage: str
    path: str
    sha256: str
    backend: str
    model: str | None = None
    seed: int | None = None
    cached: bool
    language: str | None = None
    license: str | None = None
    digital_source_type: str | None = None   # IPTC; None for a supplied file
    info: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, asset: Asset, root: Path) -> AssetEntry:
        facts = dict(asset.info)
        known = {k: facts.pop(k, None) for k in ("backend", "model", "seed", "language",
                                                 "license", "digital_source_type")}
        term = known.pop("digital_source_type")
        return cls(stage=asset.stage, path=asset.path.relative_to(root).as_posix(),
                   sha256=asset.sha256, cached=asset.cached,
                   backend=known["backend"] or "unknown",
                   digital_source_type=source_type_uri(term) if term else None,
                   **{k: v for k, v in known.items() if k != "backend"}, info=facts)


class SceneEntry(BaseModel):
    id: str
    assets: list[AssetEntry]


class OutputEntry(BaseModel):
    video: str
    srt: str
    vtt: str
    duration_s: float
    cues: int
    loudness_lufs: float | None = None
    true_peak_dbtp: float | None = None
    reading_speed: dict[str, Any] = Field(default_factory=dict)   # limit, fastest, slow cues
    cached: bool = False
    digital_source_type: str | None = None    # IPTC, of the video as a whole
    notice: dict[str, Any] | None = None      # the AI notice: text, spoken, corner label
    tags: dict[str, str] = Field(default_factory=dict)        # MP4 metadata written
    provenance: dict[str, Any] | None = None  # the C2PA signature, when signed


class Manifest(BaseModel):
    manifest_version: int = MANIFEST_VERSION
    built_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    script: dict[str, Any]
    profile: dict[str, Any]
    outputs: dict[str, OutputEntry]
    scenes: list[SceneEntry]
    music: AssetEntry | None = None
    voice: dict[str, Any]
    translations: dict[str, Any] = Field(default_factory=dict)   # per language: who translated
    licenses: list[dict[str, Any]]
    disclosure: str
    digital_source_type: str | None = None    # IPTC, of the videos
    notices: dict[str, AssetEntry] = Field(default_factory=dict)   # the spoken AI notice
    multitrack: dict[str, Any] | None = None   # the one file with every language, when made
    use: dict[str, Any] = Field(default_factory=dict)   # purpose, and whether commercial
    # Hosted services: the estimate made before any request, what was spent, API usage.
    cost: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)


def read_manifest(path: Path) -> Manifest | None:
    try:
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def unreadable_manifest(out_dir: Path) -> str | None:
    """Why an existing manifest.json cannot be read (damaged, cut short, edited by hand), or
    None when it reads or does not exist."""
    path = out_dir / "manifest.json"
    if not path.exists():
        return None
    try:
        Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:
        return str(exc).splitlines()[0]
    return None


def built_languages(out_dir: Path) -> list[str]:
    """Languages an earlier build left a video for (their folders), whatever the manifest says."""
    if not out_dir.is_dir():
        return []
    return sorted(folder.name for folder in out_dir.iterdir()
                  if (folder / "video.mp4").is_file())


def write_manifest(manifest: Manifest, path: Path) -> None:
    """Write atomically; languages built earlier from the same script are kept."""
    previous = read_manifest(path)
    if previous and previous.script.get("sha256") == manifest.script.get("sha256"):
        kept = {lang: entry for lang, entry in previous.outputs.items()
                if lang not in manifest.outputs and (path.parent / entry.video).is_file()}
        manifest = manifest.model_copy(update={"outputs": {**kept, **manifest.outputs}})
    write_text_atomic(path, json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False,
                                       indent=2) + "\n")
