"""Machine-drafted translations, kept beside the script until a person approves them.

`sopreel translate lockout.yaml --lang th` writes `lockout.translations.yaml` next to the
script: per language the drafted title, narration and captions, the model that drafted them, a
fingerprint of the source text each was drafted from, and `status: unreviewed`. A reviewer
edits the text and approves it (`sopreel review`, or the Prefect UI); builds use only approved
drafts (unless `--allow-unreviewed`), and refuse a draft whose source text changed since.

Translations written in the script itself are people's work and need no approval; a language
the script translates is never drafted. Every translation is checked against the site glossary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stages import languages
from stages.errors import InputFileError, Problem, SopreelError
from stages.glossary import Glossary, restore
from stages.text import split_sentences
from stages.yamlfile import LocatedYaml, load_yaml, validate

if TYPE_CHECKING:
    from stages.script import Script
    from stages.translate import TranslateBackend

SUFFIX = ".translations.yaml"


class TranslationFileError(InputFileError):
    kind = "translations file"


def _text(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_text), Field(max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DraftScene(_Strict):
    narration: Text
    caption: Annotated[str, Field(max_length=120)] | None = None
    source: str = Field(description="fingerprint of the source text this was drafted from")


class Draft(_Strict):
    """One language's translation in the sidecar."""

    status: Literal["unreviewed", "reviewed"] = "unreviewed"
    model: str
    license: str | None = None
    drafted: str
    reviewer: str | None = None
    reviewed: str | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
    title_source: str | None = None
    scenes: dict[str, DraftScene]
    notes: list[str] = Field(default_factory=list)     # for the reviewer: glossary misses
    accepted_deviations: list[str] = Field(default_factory=list)

    def texts(self) -> dict[str, tuple[str, str | None]]:
        """Scene id -> (narration, caption), as `glossary_notes` reads them."""
        return {sid: (scene.narration, scene.caption) for sid, scene in self.scenes.items()}


class Sidecar(_Strict):
    script: str
    languages: dict[str, Draft] = Field(default_factory=dict)


def sidecar_path(script: Path) -> Path:
    """`lockout.yaml` -> `lockout.translations.yaml`, beside it."""
    return script.with_name(script.stem + SUFFIX)


def fingerprint(*texts: str | None) -> str:
    joined = "\n".join(text or "" for text in texts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]


def read_sidecar(script: Path) -> tuple[Sidecar, LocatedYaml] | None:
    """The script's sidecar and its located YAML (for line numbers), or None if it has none."""
    path = sidecar_path(script)
    if not path.is_file():
        return None
    located = load_yaml(path, TranslationFileError)
    sidecar = validate(Sidecar, located, TranslationFileError)
    bad = [code for code in sidecar.languages if languages.canonical(code) != code]
    if bad:
        raise TranslationFileError(path, [Problem(located.line(("languages", code)),
                                                  f"languages.{code}", "unknown language code")
                                          for code in bad])
    return sidecar, located


HEADER = """\
# Machine-drafted translations of {script}, written by `sopreel translate`.
# Review each language: correct the text below, then approve it with
#   sopreel review {script} --lang LANG --approve --reviewer "Your Name"
# (or in the Prefect UI). Builds refuse a language that is not `status: reviewed`, unless
# run with --allow-unreviewed. `source` fingerprints the text each scene was drafted from:
# when the script's text changes, run `sopreel translate` again to re-draft those scenes.
"""


def write_sidecar(script: Path, sidecar: Sidecar) -> Path:
    from stages.assets import write_text_atomic

    path = sidecar_path(script)
    body = yaml.safe_dump(sidecar.model_dump(mode="json", exclude_defaults=False),
                          allow_unicode=True, sort_keys=False, width=100)
    write_text_atomic(path, HEADER.format(script=script.name) + body)
    return path


def scene_fingerprints(script: Script) -> dict[str, str]:
    return {scene.id: fingerprint(scene.narration, scene.caption) for scene in script.scenes}


