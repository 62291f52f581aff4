"""`sopreel import`: from the SOP a team already has (Word, slides, PDF, Markdown, HTML) to a
script that validates, with every scene saying where in the document it came from.

    document = read_document(path)                  # a reader per format, found by suffix
    scenes = SceneBuilder(document, language)       # the rules in stages/importer/scenes.py
    rewriter.rewrite(scenes)                        # optional: an LLM makes it spoken text
    write_script(...)                               # pictures beside it, then the YAML

Nothing is half-written: pictures go to a temporary folder, the script to a temporary file,
and both are renamed into place only after the script passed the same checks as `validate`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stages import languages
from stages.assets import TEMP_PREFIX, file_sha256, write_text_atomic
from stages.errors import ScriptError, SopreelError
from stages.fonts import describe_chars, font_chain, missing_glyphs
from stages.importer.detect import detect_language
from stages.importer.document import Document, usable_picture
from stages.importer.scenes import SceneBuilder, SceneDraft, drop_logos, import_rules
from stages.paths import STYLES

if TYPE_CHECKING:
    from stages.importer.rewrite import Rewriter

READERS = {".docx": "word", ".pptx": "slides", ".pdf": "pdf", ".md": "markdown",
           ".markdown": "markdown", ".html": "webpage", ".htm": "webpage"}
OLD_FORMATS = {".doc": ".docx", ".ppt": ".pptx", ".rtf": ".docx", ".odt": ".docx",
               ".odp": ".pptx"}
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024
PICTURES_SUFFIX = ".pictures"
MAX_SCENES = 200            # what a script holds (stages/script.py)


@dataclass
class ImportResult:
    """What an import wrote, for the command line and the Prefect flow to report."""

    script: Path
    pictures: Path | None
    scenes: int
    photos: int
    language: str
    language_note: str
    warnings: list[str] = field(default_factory=list)
    rewritten: bool = False
    notes: list[str] = field(default_factory=list)      # the rewrite's, for the reviewer


def read_document(path: Path) -> Document:
    """The document's blocks, by the reader its suffix names; a clear error for anything else."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise SopreelError(f"{path}: no such file.")
    if suffix in OLD_FORMATS:
        raise SopreelError(f"{path}: {suffix} files are not read; save it as "
                           f"{OLD_FORMATS[suffix]} (File > Save As) and import that.")
    if suffix not in READERS:
        raise SopreelError(f"{path}: cannot import {suffix or 'a file without an extension'}; "
                           f"expected one of {', '.join(sorted(READERS))}.")
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise SopreelError(f"{path}: larger than {MAX_DOCUMENT_BYTES // 2**20} MB.")
    reader = importlib.import_module(f"stages.importer.{READERS[suffix]}")
    try:
        return reader.read(path)
    except SopreelError:
        raise
    except _unreadable() as exc:
        kind = {".docx": "Word document", ".pptx": "PowerPoint deck"}.get(suffix, "document")
        raise SopreelError(f"{path}: not a readable {kind} ({type(exc).__name__}: "
                           f"{str(exc)[:200]}).") from None


def _unreadable() -> tuple[type[Exception], ...]:
    """What the document libraries raise for a file that is not what its name says."""
    from docx.opc.exceptions import PackageNotFoundError as WordPackageError
    from lxml.etree import XMLSyntaxError
    from pptx.exc import PackageNotFoundError as SlidesPackageError
    from pypdf.errors import PyPdfError

    return (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, WordPackageError,
            SlidesPackageError, XMLSyntaxError, PyPdfError)


