"""Run profiles (`templates/profiles/<name>.yaml` or any path): a backend and options per stage.

```yaml
images:  {backend: storyboard, width: 1920, height: 1080}
animate: {backend: kenburns, seconds: 8}
narrate: {backend: espeak}
music:   {backend: synth}
compose: {width: 1280, height: 720, fps: 24, loudness_lufs: -16}
```
Every backend's options are checked against its own typed model, so a typo in a profile is an
error naming the file, line and key.

The narrator may differ by language: `narrate.routes` hands languages to other narrators, each
a backend with its own options (XTTS for the languages a team prefers it in, OmniVoice for the
rest). A route matches a script language by its code, then by its primary subtag (zh matches
zh-CN and zh-TW).

```yaml
narrate:
  backend: omnivoice
  routes:
    - {languages: [en, zh], backend: coqui, speaker: Claribel Dervla}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages import animate, images, music, narrate, translate
from stages.disclosure import DisclosureOptions
from stages.errors import Problem, ProfileError, SopreelError, UnknownNameError
from stages.media import size_at_aspect
from stages.paths import PROFILES
from stages.provenance import ProvenanceOptions
from stages.registry import BackendOptions, KeepsCacheKeys, Registry
from stages.yamlfile import LocatedYaml, format_loc, load_yaml, problems_from

B = TypeVar("B", bound=BaseModel)

REGISTRIES: dict[str, Registry[Any]] = {
    "images": images.BACKENDS,
    "animate": animate.BACKENDS,
    "narrate": narrate.BACKENDS,
    "music": music.BACKENDS,
}
# Not a build stage: `sopreel translate` drafts translations with it. Optional in a profile.
TRANSLATE_DEFAULT = {"backend": "transformers"}
# Keys that are not stages: how videos are put together, marked, signed, and licensed.
SETTINGS = ("compose", "translate", "disclosure", "provenance", "commercial", "multitrack",
            "budget")


class ComposeOptions(KeepsCacheKeys):
    """How the final video is put together (one encode per language)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(1280, ge=160, le=3840, multiple_of=2)
    height: int = Field(720, ge=90, le=2160, multiple_of=2)
    fps: int = Field(24, ge=10, le=60)
    loudness_lufs: float = Field(-16.0, ge=-31, le=-9)
    true_peak_db: float = Field(-1.5, ge=-9, le=-0.5)
    transition: Literal["crossfade", "dip", "cut"] = Field(
        "crossfade", description="between scenes: cross-fade, dip through the style colour, cut")
    transition_s: float = Field(0.5, ge=0, le=2)
    lead_s: float = Field(0.4, ge=0, le=3, description="silence before a scene's narration")
    pause_s: float = Field(0.8, ge=0, le=5, description="silence after a scene's narration")
    music_db: float = Field(-20.0, ge=-40, le=0, description="music level before ducking")
    duck_db: float = Field(14.0, ge=0, le=40, description="extra music attenuation under speech")
    max_slowdown: float = Field(1.6, ge=1, le=4, description="slowest a clip is played to fit")
    crf: int = Field(23, ge=0, le=51)
    preset: str = Field("veryfast",
                        pattern=r"^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$")
    audio_bitrate_k: int = Field(160, ge=64, le=320)
    fit: Literal["auto", "crop", "blur", "pad"] | None = Field(
        None, description="a photo or clip of another aspect: crop it to fill the frame, show "
                          "it whole over a blurred copy of itself, or pad it with bars of the "
                          "style colour; auto (unset): crop when 3/4 of it stays, else blur")

    added_later = ("fit",)   # left out of cache keys while unset

    @property
    def filling(self) -> str:
        """How a photo or clip of another aspect fills the frame (`stages.media.fit_mode`)."""
        return self.fit or "auto"