def stale_scenes(draft: Draft, script: Script) -> list[str]:
    """Scenes whose source text changed (or that are new) since the draft was made."""
    current = scene_fingerprints(script)
    return [scene_id for scene_id, print_ in current.items()
            if scene_id not in draft.scenes or draft.scenes[scene_id].source != print_]


def check_fresh(draft: Draft, script: Script, language: str) -> None:
    """Refuse to review or approve a draft whose source text changed since it was made."""
    stale = stale_scenes(draft, script)
    if stale:
        raise SopreelError(f"{language}: the source text of scene(s) {', '.join(stale)} changed "
                           f"since the draft; run `sopreel translate ... --lang {language}` "
                           "again, review, then approve.")


def glossary_notes(script: Script, language: str, glossary: Glossary, *, title: str | None,
                   scenes: dict[str, tuple[str, str | None]]) -> list[str]:
    """A line per place where a translation does not use the glossary's agreed term."""
    source = script.language
    notes = []
    if title is not None:
        for term in glossary.missing(script.title, title, source, language):
            notes.append(f"title: use {term.describe()}")
    for scene in script.scenes:
        narration, caption = scenes.get(scene.id, ("", None))
        for field, original, translated in (("narration", scene.narration, narration),
                                            ("caption", scene.caption, caption)):
            for term in glossary.missing(original or "", translated or "", source, language):
                notes.append(f"scene {scene.id} {field}: use {term.describe()}")
    return notes


@dataclass
class Translator:
    """Turns source text into one target language with a backend, keeping to the glossary."""

    backend: TranslateBackend
    glossary: Glossary
    source: str
    target: str

    def texts(self, texts: list[str]) -> list[str]:
        """Each text translated sentence by sentence (models translate sentences best)."""
        source, target = languages.get(self.source), languages.get(self.target)
        sentences = [split_sentences(text, source) for text in texts]
        flat = [s for group in sentences for s in group]
        done = iter(self._sentences(flat))
        joiner = "" if target.writing == "han" else " "
        return [joiner.join(next(done) for _ in group) for group in sentences]

    def _sentences(self, sentences: list[str]) -> list[str]:
        """Plain translation first; where that misses a glossary term, translate again with
        the terms held in placeholders, and keep that if the model carried them through."""
        plain = self.backend.translate(sentences, languages.get(self.source),
                                       languages.get(self.target)) if sentences else []
        retry = [i for i, (s, t) in enumerate(zip(sentences, plain, strict=True))
                 if self.glossary.missing(s, t, self.source, self.target)]
        if not retry:
            return plain
        protected = [self.glossary.protect(sentences[i], self.source, self.target)
                     for i in retry]
        again = self.backend.translate([text for text, _ in protected],
                                       languages.get(self.source), languages.get(self.target))
        for i, (_, terms), text in zip(retry, protected, again, strict=True):
            restored = restore(text, terms)
            if restored is not None:
                plain[i] = restored
        return plain


def draft(script: Script, language: str, translator: Translator, previous: Draft | None, *,
          model: str, license: str | None,
          on_progress: Callable[[int, int], None] | None = None) -> tuple[Draft, list[str]]:
    """A draft for `language`: scenes whose source is unchanged keep their (perhaps reviewed)
    text; new and changed scenes, and the title, are drafted. Returns the draft and the ids of
    the scenes drafted now. Anything drafted makes the language unreviewed again."""
    redo = stale_scenes(previous, script) if previous else [s.id for s in script.scenes]
    title_source = fingerprint(script.title)
    redo_title = previous is None or previous.title_source != title_source
    by_id = {scene.id: scene for scene in script.scenes}
    scenes = {sid: text for sid, text in (previous.scenes if previous else {}).items()
              if sid in by_id and sid not in redo}
    untranslated = []
    for done, scene_id in enumerate(redo, start=1):
        scene = by_id[scene_id]
        narration, *caption = translator.texts([scene.narration, *filter(None, [scene.caption])])
        if not narration.strip():   # the reviewer must see it: the source stands in for now
            untranslated.append(f"scene {scene_id} narration: the model returned nothing; the "
                                "source text stands in, translate it")
        scenes[scene_id] = DraftScene(narration=narration or scene.narration,
                                      caption=caption[0][:120] if caption else None,
                                      source=fingerprint(scene.narration, scene.caption))
        if on_progress:
            on_progress(done, len(redo))
    title = translator.texts([script.title])[0][:200] if redo_title else previous.title
    ordered = {scene.id: scenes[scene.id] for scene in script.scenes}
    new = Draft(status="unreviewed", model=model, license=license,
                drafted=dt.date.today().isoformat(), title=title, title_source=title_source,
                scenes=ordered)
    notes = untranslated + glossary_notes(script, language, translator.glossary, title=title,
                                          scenes=new.texts())
    if previous is not None and not redo and not redo_title:
        return previous.model_copy(update={"notes": notes}), []
    return new.model_copy(update={"notes": notes}), redo


