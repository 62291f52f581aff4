"""Where a model comes from, and what its weights' licence is.

A profile's `model` is a Hugging Face id, a local folder in diffusers/transformers layout, or
one checkpoint file (`.safetensors`, as A1111 and ComfyUI keep them). `locate` tells which,
without loading anything, and `fingerprint` says which exact weights those are: the commit for
a Hub id, the sha256 of a file, the sha256 of every file in a folder. Licences of well-known
weights are data (`stages.licenses`).

A backend holds its model in a `ModelSlot`: found and pinned when the backend loads, which
reads no weights; read from disk only when the first asset that is not cached needs it; given
back when the stage is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from stages import hub
from stages.assets import file_sha256
from stages.devices import free_memory, pick_device
from stages.errors import SopreelError, first_line
from stages.hub import HubWeights, Layout
from stages.licenses import license_of
from stages.registry import BackendOptions

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
SHA256 = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["hub", "folder", "file"]
    location: str            # the Hub id, or the absolute path of the folder or file
    snapshot: str | None = None   # a pulled Hub model: its whole snapshot in the HF cache

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def load_from(self) -> str:
        """What to give `from_pretrained`: a pulled snapshot's folder (no network, exactly
        the pulled commit), else the Hub id or the local path."""
        return self.snapshot or self.location


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


def check_pinned(weights: dict[str, object], expected: str | None, model: str,
                 what: str = "model") -> None:
    """Refuse weights whose sha256 is not the one the profile pinned."""
    if expected and weights.get("sha256") != expected:
        raise SopreelError(f"The {what} '{model}' is not the pinned one: its sha256 is "
                           f"{weights.get('sha256')}, the profile's `sha256` is {expected}. "
                           "Nothing was loaded; restore the pinned weights, or pin these.")


class ModelOptions(BackendOptions):
    """Where the weights are and where they run: the keys every model-backed backend takes."""

    model: str
    revision: str | None = Field(None, description="branch, tag or commit of a Hub model")
    device: Literal["auto", "cuda", "cpu", "mps"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    allow_pickle: bool = Field(False, description="load .ckpt/.bin weights (pickle can run code)")
    license: str | None = Field(None, description="of the weights, when not a well-known id")
    sha256: str | None = Field(None, pattern=SHA256, description=(
        "pin a local file or folder: its sha256 as the manifest records it (weights.sha256)"))


def quiet_transformers() -> None:
    """Its warnings reach the manifest as facts, not stderr; progress goes through the stage's
    bar, not its own."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class ModelSlot:
    """One backend's model: pinned at once, read from disk on first use, released after.

    A folder must hold `marker` (a transformers model's config.json by default). Callers hold
    `lock` around `get()` and the call to the model: one generation at a time.
    """

    marker: ClassVar[str] = "config.json"
    layout: ClassVar[str] = "transformers model"
    hub_layout: ClassVar[Layout] = "transformers"

    def __init__(self, options: ModelOptions, what: str):
        self.options, self.what = options, what
        self.source: ModelSource | None = None
        self.weights: dict[str, Any] = {}
        self.model: Any = None
        self.lock = threading.Lock()
        self._marked = contextlib.ExitStack()

    @property
    def license(self) -> str:
        return license_of(self.options.model, self.options.license)

    def hub_weights(self) -> list[HubWeights]:
        """The Hub repository this slot's model comes from, if it is one (for `models pull`)."""
        if locate(self.options.model, self.what).kind != "hub":
            return []
        return [HubWeights(self.options.model, self.hub_layout, self.what, self.license,
                           self.options.revision)]

    def pin(self, files: bool = False) -> ModelSource:
        """Find the model and fingerprint which exact weights it is; no weights are read.
        A profile's `sha256` must match, or nothing is loaded. A Hub model that `models pull`
        fetched whole is loaded from its snapshot: that commit, without asking the Hub."""
        source = self.find(files)
        for weights in self.hub_weights():
            snapshot = hub.pulled_snapshot(weights)
            if snapshot is not None:
                source = dataclasses.replace(source, snapshot=str(snapshot))
        self.source, self.weights = source, fingerprint(source, self.options.revision)
        check_pinned(self.weights, self.options.sha256, self.options.model, self.what)
        return source

    def find(self, files: bool = False) -> ModelSource:
        """Where the model is: a folder must be in the expected layout, a single file is
        allowed only where `files` says, and pickle weights only where the profile allows."""
        source = locate(self.options.model, self.what)
        refuse_pickle(source, self.options.allow_pickle, self.what)
        if self.options.sha256 and source.kind == "hub":
            raise SopreelError(f"`sha256` pins local files and folders; pin the Hub model "
                               f"'{self.options.model}' with `revision:` set to a commit (its "
                               "files are pinned by sha256 in that commit).")
        if source.kind == "folder" and not (source.path / self.marker).is_file():
            hint = " For a single checkpoint, give the .safetensors file itself." if files else ""
            raise SopreelError(f"{source.location} is not a {self.layout} folder (it has no "
                               f"{self.marker}).{hint}")
        if source.kind == "file" and not files:
            raise SopreelError(f"The {self.what} '{self.options.model}' must be a {self.layout} "
                               "folder or a Hugging Face id, not a single file.")
        return source

    def get(self, load: Callable[[ModelSource], Any]) -> Any:
        """The model; `load(source)` reads and places it the first time. A Hub model not on
        this machine is fetched by the library, once the Hub has answered a brief probe (an
        unreachable Hub is said in seconds, not after minutes of retries)."""
        if self.model is None:
            self.quiet()
            source = self.source or self.pin()
            for weights in self.hub_weights():
                if source.snapshot is None:
                    hub.require(weights)
                self._marked.enter_context(hub.in_use([weights.repo_id]))
            self.model = load(source)
        return self.model

    def use(self, model: Any) -> None:
        """A model built elsewhere (the GPU benchmarks' random-weight models)."""
        self.quiet()
        self.source = ModelSource("hub", self.options.model)
        self.model = model

    def release(self) -> None:
        """Free the model, after the generation in progress (if any) has finished."""
        with self.lock:
            self.model = None
            self._marked.close()
        free_memory()

    def quiet(self) -> None:
        quiet_transformers()

    def device(self) -> str:
        return pick_device(self.options.device, mps=True)

    def dtype(self) -> Any:
        """bf16 on a GPU that has it (fp16 otherwise), fp32 on the CPU, unless the profile says."""
        import torch

        choice, device = self.options.dtype, self.device()
        if choice != "auto":
            return getattr(torch, choice)
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32

    def weights_facts(self) -> dict[str, Any]:
        """What the manifest records about the weights: where they are, and the Hub commit or
        the files' sha256."""
        source = self.source
        assert source is not None
        if source.kind == "hub":
            revision = self.options.revision
            commit = (Path(source.snapshot).name if source.snapshot
                      else hub.cached_commit(source.location, revision))
            return {"model": source.location, "revision": commit or revision or "main"}
        return {"model": source.location, "sha256": self.weights["sha256"]}

    def load_error(self, exc: BaseException, hint: str = "") -> SopreelError:
        """A clear error for weights that would not load; safetensors-only explained."""
        reason = first_line(exc)
        if not hint and "safetensors" in reason and not self.options.allow_pickle:
            hint = (" Only safetensors weights are loaded; set `allow_pickle: true` to load .bin "
                    "weights you trust.")
        return SopreelError(f"Cannot load the {self.what} '{self.options.model}': {reason}."
                            f"{hint}")


class ModelBackend:
    """Mixed into a stage backend whose model is held in `self._slot`: finding and pinning
    it, its licence, its identity (options plus which exact weights: new weights mean new
    assets), and release."""

    _slot: ModelSlot
    loads_model = True
    source_type = "trainedAlgorithmicMedia"

    def preflight(self) -> None:
        self._slot.find()

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        return self._slot.hub_weights()

    def load(self) -> None:
        """Find the model and pin its weights; they are read on the first asset not cached."""
        self._slot.pin()

    @property
    def license(self) -> str:
        return self._slot.license

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "weights": self._slot.weights}  # type: ignore[misc]

    def close(self) -> None:
        self._slot.release()


LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)
