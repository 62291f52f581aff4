"""Script format v1: the YAML a training team writes, validated before anything is built.

`load_script` is the first step of every build and all of `sopreel validate`. It reports every
problem it finds at once, each with file, line and field, and writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stages import languages
from stages.errors import Problem, ScriptError, SopreelError
from stages.fonts import describe_chars, font_chain, missing_glyphs
from stages.glossary import load_glossary
from stages.paths import STYLES, voices_dir
from stages.translations import SUFFIX as SIDECAR_SUFFIX
from stages.translations import glossary_notes, read_sidecar, sidecar_path, stale_scenes
from stages.yamlfile import LocatedYaml, format_loc, load_yaml, validate

SCRIPT_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
SCENE_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".aac", ".opus"}
MAX_IMAGE_PIXELS = 50_000_000


def _id(pattern: re.Pattern[str], example: str):
    def check(value: str) -> str:
        if len(value) > 64 or not pattern.fullmatch(value):
            raise ValueError(f"expected lowercase letters, digits and '-' (like '{example}'), "
                             f"at most 64 characters; got {value!r}")
        return value
    return AfterValidator(check)


def _clean(value: str) -> str:
    """Fold whitespace (YAML block text) and refuse invisible control characters."""
    for char in value:
        if unicodedata.category(char) == "Cc" and char not in "\n\t\r":
            raise ValueError(f"contains the control character U+{ord(char):04X}; remove it")
    return " ".join(value.split())


def _nonempty(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _language(value: str) -> str:
    code = languages.canonical(value)
    if code is None:
        known = list(languages.languages())
        close = get_close_matches(value, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown language {value!r}.{hint} Supported: {', '.join(known)}")
    return code


ScriptId = Annotated[str, _id(SCRIPT_ID, "lockout-tagout")]
SceneId = Annotated[str, _id(SCENE_ID, "isolate")]
LanguageCode = Annotated[str, AfterValidator(_language)]
Required = Annotated[str, AfterValidator(_clean), AfterValidator(_nonempty), Field(max_length=2000)]
Caption = Annotated[str, AfterValidator(_clean), Field(max_length=120)]
Title = Annotated[str, AfterValidator(_clean), AfterValidator(_nonempty), Field(max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SceneSource(_Strict):
    """Where an imported scene came from, for the reviewer (`sopreel import` writes it)."""

    file: Annotated[str, Field(max_length=500)]
    page: Annotated[int, Field(ge=1)] | None = None
    slide: Annotated[int, Field(ge=1)] | None = None
    paragraph: Annotated[int, Field(ge=1)] | None = None
    line: Annotated[int, Field(ge=1)] | None = None
    table: Annotated[int, Field(ge=1)] | None = None
    row: Annotated[int, Field(ge=1)] | None = None
    text: Annotated[str, Field(max_length=4000)] | None = None   # the document's own words


class Rewrite(_Strict):
    """An LLM's rewrite of an imported SOP: unreviewed until a person approves it."""

    model: Annotated[str, Field(max_length=200)]
    server: Annotated[str, Field(max_length=500)]
    status: Literal["unreviewed", "reviewed"] = "unreviewed"
    reviewer: Annotated[str, Field(max_length=200)] | None = None
    reviewed: Annotated[str, Field(max_length=40)] | None = None
    notes: list[Annotated[str, Field(max_length=1000)]] = Field(default_factory=list,
                                                                 max_length=500)