@dataclass(frozen=True)
class StageChoice:
    backend: str
    options: BackendOptions

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.options.model_dump(mode="json")}


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    stages: dict[str, StageChoice]
    compose: ComposeOptions
    translate: StageChoice | None = None
    disclosure: DisclosureOptions = field(default_factory=DisclosureOptions)
    provenance: ProvenanceOptions = field(default_factory=ProvenanceOptions)
    commercial: bool = False      # refuse weights whose licence forbids commercial use
    multitrack: bool = False      # also one MP4 with every language (`stages.multitrack`)
    routes: dict[str, StageChoice] = field(default_factory=dict)   # language -> its narrator
    budget: float | None = None   # most a build may cost at hosted services (USD)

    def narrator(self, language: str) -> StageChoice:
        """Who speaks `language`: its route (by code, then primary subtag), else the narrate
        stage's backend."""
        for code in (language, language.split("-")[0]):
            if code in self.routes:
                return self.routes[code]
        return self.stages["narrate"]

    def choices(self, stage: str) -> list[StageChoice]:
        """Every backend the stage may use: the narrate stage's routes too."""
        first = [self.stages[stage]] if stage in self.stages else []
        more = list(self.routes.values()) if stage == "narrate" else []
        return list({id(choice): choice for choice in first + more}.values())

    def describe(self) -> dict[str, Any]:
        """The resolved profile, as the manifest records it."""
        described: dict[str, Any] = {"name": self.name}
        described.update({stage: choice.identity() for stage, choice in self.stages.items()})
        if self.routes:
            described["narrate"]["routes"] = {lang: choice.identity()
                                              for lang, choice in self.routes.items()}
        described["compose"] = self.compose.model_dump(mode="json")
        described["disclosure"] = self.disclosure.model_dump(mode="json")
        described["commercial"] = self.commercial
        described["multitrack"] = self.multitrack
        if self.budget is not None:
            described["budget"] = self.budget
        return described


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile name from templates/profiles, or a path to a YAML file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser().absolute()
        if not path.is_file():
            raise SopreelError(f"Profile file not found: {path}")
        return path
    path = PROFILES / f"{text}.yaml"
    if not path.is_file():
        raise UnknownNameError("profile", text, available_profiles())
    return path


def load_profile(name_or_path: str | Path = "draft") -> Profile:
    path = resolve_profile_path(name_or_path)
    located = load_yaml(path, ProfileError)
    if not isinstance(located.data, dict):
        raise ProfileError(path, [Problem(1, "", "expected a mapping of stage names to options")])
    problems: list[Problem] = []
    for key in located.data:
        if key not in (*REGISTRIES, *SETTINGS):
            problems.append(Problem(located.line((key,)), key, "unknown key; expected one of: "
                                    + ", ".join([*REGISTRIES, *SETTINGS])))
    routes_given = (located.data.get("narrate") or {}).pop("routes", None) \
        if isinstance(located.data.get("narrate"), dict) else None
    compose = _block(located, "compose", ComposeOptions, problems)
    stages = {}
    for stage, registry in REGISTRIES.items():
        choice = _stage_choice(located, stage, registry, problems)
        if choice and stage in FRAMED_STAGES:
            choice = _at_frame_aspect(choice, compose)
        if choice:
            stages[stage] = choice
    routes = _routes(located, routes_given, problems)
    if located.data.get("translate") is None:
        located.data["translate"] = TRANSLATE_DEFAULT
    translate_choice = _stage_choice(located, "translate", translate.BACKENDS, problems)
    disclosure = _block(located, "disclosure", DisclosureOptions, problems)
    provenance = _block(located, "provenance", ProvenanceOptions, problems)
    commercial, multitrack = (_switch(located, name, problems)
                              for name in ("commercial", "multitrack"))
    budget = _budget(located, problems)
    if problems:
        raise ProfileError(path, problems)
    return Profile(name=path.stem, path=path, stages=stages, compose=compose,
                   translate=translate_choice, disclosure=disclosure,
                   provenance=provenance,
                   commercial=commercial, multitrack=multitrack, routes=routes,
                   budget=budget)


def _budget(located: LocatedYaml, problems: list[Problem]) -> float | None:
    """`budget`: the most one build may cost at hosted services, in the price table's USD."""
    value = located.data.get("budget")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        problems.append(Problem(located.line(("budget",)), "budget",
                                f"expected an amount in USD, like 5.00, got {value!r}"))
        return None
    return float(value)


def _switch(located: LocatedYaml, name: str, problems: list[Problem]) -> bool:
    """A top-level true/false setting of the profile (false when absent)."""
    value = located.data.get(name, False)
    if not isinstance(value, bool):
        problems.append(Problem(located.line((name,)), name,
                                f"expected true or false, got {value!r}"))
    return value is True


FRAMED_STAGES = ("images", "animate")   # their width x height follows the video frame's aspect


def frame_size(width: int, height: int, frame: tuple[int, int],
               multiple: int = 2) -> tuple[int, int]:
    """`width` x `height` pixels reshaped to the frame's aspect: about as many pixels, both
    sides multiples of `multiple`. A size already at the frame's aspect is kept as it is."""
    aspect = frame[1] / frame[0]
    if abs(height / width - aspect) <= 0.01 * aspect:
        return width, height
    return size_at_aspect(*frame, width * height, multiple)