def approve(script: Script, language: str, current: Draft, glossary: Glossary, *,
            reviewer: str, accept_deviations: bool = False) -> Draft:
    """Mark a draft reviewed by `reviewer`; refused while it misses glossary terms, unless the
    reviewer accepts each deviation (recorded), or while its source text has changed."""
    if not reviewer.strip():
        raise SopreelError("Approving a translation needs the reviewer's name (--reviewer).")
    check_fresh(current, script, language)
    notes = glossary_notes(script, language, glossary, title=current.title,
                           scenes=current.texts())
    if notes and not accept_deviations:
        raise SopreelError(f"{language}: the translation does not follow the site glossary "
                           "(templates/glossary.yaml):\n  " + "\n  ".join(notes) + "\nCorrect "
                           "the text, or approve with --accept-deviations to record them.")
    return current.model_copy(update={
        "status": "reviewed", "reviewer": reviewer.strip(),
        "reviewed": dt.date.today().isoformat(), "notes": [], "accepted_deviations": notes})


def edited(current: Draft, title: str | None, scenes: dict[str, tuple[str, str | None]]) -> Draft:
    """The draft with a reviewer's corrections (still unreviewed until approved); an emptied
    narration keeps the old text. Validated again, as if read from the sidecar."""
    corrected = {}
    for scene_id, scene in current.scenes.items():
        narration, caption = scenes.get(scene_id, (scene.narration, scene.caption))
        corrected[scene_id] = {**scene.model_dump(), "narration": narration or scene.narration,
                               "caption": caption or None}
    return Draft.model_validate({**current.model_dump(), "title": title or current.title,
                                 "scenes": corrected})


def save_draft(script: Path, language: str, new: Draft) -> Path:
    """Write one language's draft, keeping the others as they are on disk now."""
    found = read_sidecar(script)
    current = found[0] if found else Sidecar(script=script.name)
    updated = {**current.languages, language: new}
    return write_sidecar(script, current.model_copy(update={"languages": updated}))


def load_draft(script: Path, language: str) -> Draft:
    found = read_sidecar(script)
    if found is None or language not in found[0].languages:
        raise SopreelError(f"{script.name} has no machine translation into {language} to review; "
                           f"draft one with `sopreel translate {script.name} --lang {language}`.")
    return found[0].languages[language]


def review_text(script: Script, language: str, current: Draft) -> str:
    """The source and the draft side by side, for a reviewer (Markdown)."""
    lines = [f"## {script.id}: {script.language} -> {language} ({current.status})",
             f"Drafted {current.drafted} by `{current.model}`"
             + (f"; reviewed by {current.reviewer} on {current.reviewed}" if current.reviewer
                else ""), "",
             f"**Title**: {script.title}  \n→ {current.title or '(none)'}", ""]
    for scene in script.scenes:
        text = current.scenes.get(scene.id)
        lines.append(f"**{scene.id}**: {scene.narration}  \n→ {text.narration if text else '?'}")
        if scene.caption:
            lines.append(f"*caption*: {scene.caption}  \n→ "
                         f"{(text.caption if text else None) or '(none)'}")
        lines.append("")
    if current.notes:
        lines += ["**Glossary** (templates/glossary.yaml):", *(f"- {n}" for n in current.notes)]
    return "\n".join(lines)
