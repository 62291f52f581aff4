"""Which weights a profile needs, and whether this machine has them (`sopreel models`).

Each stage's backend says what it loads (`Backend.weights`: name and licence) and which of
that comes from the Hugging Face Hub (`Backend.hub_weights`); this module asks every backend
a profile chooses, for the languages given, and looks each model up in the HF cache or on
disk. Nothing is loaded and the network is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import hub
from stages.hub import HubWeights, Presence
from stages.licenses import allows_commercial
from stages.profile import REGISTRIES, Profile
from stages.registry import Backend


@dataclass
class ModelNeed:
    """One model a profile names: from the Hub (`hub`), a local file or folder (`local`), or
    fetched by its library in its own way (neither)."""

    stage: str
    name: str
    license: str
    hub: HubWeights | None = None
    local: Path | None = None

    @property
    def source(self) -> str:
        if self.hub is not None:
            return "hub" if self.hub.layout != "coqui" else f"hub ({self.hub.repo_id})"
        if self.local is not None:
            return "folder" if self.local.is_dir() else "file"
        return "library"

    def presence(self) -> Presence | None:
        return hub.presence(self.hub) if self.hub is not None else None

    def describe(self) -> dict[str, Any]:
        """A row of `models list`: where it is, whether it is here, its size and revision."""
        row: dict[str, Any] = {"stage": self.stage, "model": self.name, "source": self.source,
                               "license": self.license,
                               "commercial": allows_commercial(self.license)}
        found = self.presence()
        if found is not None:
            row.update(present=found.present, size=found.size, revision=found.commit,
                       requested=self.hub.ref if self.hub else None, pulled=found.pulled,
                       missing=found.missing[:5])
        elif self.local is not None:
            files = [self.local] if self.local.is_file() else [
                p for p in self.local.rglob("*") if p.is_file()]
            row.update(present=True, size=sum(p.stat().st_size for p in files), revision=None)
        else:
            row.update(present=False, size=0, revision=None,
                       note="its library downloads it on first use; not from the Hub")
        return row


def default_languages(profile: Profile) -> list[str]:
    """English and every language the profile routes to a narrator of its own."""
    return sorted({"en", *profile.routes})


def profile_needs(profile: Profile, languages: list[str] | None = None,
                  translate: bool = False) -> list[ModelNeed]:
    """Every model the profile would load for these languages (its translator too, when
    asked): stage by stage, each narrator for the languages it speaks."""
    languages = languages or default_languages(profile)
    needs: list[ModelNeed] = []
    for stage, choice in profile.stages.items():
        if stage != "narrate":
            _add(needs, stage, _backend(stage, choice), languages)
    for language in languages:
        _add(needs, "narrate", _backend("narrate", profile.narrator(language)), [language])
    if translate and profile.translate is not None:
        from stages import translate as translators

        backend = translators.BACKENDS.get(profile.translate.backend)(profile.translate.options)
        _add(needs, "translate", backend, languages)
    return needs


def _backend(stage: str, choice: Any) -> Backend:
    return REGISTRIES[stage].get(choice.backend)(choice.options)


def _add(needs: list[ModelNeed], stage: str, backend: Backend, languages: list[str]) -> None:
    """The backend's weights, each once per stage; hosted services and programs that load no
    weights (storyboard, espeak-ng, an image server's own checkpoints) add nothing."""
    from stages.cloud import ServiceBackend

    if isinstance(backend, ServiceBackend):
        return
    from_hub = {weights.label: weights for weights in backend.hub_weights(languages)}
    named = dict(backend.weights(languages))
    for label, weights in from_hub.items():
        named.setdefault(label, weights.license)
    for name, license in named.items():
        if name.startswith("stock voice") or any(n.stage == stage and n.name == name
                                                 for n in needs):
            continue   # a recording, not weights; or listed already
        path = Path(name).expanduser()
        local = path if path.exists() else None
        if name in from_hub or local is not None or backend.loads_model:
            needs.append(ModelNeed(stage, name, license, from_hub.get(name),
                                   local.resolve() if local else None))