class Imported(_Strict):
    """The document a script was imported from (`sopreel import`)."""

    file: Annotated[str, Field(max_length=500)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    date: Annotated[str, Field(max_length=40)]
    rewrite: Rewrite | None = None


class Scene(_Strict):
    id: SceneId
    narration: Required
    caption: Caption | None = None
    visual: Annotated[str, AfterValidator(_clean), Field(max_length=1000)] | None = None
    image: Annotated[str, Field(max_length=500)] | None = None
    motion: Annotated[str, AfterValidator(_clean), Field(max_length=200)] | None = None
    source: SceneSource | None = None


class SceneText(_Strict):
    narration: Required | None = None
    caption: Caption | None = None


Choice = Annotated[str, AfterValidator(_clean), AfterValidator(_nonempty), Field(max_length=300)]
Question = Annotated[str, AfterValidator(_clean), AfterValidator(_nonempty),
                     Field(max_length=500)]


class QuizQuestion(_Strict):
    """One question: its choices, and the right one (a number from 1) or right ones."""

    id: SceneId
    question: Question
    choices: Annotated[list[Choice], Field(min_length=2, max_length=8)]
    answer: Annotated[int, Field(ge=1)] | Annotated[list[Annotated[int, Field(ge=1)]],
                                                   Field(min_length=1, max_length=8)]

    @property
    def right(self) -> list[int]:
        """The right choices, numbered from 1."""
        return sorted({self.answer} if isinstance(self.answer, int) else set(self.answer))


class Quiz(_Strict):
    """Questions shown after the video (`sopreel package`); passed at `pass_mark` percent."""

    pass_mark: Annotated[int, Field(ge=0, le=100)] = 80
    questions: Annotated[list[QuizQuestion], Field(min_length=1, max_length=30)]


class QuizText(_Strict):
    """A question in another language: the same choices, in the same order."""

    question: Question
    choices: Annotated[list[Choice], Field(min_length=2, max_length=8)]


class Translation(_Strict):
    title: Title | None = None
    scenes: dict[str, SceneText] = Field(default_factory=dict, max_length=500)
    quiz: dict[str, QuizText] = Field(default_factory=dict, max_length=30)


class Script(_Strict):
    id: ScriptId
    title: Title
    language: LanguageCode
    languages: Annotated[list[LanguageCode], Field(min_length=1, max_length=40)] | None = None
    voice: Annotated[str, Field(max_length=64)] = "stock"
    music: Annotated[str, Field(max_length=500)] | None = None
    style: str = "clean-industrial"
    scenes: Annotated[list[Scene], Field(min_length=1, max_length=200)]
    translations: dict[str, Translation] = Field(default_factory=dict, max_length=40)
    imported: Imported | None = None
    quiz: Quiz | None = None


@dataclass(frozen=True)
class SceneLines:
    """What one scene says and shows in one language."""

    narration: str
    caption: str | None


@dataclass
class LoadedScript:
    """A validated script with what a build needs to know about where it came from."""

    path: Path
    script: Script
    sha256: str
    languages: list[str]
    image_paths: dict[str, Path]          # scene id -> supplied photo
    music_path: Path | None               # when `music` names a file
    warnings: list[str] = field(default_factory=list)
    translations: dict[str, Translation] = field(default_factory=dict)   # by canonical code
    origins: dict[str, dict[str, Any]] = field(default_factory=dict)     # who translated what

    def title(self, language: str) -> str | None:
        """The title in `language`; None when a translation has none (no title card then)."""
        translated = self._translation(language)
        return self.script.title if translated is None else translated.title

    def lines(self, language: str) -> list[SceneLines]:
        """Narration and caption of every scene in `language`, in scene order."""
        translated = self._translation(language)
        result = []
        for scene in self.script.scenes:
            if translated is None:
                result.append(SceneLines(scene.narration, scene.caption))
            else:
                text = translated.scenes[scene.id]
                result.append(SceneLines(text.narration or scene.narration, text.caption))
        return result

    def _translation(self, language: str) -> Translation | None:
        if language == self.script.language:
            return None
        return self.translations[language]


def _translations(script: Script) -> dict[str, Translation]:
    return {languages.canonical(code) or code: block for code, block in script.translations.items()}


def find_scripts(folder: Path) -> list[Path]:
    """Every script under `folder` and its subfolders: the YAML files with a top-level
    `scenes:` (profiles, styles and translation sidecars have none), in name order.

    Found by a line, not by parsing, so a broken script is found too and reported when loaded.
    """
    if not folder.is_dir():
        raise SopreelError(f"{folder}: no such folder of scripts.")
    found = []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        if path.name.endswith(SIDECAR_SUFFIX) or not path.is_file():
            continue
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if any(line.startswith("scenes:")
                   for line in path.read_text(encoding="utf-8").splitlines()):
                found.append(path)
    return found


def load_script(path: str | Path, *, only_languages: list[str] | None = None,
                voices: str | Path | None = None, allow_unreviewed: bool = False) -> LoadedScript:
    """Read and validate a script (and its machine-translation sidecar, if any); raise
    `ScriptError` listing every problem found. Unreviewed machine translations are refused
    unless `allow_unreviewed`."""
    path = Path(path).expanduser().absolute()
    located = load_yaml(path, ScriptError)
    script = validate(Script, located, ScriptError)
    checker = _Checks(path, located, script, voices_dir(voices), allow_unreviewed)
    loaded = checker.run(only_languages)
    if checker.problems:
        raise ScriptError(path, checker.problems)
    return loaded


class _Checks:
    """The checks that need more than one field, the file system or the registries."""

    def __init__(self, path: Path, located: LocatedYaml, script: Script, voices: Path,
                 allow_unreviewed: bool = False):
        self.path, self.located, self.script, self.voices = path, located, script, voices
        self.allow_unreviewed = allow_unreviewed
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.sidecar = read_sidecar(path)
        self.drafts = self.sidecar[0].languages if self.sidecar else {}

    def fail(self, loc: tuple, message: str) -> None:
        self.problems.append(Problem(self.located.line(loc), format_loc(loc), message))

    def fail_at(self, loc: tuple, message: str) -> None:
        """`fail`, where a location starting with '@sidecar' is in the translations file."""
        if loc[:1] != ("@sidecar",) or self.sidecar is None:
            return self.fail(loc, message)
        located, inner = self.sidecar[1], loc[1:]
        self.problems.append(Problem(located.line(inner), format_loc(inner), message,
                                     file=sidecar_path(self.path)))

    def run(self, only_languages: list[str] | None) -> LoadedScript:
        self.scene_ids()
        self.quiz()
        built = self.languages(only_languages)
        self.translations(built)
        self.glyphs(built)
        effective, origins = self.effective_translations(built)
        self.glossary(built, effective)
        images = self.images()
        music = self.music()
        self.voice()
        self.style()
        self.rewrite()
        return LoadedScript(
            path=self.path, script=self.script,
            sha256=hashlib.sha256(self.path.read_bytes()).hexdigest(),
            languages=built, image_paths=images, music_path=music, warnings=self.warnings,
            translations=effective, origins=origins)

    def scene_ids(self) -> None:
        seen: dict[str, int] = {}
        for index, scene in enumerate(self.script.scenes):
            if scene.id in seen:
                self.fail(("scenes", index, "id"), f"duplicate scene id {scene.id!r}; scene "
                          f"{seen[scene.id] + 1} already uses it. Scene ids must be unique")
            seen.setdefault(scene.id, index)
            if not scene.visual and not scene.image:
                self.fail(("scenes", index), "needs a 'visual' prompt or an 'image' file")

    def quiz(self) -> None:
        """Question ids unique, answers among the choices, translations matching them."""
        quiz = self.script.quiz
        if quiz is None:
            return
        seen: set[str] = set()
        for index, question in enumerate(quiz.questions):
            at = ("quiz", "questions", index)
            if question.id in seen:
                self.fail((*at, "id"), f"duplicate question id {question.id!r}")
            seen.add(question.id)
            wrong = [n for n in question.right if n > len(question.choices)]
            if wrong:
                self.fail((*at, "answer"), f"choice {wrong[0]} does not exist: expected a "
                          f"number from 1 to {len(question.choices)} (the right choice)")
        counts = {q.id: len(q.choices) for q in quiz.questions}
        for code, block in self.script.translations.items():
            for question_id, text in block.quiz.items():
                at = ("translations", code, "quiz", question_id)
                if question_id not in counts:
                    self.fail(at, f"no quiz question has this id; expected one of: "
                              f"{', '.join(counts)}")
                elif len(text.choices) != counts[question_id]:
                    self.fail((*at, "choices"), f"has {len(text.choices)} choices; the "
                              f"question has {counts[question_id]}, in the same order")

    def languages(self, only: list[str] | None) -> list[str]:
        script = self.script
        listed = list(dict.fromkeys(script.languages or [script.language]))
        if only is None:
            return listed
        chosen = []
        available = {script.language, *_translations(script), *self.drafts}
        for code in only:
            canonical = languages.canonical(code)
            if canonical is None or canonical not in available:
                self.problems.append(Problem(None, "--lang", (
                    f"{code!r} is not available for this script; it has text in "
                    f"{', '.join(sorted(available))}. Draft a translation with `sopreel "
                    f"translate {self.path.name} --lang {code}`, or add a translations block")))
            else:
                chosen.append(canonical)
        return list(dict.fromkeys(chosen))

    def translations(self, built: list[str]) -> None:
        script = self.script
        scene_ids = [scene.id for scene in script.scenes]
        for code, block in script.translations.items():
            canonical = languages.canonical(code)
            if canonical is None:
                self.fail(("translations", code), _language_message(code))
                continue
            if canonical == script.language:
                self.fail(("translations", code), "translates into the script's own language; "
                          "put that text in the scenes instead")
            for scene_id in block.scenes:
                if scene_id not in scene_ids:
                    close = get_close_matches(scene_id, scene_ids, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    self.fail(("translations", code, "scenes", scene_id),
                              f"no scene has this id{hint}")
        by_language = {languages.canonical(code): code for code in script.translations}
        for code in built:
            if code == script.language:
                continue
            key = by_language.get(code)
            if key is None and code in self.drafts:
                self.draft_usable(code)
                continue
            if key is None:
                self.fail(("languages",), f"builds {code!r} but 'translations' has no {code} "
                          f"block; add one with every scene's narration, or draft one with "
                          f"`sopreel translate {self.path.name} --lang {code}`")
                continue
            block = script.translations[key]
            if block.title is None:
                self.warnings.append(f"{code}: no translated title; the opening title card is "
                                     "left out in that language")
            for scene in script.scenes:
                text = block.scenes.get(scene.id)
                if text is None or text.narration is None:
                    self.fail(("translations", key, "scenes", scene.id) if text else
                              ("translations", key, "scenes"),
                              f"the {code} translation misses the narration of scene "
                              f"{scene.id!r}")
                elif scene.caption and not text.caption:
                    self.warnings.append(f"{code}: scene {scene.id!r} has no translated caption; "
                                         "the caption is left out in that language")

    def draft_usable(self, code: str) -> None:
        """A machine draft may be built: its source is unchanged and a person approved it."""
        located = self.sidecar[1]  # type: ignore[index]
        draft = self.drafts[code]
        where = sidecar_path(self.path)
        stale = stale_scenes(draft, self.script)
        if stale:
            self.problems.append(Problem(
                located.line(("languages", code)), f"languages.{code}",
                f"the source text of scene(s) {', '.join(stale)} changed since this was "
                f"drafted; run `sopreel translate {self.path.name} --lang {code}` again",
                file=where))
        if draft.status != "reviewed":
            if self.allow_unreviewed:
                self.warnings.append(f"{code}: built from an unreviewed machine translation "
                                     f"({draft.model}); not for use with workers until reviewed")
            else:
                self.problems.append(Problem(
                    located.line(("languages", code, "status")), f"languages.{code}.status",
                    f"the machine translation is not reviewed; approve it with `sopreel review "
                    f"{self.path.name} --lang {code} --approve --reviewer NAME` (or in the "
                    "Prefect UI), or build with --allow-unreviewed for a preview", file=where))

    def effective_translations(self, built: list[str]) -> tuple[dict[str, Translation],
                                                                dict[str, dict[str, Any]]]:
        """The script's own translations, then approved (or allowed) machine drafts."""
        effective = _translations(self.script)
        origins: dict[str, dict[str, Any]] = {
            code: {"source": "script"} for code in effective if code in built}
        for code, draft in self.drafts.items():
            if code in effective or code == self.script.language:
                continue
            effective[code] = Translation(title=draft.title, scenes={
                sid: SceneText(narration=d.narration, caption=d.caption)
                for sid, d in draft.scenes.items() if sid in {s.id for s in self.script.scenes}})
            if code in built:
                origins[code] = {"source": "machine", "file": sidecar_path(self.path).name,
                                 "model": draft.model, "license": draft.license,
                                 "status": draft.status, "drafted": draft.drafted,
                                 "reviewer": draft.reviewer, "reviewed": draft.reviewed,
                                 "accepted_deviations": draft.accepted_deviations}
        return effective, origins

    def glossary(self, built: list[str], effective: dict[str, Translation]) -> None:
        """Translations that do not use the site glossary's agreed terms: warnings."""
        glossary = load_glossary()
        for code in built:
            if code == self.script.language or code not in effective:
                continue
            block = effective[code]
            scenes = {sid: (t.narration or "", t.caption) for sid, t in block.scenes.items()}
            accepted = self.drafts[code].accepted_deviations if code in self.drafts else []
            for note in glossary_notes(self.script, code, glossary, title=block.title,
                                       scenes=scenes):
                if note not in accepted:   # a reviewer's recorded decision is not a warning
                    self.warnings.append(f"{code}: does not follow the glossary: {note}")

    def glyphs(self, built: list[str]) -> None:
        """Every character shown on screen has a font (a box is never acceptable)."""
        script = self.script
        by_language = {languages.canonical(code): code for code in script.translations}
        for code in built:
            chain = font_chain(languages.get(code).font)
            for loc, text in self._shown_text(code, by_language.get(code)):
                missing = missing_glyphs(text, chain)
                if missing:
                    self.fail_at(loc, f"no installed font can show {describe_chars(missing)} in "
                              f"{code} text ({chain[0]} and the fallbacks in templates/fonts.yaml "
                              "lack it); remove the character or install a font that has it")

    def _shown_text(self, code: str, key: str | None) -> list[tuple[tuple, str]]:
        """(location, text) of the title, narration and captions shown in one language."""
        script = self.script
        if code == script.language:
            fields = [(("title",), script.title)]
            for index, scene in enumerate(script.scenes):
                fields += [(("scenes", index, "narration"), scene.narration),
                           (("scenes", index, "caption"), scene.caption or "")]
            return fields
        block = script.translations.get(key) if key else None
        if block is not None:
            return _translated_fields(("translations", key), block)
        if code in self.drafts:
            return _translated_fields(("@sidecar", "languages", code), self.drafts[code])
        return []

    def _inside(self, loc: tuple, relative: str) -> Path | None:
        """Resolve a file named in the script, refusing anything outside the script's folder."""
        pure = PurePosixPath(relative.replace("\\", "/"))
        if not relative.strip():
            self.fail(loc, "expected a file path, got an empty string")
            return None
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative):
            self.fail(loc, f"must be a path relative to the script's folder, got absolute "
                      f"path {relative!r}")
            return None
        if ".." in pure.parts:
            self.fail(loc, f"must stay inside the script's folder; '..' is not allowed in "
                      f"{relative!r}")
            return None
        folder = self.path.parent.resolve()
        target = (folder / pure).resolve()
        if not target.is_relative_to(folder):
            self.fail(loc, f"{relative!r} leads outside the script's folder (a symbolic link?)")
            return None
        if not target.is_file():
            self.fail(loc, f"file not found: {relative!r} (looked in {folder})")
            return None
        return target

    def images(self) -> dict[str, Path]:
        found = {}
        for index, scene in enumerate(self.script.scenes):
            if scene.image is None:
                continue
            loc = ("scenes", index, "image")
            target = self._inside(loc, scene.image)
            if target is None:
                continue
            problem = image_problem(target)
            if problem:
                self.fail(loc, problem)
            else:
                found[scene.id] = target
        return found

    def music(self) -> Path | None:
        music = self.script.music
        if music is None or not _looks_like_path(music):
            return None
        target = self._inside(("music",), music)
        if target is not None:
            from stages.media import audio_problem
            problem = audio_problem(target)
            if problem:
                self.fail(("music",), problem)
                return None
        return target

    def voice(self) -> None:
        voice = self.script.voice
        if voice == "stock":
            return
        if not SCENE_ID.fullmatch(voice) or len(voice) > 64:
            self.fail(("voice",), f"expected 'stock' or an enrolled voice id, got {voice!r}")
        elif not (self.voices / voice / "voice.yaml").is_file():
            from stages.voices import not_enrolled

            self.fail(("voice",), not_enrolled(self.voices, voice))

    def rewrite(self) -> None:
        """An LLM's rewrite of an imported SOP is built once a person has approved it."""
        imported = self.script.imported
        if imported is None or imported.rewrite is None or imported.rewrite.status == "reviewed":
            return
        if self.allow_unreviewed:
            self.warnings.append(f"built from an unreviewed LLM rewrite of {imported.file} "
                                 f"({imported.rewrite.model}); not for use with workers until "
                                 "reviewed")
            return
        self.fail(("imported", "rewrite", "status"),
                  f"the LLM rewrite of {imported.file} is not reviewed; check it against the "
                  f"document and approve it with `sopreel review {self.path.name} --approve "
                  "--reviewer NAME` (or in the Prefect UI), or build with --allow-unreviewed "
                  "for a preview")

    def style(self) -> None:
        available = sorted(p.stem for p in STYLES.glob("*.yaml"))
        if self.script.style not in available:
            close = get_close_matches(self.script.style, available, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            self.fail(("style",), f"unknown style {self.script.style!r}.{hint} "
                      f"Available: {', '.join(available)}")


def _translated_fields(prefix: tuple, block: Translation | Any) -> list[tuple[tuple, str]]:
    """(location, text) of a translation's title, narrations and captions (a script block or a
    machine draft: both have `title` and `scenes` of `narration` and `caption`)."""
    fields = [((*prefix, "title"), block.title or "")]
    for scene_id, text in block.scenes.items():
        loc = (*prefix, "scenes", scene_id)
        fields += [((*loc, "narration"), text.narration or ""),
                   ((*loc, "caption"), text.caption or "")]
    return fields


def _language_message(code: str) -> str:
    try:
        _language(code)
    except ValueError as exc:
        return str(exc)
    return "unknown language"


def _looks_like_path(value: str) -> bool:
    """`music` names a file when it ends in an audio extension; anything else is a prompt."""
    return Path(value).suffix.lower() in AUDIO_SUFFIXES


def image_problem(path: Path) -> str | None:
    """Why a supplied photo cannot be used, or None: ffprobe's allowlist first (container,
    codec, size, dimensions), then Pillow's header check; no pixels are decoded."""
    from stages.media import PHOTO, check_supplied

    problem = check_supplied(path, PHOTO)
    if problem:
        return problem
    try:
        with Image.open(path) as image:
            if image.format not in IMAGE_FORMATS:
                return (f"{path.name} is a {image.format} file; expected a JPEG, PNG or WEBP "
                        "photo")
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return (f"{path.name} is {width}x{height} pixels; the limit is "
                        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
            if min(width, height) < 16:
                return f"{path.name} is only {width}x{height} pixels"
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return f"{path.name} is not an image (expected a JPEG, PNG or WEBP photo)"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"{path.name} is a damaged image: {exc}"
    return None