def _multiple_of(model: type[BaseModel], name: str) -> int:
    return next((rule.multiple_of for rule in model.model_fields[name].metadata
                 if getattr(rule, "multiple_of", None)), 2)


def _at_frame_aspect(choice: StageChoice, compose: ComposeOptions) -> StageChoice:
    """The stage's options with `width` x `height` as a pixel budget at the video frame's
    aspect: a 9:16 compose frame makes 9:16 stills and clips from the same profile sizes.
    A size the backend cannot take at that aspect is kept as written (compose fits it);
    a backend whose picture sets the aspect (`size_from_picture`) is left alone."""
    options = choice.options
    model = type(options)
    if not {"width", "height"} <= set(model.model_fields) or model.size_from_picture:
        return choice
    size = frame_size(options.width, options.height, (compose.width, compose.height),
                      max(_multiple_of(model, "width"), _multiple_of(model, "height")))
    if size == (options.width, options.height):
        return choice
    try:
        reshaped = model.model_validate({**options.model_dump(), "width": size[0],
                                         "height": size[1]})
    except ValidationError:   # outside the backend's limits: as written; compose fits it
        return choice
    return StageChoice(choice.backend, reshaped)


def _block(located: LocatedYaml, key: str, model: type[B], problems: list[Problem]) -> B:
    """A settings block of the profile, checked against its model (defaults when absent)."""
    try:
        return model.model_validate(located.data.get(key) or {})
    except ValidationError as exc:
        problems.extend(problems_from(exc, model, located, (key,)))
        return model()


def _stage_choice(located: LocatedYaml, stage: str, registry: Registry[Any],
                  problems: list[Problem]) -> StageChoice | None:
    return _choice(located, (stage,), located.data.get(stage), registry, problems)


def _choice(located: LocatedYaml, at: tuple[Any, ...], section: Any, registry: Registry[Any],
            problems: list[Problem], not_options: tuple[str, ...] = ()) -> StageChoice | None:
    """A backend and its checked options, from the mapping at `at` in the profile."""
    if not isinstance(section, dict) or not isinstance(section.get("backend"), str):
        problems.append(Problem(located.line(at), format_loc(at), "expected a mapping with a "
                                f"'backend' name, like {{backend: {registry.names()[0]}}}"))
        return None
    options = {k: v for k, v in section.items() if k not in ("backend", *not_options)}
    try:
        backend = registry.get(section["backend"])
    except SopreelError as exc:
        problems.append(Problem(located.line((*at, "backend")), format_loc((*at, "backend")),
                                str(exc)))
        return None
    try:
        choice = StageChoice(section["backend"], backend.Options.model_validate(options))
    except ValidationError as exc:
        problems.extend(problems_from(exc, backend.Options, located, at))
        return None
    try:   # a model folder that does not exist, found now rather than after hours of work
        backend(choice.options).preflight()
    except SopreelError as exc:
        key = "model" if "model" in options else "backend"
        problems.append(Problem(located.line((*at, key)), format_loc((*at, key)), str(exc)))
        return None
    return choice


def _routes(located: LocatedYaml, given: Any, problems: list[Problem]) -> dict[str, StageChoice]:
    """`narrate.routes`: a list of narrators, each with the `languages` it speaks."""
    if given is None:
        return {}
    at: tuple[Any, ...] = ("narrate", "routes")
    if not isinstance(given, list):
        problems.append(Problem(located.line(at), format_loc(at), "expected a list of narrators, "
                                "like [{languages: [th, vi], backend: omnivoice}]"))
        return {}
    routes: dict[str, StageChoice] = {}
    seen: set[str] = set()
    for index, section in enumerate(given):
        spoken = section.get("languages") if isinstance(section, dict) else None
        if not (isinstance(spoken, list) and spoken
                and all(isinstance(code, str) for code in spoken)):
            problems.append(Problem(located.line((*at, index)), format_loc((*at, index)),
                                    "expected `languages: [...]`, the language codes this "
                                    "narrator speaks, and its `backend`"))
            continue
        choice = _choice(located, (*at, index), section, narrate.BACKENDS, problems,
                         not_options=("languages",))
        for code in spoken:
            if code in seen:
                problems.append(Problem(located.line((*at, index, "languages")),
                                        format_loc((*at, index, "languages")),
                                        f"{code} is routed twice"))
            elif choice is not None:
                routes[code] = choice
            seen.add(code)
    return routes
