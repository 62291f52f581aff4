"""A content-addressed store of build assets, and atomic file writing.

Every asset (an image, a clip, a narration, a music bed) is filed under a key that is the
sha256 of its *recipe*: the stage, the backend and its options, and the content (not the name)
of every input file. An unchanged recipe finds its asset and recomputes nothing; an edit
changes only the keys that depend on it. Nothing here knows about Prefect or run ids.

An asset is complete when its metadata file exists: the media file is renamed into place
first, then the metadata, so a build killed half-way leaves at most a stray temporary file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stages.errors import NotCached

TEMP_PREFIX = ".tmp-"
_digests: dict[tuple[str, int, int], str] = {}


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final` (same extension); rename it into place on success.

    On any error the temporary file is removed, so no half-written file ever sits at `final`.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")
    try:
        yield temp
        os.replace(temp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_path(final) as temp:
        temp.write_text(text, encoding="utf-8")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, remembered while its size and mtime are unchanged.

    Digests of large files (model checkpoints, gigabytes each) are also remembered across runs
    in the user's cache folder, so a build does not re-read 20 GB of weights to key its images.
    """
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _digests:
        remembered = _disk_digests() if stat.st_size >= LARGE_FILE_BYTES else {}
        disk_key = "|".join(map(str, memo))
        digest = remembered.get(disk_key) or _hash_file(path)
        _digests[memo] = digest
        if stat.st_size >= LARGE_FILE_BYTES and disk_key not in remembered:
            _remember_on_disk(disk_key, digest)
    return _digests[memo]


LARGE_FILE_BYTES = 64 << 20


def digest_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sopreel" / "sha256.json"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _disk_digests() -> dict[str, str]:
    try:
        return json.loads(digest_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _remember_on_disk(key: str, digest: str) -> None:
    """Best effort: a read-only home only costs a re-hash next time."""
    with contextlib.suppress(OSError):
        write_text_atomic(digest_cache_file(), json.dumps({**_disk_digests(), key: digest}))


def _canonical(value: Any) -> Any:
    if isinstance(value, Path):
        return {"file_sha256": file_sha256(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump(mode="python"))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def recipe_key(stage: str, recipe: dict[str, Any]) -> str:
    """The content key of a recipe: files count by content, never by name or run."""
    canonical = json.dumps({"stage": stage, **_canonical(recipe)}, sort_keys=True,
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Asset:
    """One produced (or reused) file and what made it."""

    stage: str
    key: str
    path: Path
    sha256: str
    cached: bool
    info: dict[str, Any] = field(default_factory=dict)


class AssetStore:
    """Assets filed as `<root>/<stage>/<key><suffix>` with a `<...>.json` metadata file beside.

    With `making=False` the store only looks: a missing asset raises `NotCached`."""

    def __init__(self, root: Path, making: bool = True):
        self.root, self.making = root, making

    def produce(self, stage: str, recipe: dict[str, Any], suffix: str,
                make: Callable[[Path], dict[str, Any] | None]) -> Asset:
        """Return the asset for `recipe`, calling `make(temp_path)` only when it is missing.

        `make` writes the media file at the path it is given and returns metadata to keep with
        it (durations, seeds...), which comes back as `Asset.info` on every later reuse.
        """
        key = recipe_key(stage, recipe)
        final = self.root / stage / f"{key[:24]}{suffix}"
        meta_path = final.with_name(final.name + ".json")
        if final.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            return Asset(stage, key, final, meta["sha256"], True, meta["info"])
        if not self.making:
            raise NotCached(f"{stage} {key[:12]}")
        with atomic_path(final) as temp:
            info = make(temp) or {}
        meta = {"key": key, "sha256": file_sha256(final), "info": info}
        write_text_atomic(meta_path, json.dumps(meta, ensure_ascii=False, indent=1))
        return Asset(stage, key, final, meta["sha256"], False, info)

    def sweep(self, older_than_s: float = 3600) -> int:
        """Delete temporary files a killed build left in the store."""
        return sweep_temporaries(self.root, older_than_s)


def sweep_temporaries(root: Path, older_than_s: float = 3600) -> int:
    """Delete the temporary files and folders (`.tmp-*`) a killed build left anywhere under
    `root`, once nothing in them has changed for `older_than_s` (so never one in use)."""
    cutoff, removed = time.time() - older_than_s, 0
    for stray in sorted(root.rglob(f"{TEMP_PREFIX}*"), key=lambda p: len(p.parts)):
        with contextlib.suppress(FileNotFoundError):
            if _last_change(stray) < cutoff:
                if stray.is_dir() and not stray.is_symlink():
                    shutil.rmtree(stray, ignore_errors=True)
                else:
                    stray.unlink()
                removed += 1
    return removed


def _last_change(path: Path) -> float:
    """The newest modification time of a file, or of a folder and everything in it."""
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [inner.lstat().st_mtime for inner in path.rglob("*")]
    return max(times)