def import_document(path: str | Path, out: str | Path | None = None, *,
                    language: str | None = None, style: str = "clean-industrial",
                    rewriter: Rewriter | None = None, force: bool = False,
                    on_progress: Callable[[int, int], None] | None = None) -> ImportResult:
    """Import `path` into a script at `out` (default: beside it, NAME.yaml)."""
    path = Path(path).expanduser().absolute()
    target = Path(out).expanduser().absolute() if out else path.with_suffix(".yaml")
    _check_target(path, target, style, force)
    document = read_document(path)
    code, note = _language(document, language)
    builder = SceneBuilder(document, code)
    scenes = builder.scenes
    if not scenes:
        raise SopreelError(f"{path}: found no text to make scenes from.")
    if len(scenes) > MAX_SCENES:
        raise SopreelError(f"{path}: makes {len(scenes)} scenes; a script holds at most "
                           f"{MAX_SCENES} (a video of well over an hour). Import it in parts: "
                           "save each chapter as its own document.")
    warnings = builder.warnings + drop_logos(scenes)
    title = builder.title or _humanize(path.stem)
    _name_scenes(scenes)
    notes: list[str] = []
    if rewriter is not None:
        notes = rewriter.rewrite(scenes, code, title, on_progress=on_progress)
    warnings += _fit_to_fonts(scenes, code)
    imported = _imported(path, target, rewriter, notes)
    pictures, photos = _write(target, scenes, warnings, lambda images: _script_data(
        imported, title, path.stem, code, style, scenes, images, rewriter is not None))
    return ImportResult(target, pictures, len(scenes), photos, code, note, warnings,
                        rewriter is not None, notes)


def _check_target(path: Path, target: Path, style: str, force: bool) -> None:
    if target.suffix.lower() not in (".yaml", ".yml"):
        raise SopreelError(f"--out {target}: a script is a .yaml file.")
    if target.exists() and not force:
        raise SopreelError(f"{target} exists; choose another --out, or replace it with --force.")
    if target.resolve() == path.resolve():
        raise SopreelError(f"--out {target} is the document itself.")
    available = sorted(p.stem for p in STYLES.glob("*.yaml"))
    if style not in available:
        raise SopreelError(f"--style {style}: unknown style; available: {', '.join(available)}.")


def _language(document: Document, given: str | None) -> tuple[str, str]:
    if given:
        code = languages.get(given).code
        return code, "as given"
    text = " ".join([document.title or ""] + [b.text + " " + " ".join(b.lines) + " " +
                                              " ".join(c for row in b.rows for c in row)
                                              for b in document.blocks])
    return detect_language(text)


def _name_scenes(scenes: list[SceneDraft]) -> None:
    """Ids from the caption's (or narration's) first Latin words; unique; 'scene-07' when the
    text has no Latin letters (Thai, Chinese)."""
    taken: set[str] = set()
    for number, scene in enumerate(scenes, start=1):
        base = _slug(scene.caption or scene.narration, words=6, length=40)
        if not re.search(r"[a-z]{2}", base):     # no Latin words: numbered
            base = f"scene-{number:02d}"
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(candidate)
        scene.id = candidate


