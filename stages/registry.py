"""Backends found by name: one registry per stage, one path for built-ins and plug-ins.

A backend is a small class with a typed `Options` model (unknown keys are errors) and a
`load()` that does the expensive part once. Built-ins register by import path, so a heavy
backend (torch, diffusers) is imported only when a profile names it; third-party packages add
backends through the `sopreel.<stage>` entry-point group and need no change here or in flows.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, model_serializer

from stages.errors import SopreelError, UnknownNameError


class KeepsCacheKeys(BaseModel):
    """A model whose dump (so the cache key of every asset made with it) leaves out the fields
    named in `added_later` while they are unset: a release that adds an option keeps every
    asset made before it, until the option is used."""

    added_later: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name in self.added_later:
            if data.get(name, 0) is None:
                del data[name]
        return data


class BackendOptions(KeepsCacheKeys):
    """Options a profile gives a backend. Subclasses add fields; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # True where width x height is a pixel budget and the input picture sets the aspect.
    size_from_picture: ClassVar[bool] = False


class Backend:
    """Base of every stage backend.

    `identity()` is what makes an asset differ between backends: it goes into every cache key
    and into the manifest. Bump `version` when a change alters what the backend produces.
    `assembly_options` say how the backend's pieces are put together, not what a piece is;
    `placement_options` say where the model runs (offloading), not what it makes. Both stay
    out of the identity, so changing them reuses every piece already made.
    `loads_model` marks a backend that holds model weights in memory: its stage takes the GPU
    lock, and on Dask asks for a worker with a GPU. `source_type` is the IPTC digital source
    type of what it makes (the manifest and the Content Credentials record it).
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    license: ClassVar[str | None] = None
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    assembly_options: ClassVar[tuple[str, ...]] = ()
    placement_options: ClassVar[tuple[str, ...]] = ()
    loads_model: ClassVar[bool] = False
    # IPTC digital source type of what it makes: drawn by an algorithm, unless a model trained
    # on sampled content made it ("trainedAlgorithmicMedia").
    source_type: ClassVar[str] = "algorithmicMedia"

    def __init__(self, options: BackendOptions):
        self.options = options

    def preflight(self) -> None:
        """Cheap checks made when a build is planned, before any work (a model folder that
        does not exist); nothing is loaded."""

    def load(self) -> None:
        """Load models or check tools; called once before the first use."""

    def close(self) -> None:
        """Release memory held by `load`."""

    @property
    def model(self) -> str | None:
        return getattr(self.options, "model", None)

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        """(model, licence) of the weights this backend would use for these languages; empty
        for a backend that uses none (its `license` is then the program's)."""
        return [(self.model, self.license)] if self.model and self.license else []

    def hub_weights(self, languages: list[str]) -> list[Any]:
        """The Hugging Face repositories it would download for these languages
        (`stages.hub.HubWeights`), for `sopreel models`; empty when it needs none."""
        return []

    def cost(self, request: Any) -> Any:
        """What one request would cost by the price table (`stages.cloud.Cost`): a hosted
        service's backends say; None for work done on this machine."""
        return None

    def lighter(self) -> Backend | None:
        """The same backend set to need less accelerator memory (more offloading), for a retry
        after running out of it; None when it has no lighter setting."""
        return None

    def identity(self) -> dict[str, Any]:
        options = self.options.model_dump(
            mode="json", exclude={*self.assembly_options, *self.placement_options})
        return {"backend": self.name, "version": self.version, "options": options}


B = TypeVar("B", bound=Backend)


class Registry(Generic[B]):
    """Name -> backend class for one stage."""

    def __init__(self, stage: str, base: type[B]):
        self.stage, self.base = stage, base
        self._targets: dict[str, str | type[B]] = {}
        self._plugins_loaded = False

    def register(self, name: str, target: str | type[B]) -> None:
        """Register a backend by class or by 'module:Class' import path (imported on first use)."""
        self._targets[name] = target

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._targets)

    def get(self, name: str) -> type[B]:
        self._load_plugins()
        if name not in self._targets:
            raise UnknownNameError(f"{self.stage} backend", name, self.names())
        target = self._targets[name]
        if isinstance(target, str):
            module_name, _, attribute = target.partition(":")
            try:
                target = getattr(importlib.import_module(module_name), attribute)
            except ImportError as exc:
                raise SopreelError(
                    f"The {self.stage} backend '{name}' needs a package that is not installed "
                    f"({exc.name}). Install it into .venv, then try again.") from None
            self._targets[name] = target
        return target

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in entry_points(group=f"sopreel.{self.stage}"):
            self._targets.setdefault(entry.name, entry.value)


def _placement(backend: Backend, options: BackendOptions) -> str:
    chosen = options.model_dump(include=set(backend.placement_options))
    return f"{backend.name} with " + ", ".join(f"{k} {v}" for k, v in chosen.items())


class LoadedBackends:
    """Backends loaded once per process and shared by every task that asks for the same one.

    A flow asks for `get(registry, name, options)` in each scene's task; the first call loads
    the model, later calls reuse it, and `release(stage)` frees it when the stage is done.
    """

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, str], Backend] = {}
        self._lighter: dict[tuple[str, str, str], BackendOptions] = {}
        self._lock = threading.Lock()
        self._used = threading.local()   # per thread: the backend each stage's last `get` gave

    def get(self, registry: Registry[B], name: str, options: BackendOptions) -> B:
        key = (registry.stage, name, options.model_dump_json())
        with self._lock:
            backend = self._loaded.get(key)
            if backend is None:
                backend = registry.get(name)(self._lighter.get(key, options))
                backend.load()
                self._loaded[key] = backend
        self._used.__dict__[registry.stage] = (key, backend)
        return backend  # type: ignore[return-value]

    def lighten(self, stage: str) -> str | None:
        """After this thread's task of `stage` ran out of accelerator memory: free the model
        it used, and have every later `get` load it with lighter settings. Says what the
        retry will use; None when there is nothing lighter (no retry).

        Tasks failing together lighten once: a task whose model was already replaced by a
        lighter one is retried with that."""
        key, failed = self._used.__dict__.get(stage, (None, None))
        if failed is None:
            return None
        with self._lock:
            if self._loaded.get(key) is failed:
                self._loaded.pop(key)
                failed.close()
                lighter = failed.lighter()
                if lighter is not None:
                    self._lighter[key] = lighter.options
            current = self._lighter.get(key)
        return _placement(failed, current) if current not in (None, failed.options) else None

    def release(self, stage: str) -> None:
        """Free the stage's models; the next build starts again from the profile's settings."""
        with self._lock:
            for key in [k for k in self._loaded if k[0] == stage]:
                self._loaded.pop(key).close()
            for key in [k for k in self._lighter if k[0] == stage]:
                del self._lighter[key]
