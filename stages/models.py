"""Where a model comes from, and what its weights' licence is.

A profile's `model` is a Hugging Face id, a local folder in diffusers/transformers layout, or
one checkpoint file (`.safetensors`, as A1111 and ComfyUI keep them). `locate` tells which,
without loading anything, and `fingerprint` says which exact weights those are: the commit for
a Hub id, the sha256 of a file, the sha256 of every file in a folder. Licences of well-known
weights are data (`templates/model_licenses.yaml`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from stages.assets import file_sha256
from stages.errors import DataFileError, SopreelError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, problems_from

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["hub", "folder", "file"]
    location: str            # the Hub id, or the absolute path of the folder or file

    @property
    def path(self) -> Path:
        return Path(self.location)


def locate(model: str, what: str = "model") -> ModelSource:
    """A Hub id, a local folder or a local file; a path that does not exist is an error."""
    path = Path(model).expanduser()
    if path.is_file():
        return ModelSource("file", str(path.resolve()))
    if path.is_dir():
        return ModelSource("folder", str(path.resolve()))
    looks_local = model.startswith(("/", ".", "~")) or path.suffix in (".safetensors",
                                                                       *PICKLE_SUFFIXES)
    if looks_local or not HUB_ID.match(model):
        raise SopreelError(f"The {what} '{model}' is neither a file or folder on this machine "
                           "nor a Hugging Face id like 'org/name'.")
    return ModelSource("hub", model)


def refuse_pickle(source: ModelSource, allow_pickle: bool, what: str = "model") -> None:
    """Pickle checkpoints can run code when loaded: only safetensors, unless the profile says."""
    if allow_pickle or source.kind != "file" or source.path.suffix == ".safetensors":
        return
    raise SopreelError(
        f"The {what} {source.location} is a '{source.path.suffix}' file, which is loaded with "
        "Python's pickle and can run code. Use its .safetensors version, or set "
        "`allow_pickle: true` in the profile if you trust where it came from.")


def fingerprint(source: ModelSource, revision: str | None = None) -> dict[str, object]:
    """Which exact weights: the requested revision of a Hub id, or a sha256 of a file or of a
    folder (the digest of its `sha256sum`-style listing, hidden files left out)."""
    if source.kind == "file":
        return {"sha256": file_sha256(source.path)}
    if source.kind == "folder":
        root = source.path
        files = sorted(p for p in root.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        listing = "".join(f"{file_sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in files)
        return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": len(files)}
    return {"revision": revision or "main"}


def cached_commit(repo_id: str, revision: str | None,
                  probe: str = "model_index.json") -> str | None:
    """The commit of a Hub repo as the local Hugging Face cache holds it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, probe, revision=revision)
    if isinstance(found, str) and "/snapshots/" in found:
        return found.split("/snapshots/")[1].split("/")[0]
    return None


class ModelLicense(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    license: str
    commercial: bool


@cache
def known_licenses() -> dict[str, ModelLicense]:
    path = TEMPLATES / "model_licenses.yaml"
    located = load_yaml(path, DataFileError)
    table = {}
    for index, entry in enumerate(located.data or []):
        try:
            known = ModelLicense.model_validate(entry)
        except ValidationError as exc:
            raise DataFileError(path, problems_from(exc, ModelLicense, located, (index,))) from None
        table[known.model.lower()] = known
    return table


def license_of(model: str, given: str | None = None) -> str:
    """The profile's `license`, else the known licence of a Hub id, else a request to say."""
    if given:
        return given
    known = known_licenses().get(model.lower())
    return known.license if known else "unknown: set `license` in the profile"