def _slug(text: str, words: int, length: int) -> str:
    """'Step 2: Isolate the energy' -> 'step-2-isolate-the-energy' (Latin letters, digits)."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words])[:length].strip("-")


def _fit_to_fonts(scenes: list[SceneDraft], code: str) -> list[str]:
    """Characters no installed font can draw (a symbol font's bullets, emoji) are left out of
    what is shown and spoken, each named once in the warnings."""
    chain = font_chain(languages.get(code).font)
    dropped: list[str] = []
    for scene in scenes:
        for name in ("narration", "caption"):
            text = getattr(scene, name)
            missing = missing_glyphs(text or "", chain)
            if missing:
                setattr(scene, name, " ".join("".join(c for c in text if c not in missing)
                                              .split()) or None)
                dropped += missing
        if not scene.narration:
            scene.narration = scene.caption or scene.id
    unique = list(dict.fromkeys(dropped))
    return [f"left out characters no installed font can show: {describe_chars(unique)}"] \
        if unique else []


def _visual(scene: SceneDraft) -> str:
    """A prompt for the image model when the document has no picture for the scene (an LLM
    rewrite writes a better one)."""
    first = scene.narration.split(". ")[0].strip()
    lead = "Safety warning sign. " if scene.kind == "warning" else ""
    section = scene.section
    context = f"{section}: " if section and section not in first else ""
    return f"{lead}{context}{first}"[:300]


def _imported(path: Path, target: Path, rewriter: Rewriter | None,
              notes: list[str]) -> dict[str, Any]:
    """The script's `imported:` block: the document (relative to the script when beside it),
    its sha256, the date, and an LLM rewrite's review state."""
    source_file = os.path.relpath(path, target.parent) if path.is_relative_to(target.parent) \
        else str(path)
    imported: dict[str, Any] = {"file": source_file, "sha256": file_sha256(path),
                                "date": dt.date.today().isoformat()}
    if rewriter is not None:
        imported["rewrite"] = {"model": rewriter.model, "server": rewriter.server,
                               "status": "unreviewed", "reviewer": None, "reviewed": None,
                               "notes": notes}
    return imported


def _script_data(imported: dict[str, Any], title: str, stem: str, code: str, style: str,
                 scenes: list[SceneDraft], images: dict[str, str],
                 rewritten: bool) -> dict[str, Any]:
    """The script as data, scene keys in the order a reader expects; `images` are the photos
    written, by scene id (the others get a visual prompt)."""
    items = []
    for scene in scenes:
        item: dict[str, Any] = {"id": scene.id}
        if scene.caption:
            item["caption"] = scene.caption
        item["narration"] = scene.narration
        if scene.id in images:
            item["image"] = images[scene.id]
        else:
            item["visual"] = scene.visual or _visual(scene)
        item["source"] = {"file": imported["file"], **scene.where,
                          **({"text": scene.original[:4000]} if rewritten else {})}
        items.append(item)
    script_id = _slug(title, words=64, length=64) or _slug(stem, words=64, length=64) \
        or "imported-sop"
    return {"id": script_id, "title": title[:200], "language": code, "languages": [code],
            "voice": "stock", "music": import_rules().music, "style": style,
            "imported": imported, "scenes": items}


def _humanize(stem: str) -> str:
    return " ".join(re.split(r"[_\-\s]+", stem)).strip() or "Imported SOP"


HEADER = """\
# Imported from {file} by `sopreel import` on {date}.
# Each scene's `source` says where in the document it came from: check the narration against
# it, edit freely (captions, visual prompts, photos), then `sopreel validate` and build.
"""
REWRITE_HEADER = """\
# An LLM ({model}) rewrote the document's text as narration. Until a person checks it against
# the document and approves it, builds refuse it:
#   sopreel review {script} --approve --reviewer "Your Name"     (or in the Prefect UI)
"""


def render_script(data: dict[str, Any], script_name: str) -> str:
    """The script's YAML with the header that tells a reviewer what to do."""
    imported = data["imported"]
    header = HEADER.format(file=imported["file"], date=imported["date"])
    rewrite = imported.get("rewrite")
    if rewrite and rewrite.get("status") != "reviewed":
        header += REWRITE_HEADER.format(model=rewrite["model"], script=script_name)
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
    return header + body


def _write(target: Path, scenes: list[SceneDraft], warnings: list[str],
           script_data: Callable[[dict[str, str]], dict[str, Any]]) -> tuple[Path | None, int]:
    """Pictures into NAME.pictures/, then the script (`script_data` of the photos written),
    each renamed into place; checked like `validate`, and removed again if that fails.
    Returns the pictures folder (None without photos) and how many photos it holds."""
    from stages.script import load_script

    folder = target.parent / f"{target.stem}{PICTURES_SUFFIX}"
    staging = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}{PICTURES_SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        images = _write_pictures(staging, folder.name, scenes, warnings)
        text = render_script(script_data(images), target.name)
        if images:
            _replace_folder(staging, folder)
        elif folder.exists():
            shutil.rmtree(folder)
        write_text_atomic(target, text)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        load_script(target, only_languages=[], allow_unreviewed=True)
    except ScriptError as exc:
        target.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        raise SopreelError(f"sopreel import made a script that does not validate; this is a bug "
                           f"in sopreel, please report it with the document:\n{exc}") from None
    return (folder if images else None), len(images)


def _write_pictures(folder: Path, final_name: str, scenes: list[SceneDraft],
                    warnings: list[str]) -> dict[str, str]:
    """Each scene's usable picture as <scene id>.<ext> in `folder`; returns scene id -> the
    path the script names (in `final_name`, the folder's name once in place)."""
    folder.mkdir(parents=True)
    images = {}
    for scene in scenes:
        if scene.picture is None:
            continue
        usable = usable_picture(scene.picture)
        if isinstance(usable, str):
            warnings.append(f"scene {scene.id}: {usable}; it gets a visual prompt instead")
            continue
        content, extension = usable
        (folder / f"{scene.id}{extension}").write_bytes(content)
        images[scene.id] = f"{final_name}/{scene.id}{extension}"
    return images


def _replace_folder(new: Path, final: Path) -> None:
    """Replace `final` with `new` (a previous import's pictures are removed after)."""
    old = None
    if final.exists():
        old = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-old{PICTURES_SUFFIX}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
