"""From a document's blocks to scenes: the rules `sopreel import` follows, in one place.

- A numbered list item is a step: a scene of its own, captioned "Step N: <section heading>";
  items nested under it are read as part of it. A bulleted item that is a sentence is a scene
  too; a run of short bullets (a list of PPE) is one scene.
- A table whose rows are steps (its first header cell says "Step", or its first column counts
  1, 2, 3) is a scene per row; any other table is read out row by row as running text.
- A warning (a paragraph starting with Warning, Caution, Danger, 注意, 警告, คำเตือน, Cảnh báo
  ..., or a format's warning box) is a scene of its own, captioned with the warning.
- Running text is cut between sentences into scenes of a readable length, captioned with its
  section's heading. A heading with no running text of its own is a short scene of its own
  (a chapter card before its steps).
- A slide is one scene: its notes (else its body) the narration, its title the caption.
- A picture belongs to the scene its paragraph, item, row or slide makes; a picture on its own
  goes to the scene before it, unless that scene has one. A picture found three times or more
  is a logo and is left out.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from functools import cache
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from stages import languages
from stages.errors import DataFileError
from stages.importer.document import Block, Document, Picture, cell_number, leading_number
from stages.languages import Language
from stages.paths import TEMPLATES
from stages.text import speech_parts, split_sentences, width
from stages.yamlfile import load_yaml, validate

MAX_NARRATION = 1900      # the script allows 2000 characters
MAX_CAPTION = 120
SHORT_BULLET = {"latin": 40, "han": 14, "thai": 24}
LOGO_REPEATS = 3
Where = TypeVar("Where")
JUNK_TITLE = re.compile(r"^microsoft (word|powerpoint) - |\.(docx?|pptx?|pdf)$|^untitled|"
                        r"^presentation\d*$|^document\d*$", re.IGNORECASE)


class ImportRules(BaseModel):
    """templates/import.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning_words: list[str]
    step_words: dict[str, str]
    step_headers: list[str]
    scene_chars: dict[str, int]
    music: str


@cache
def import_rules() -> ImportRules:
    return validate(ImportRules, load_yaml(TEMPLATES / "import.yaml", DataFileError),
                    DataFileError)


@dataclass
class SceneDraft:
    """One scene as imported, before it is written: `where` says where it came from."""

    kind: str                      # step, warning, section, slide, text
    narration: str
    where: dict[str, int]
    caption: str | None = None
    picture: Picture | None = None
    original: str = ""             # the document's own words, for the reviewer and the LLM
    id: str = ""
    visual: str | None = None
    section: str | None = None     # the heading it is under (context for prompts)


class SceneBuilder:
    """Walks the blocks once, in order; `scenes` holds the result."""

    def __init__(self, document: Document, language: str):
        self.language: Language = languages.get(language)
        self.rules = import_rules()
        self.title = document.title
        self.scenes: list[SceneDraft] = []
        self.warnings: list[str] = list(document.warnings)
        self.heading: str | None = None
        self.heading_where: dict[str, int] = {}
        self.section_has_scene = True
        self.step = 0
        self.step_scene: SceneDraft | None = None
        self.bullets: SceneDraft | None = None
        self.running: list[tuple[str, dict[str, int]]] = []
        self.waiting: list[Picture] = []
        self.warning_label: str | None = None
        if self.title and JUNK_TITLE.search(self.title):
            self.title = None     # "Microsoft Word - sop.docx", a template's name
        blocks = self._take_title(document.blocks)
        for block in blocks:
            self.add(block)
        self.flush()
        if self.waiting and self.scenes and self.scenes[-1].picture is None:
            self.scenes[-1].picture = self.waiting.pop(0)
        self.scenes = [part for scene in self.scenes for part in _fit(scene, self.language)]

    def _take_title(self, blocks: list[Block]) -> list[Block]:
        """The first heading is the title when nothing but pictures comes before it and it is
        the document's only top heading, or the title the file records: what readers see
        wins over the file's properties."""
        first = next((i for i, b in enumerate(blocks) if b.text or b.kind != "paragraph"), None)
        if first is None or blocks[first].kind != "heading":
            return blocks
        heading = blocks[first]
        top = min(b.level for b in blocks if b.kind == "heading")
        unique = sum(b.kind == "heading" and b.level == top for b in blocks) == 1
        if heading.text != self.title and not (heading.level == top and unique):
            return blocks
        self.title = heading.text
        self.waiting += heading.pictures
        return blocks[:first] + blocks[first + 1:]

    # --- blocks -------------------------------------------------------------------------

    def add(self, block: Block) -> None:
        if block.kind in ("paragraph", "item") and not block.warning:
            number, rest = leading_number(block.text)
            if number is not None:    # numbering typed into the text: "3. Lock the isolator"
                block = replace(block, kind="item", text=rest, numbered=True, number=number)
        if block.kind == "slide":
            self.slide(block)
        elif block.kind == "heading":
            self.flush()
            self.intro()       # the heading before had no text of its own
            self.heading, self.heading_where = block.text, block.where
            self.section_has_scene, self.step = False, 0
            self.step_scene = self.bullets = None
            self.waiting += block.pictures
        elif block.kind == "table" and max((len(r) for r in block.rows), default=0) == 1:
            for row, pictures in zip(block.rows, block.row_pictures or [[]] * len(block.rows),
                                     strict=False):   # a box: a warning, a note
                self.add(Block("paragraph", row[0], block.where, pictures=pictures))
        elif block.kind == "table":
            self.flush()
            self.table(block)
        elif not block.text:
            self.picture(block.pictures)
        elif self.warning_label is not None:      # the text under a "WARNING" line
            label, self.warning_label = self.warning_label, None
            self.flush()
            colon = "：" if self.language.writing == "han" else ": "
            self.warning(Block(block.kind, f"{label}{colon}{block.text}", block.where,
                               pictures=block.pictures))
        elif self.warning_word(block.text) == block.text.rstrip(" :：!！"):
            self.warning_label = self.warning_word(block.text)    # a label on a line of its own
        elif block.warning or self.warning_word(block.text):
            self.flush()
            self.warning(block)
        elif block.kind == "item":
            self.item(block)
        else:
            self.running.append((block.text, block.where))
            self.waiting += block.pictures

    def item(self, block: Block) -> None:
        if block.level > 0 and (self.step_scene or self.bullets):   # part of the step above
            target = self.step_scene or self.bullets
            target.narration = _join(target.narration, block.text, self.language)
            target.original = _join(target.original, block.text, self.language)
            self.attach(target, block.pictures)
            return
        self.flush()
        if block.numbered:
            self.intro()
            self.step = block.number if block.number is not None else self.step + 1
            self.bullets = None
            self.step_scene = self.emit(SceneDraft(
                "step", _sentence(block.text, self.language), block.where,
                caption=self.step_caption(self.step), original=block.text))
            self.attach(self.step_scene, block.pictures)
        elif width(block.text) <= SHORT_BULLET[self.language.writing]:
            if self.bullets is None:
                self.section_has_scene = True     # the heading is the group's caption
                self.bullets = self.emit(SceneDraft("text", "", block.where,
                                                    caption=self.heading))
            self.bullets.narration = _join(self.bullets.narration, block.text, self.language)
            self.bullets.original = _join(self.bullets.original, block.text, self.language)
            self.attach(self.bullets, block.pictures)
        else:
            self.intro()
            self.bullets = None
            self.step_scene = self.emit(SceneDraft(
                "step", _sentence(block.text, self.language), block.where,
                caption=self.heading, original=block.text))
            self.attach(self.step_scene, block.pictures)

    def table(self, block: Block) -> None:
        rows = [row for row in block.rows if any(row)]
        pictures = block.row_pictures + [[]] * (len(block.rows) - len(block.row_pictures))
        if not rows:
            return
        header = rows[0] if not _counts(rows[0][:1]) else None
        body = rows[1:] if header else rows
        steps = (header is not None and header[0].lower().strip(" :：") in
                 {w.lower() for w in self.rules.step_headers}) or _counts([r[0] for r in body])
        if not steps:
            text = _join_all([_row_text(row, header, 0, self.language) for row in body],
                             self.language)
            self.running.append((text, {**block.where, "row": 2 if header else 1}))
            self.flush()
            return
        self.intro()
        for index, row in enumerate(block.rows):
            if (header is not None and index == 0) or not any(row):
                continue
            number = cell_number(row[0])
            self.step = number if number is not None else self.step + 1
            text = _row_text(row, header, 1 if number is not None or header else 0,
                             self.language)
            if not text:
                continue
            scene = self.emit(SceneDraft("step", _sentence(text, self.language),
                                         {**block.where, "row": index + 1},
                                         caption=self.step_caption(self.step), original=text))
            self.attach(scene, pictures[index])
        self.step_scene = None

    def warning(self, block: Block) -> None:
        word = self.warning_word(block.text)
        rest = block.text[len(word):].lstrip(" :：!！-–—") if word else block.text
        colon = "：" if self.language.writing == "han" else ": "
        caption = f"{word}{colon}{rest}" if word else rest
        if word and len(caption) > MAX_CAPTION:
            caption = word
        scene = self.emit(SceneDraft("warning", _sentence(block.text, self.language),
                                     block.where, caption=shorten(caption, MAX_CAPTION),
                                     original=block.text))
        self.attach(scene, block.pictures)
        self.step_scene = self.bullets = None

    def slide(self, block: Block) -> None:
        narration = block.text or " ".join(_sentence(line, self.language) for line in
                                           block.lines) or block.title
        if not narration:
            self.warnings.append(f"slide {block.where['slide']} has no text; left out")
            return
        scene = self.emit(SceneDraft("slide", _sentence(narration, self.language), block.where,
                                     caption=block.title or None, original=narration))
        self.attach(scene, block.pictures)

    def picture(self, pictures: list[Picture]) -> None:
        if self.running or not self.scenes or self.scenes[-1].picture is not None:
            self.waiting += pictures
        else:
            self.attach(self.scenes[-1], pictures)

    # --- scenes -------------------------------------------------------------------------

    def intro(self) -> None:
        """A heading with no running text of its own is a scene before its steps."""
        if not self.section_has_scene and self.heading:
            self.emit(SceneDraft("section", _sentence(self.heading, self.language),
                                 self.heading_where, caption=self.heading))

    def flush(self) -> None:
        """Running text so far, cut between sentences into scenes of a readable length."""
        pieces = [(piece, where) for text, where in self.running
                  for piece in _sentence_pieces(text, self.language)]
        limit = self.rules.scene_chars[self.language.writing]
        for text, where in _packed(pieces, limit, self.language):
            self.emit(SceneDraft("text", text, where, caption=self.heading, original=text))
        if self.running:    # running text ends the steps above it
            self.step_scene = self.bullets = None
        self.running = []

    def emit(self, scene: SceneDraft) -> SceneDraft:
        scene.section = scene.section or self.heading
        scene.caption = shorten(scene.caption, MAX_CAPTION) if scene.caption else None
        self.scenes.append(scene)
        self.section_has_scene = True
        if self.waiting and scene.picture is None:
            scene.picture = self.waiting.pop(0)
        return scene

    def attach(self, scene: SceneDraft, pictures: list[Picture]) -> None:
        for picture in pictures:
            if scene.picture is None:
                scene.picture = picture
            else:
                self.waiting.append(picture)

    def step_caption(self, number: int) -> str:
        word = self.rules.step_words.get(self.language.code, self.rules.step_words["en"])
        label = f"{word}{number}" if self.language.writing == "han" else f"{word} {number}"
        if not self.heading:
            return label
        colon = "：" if self.language.writing == "han" else ": "
        return shorten(f"{label}{colon}{self.heading}", MAX_CAPTION)

    def warning_word(self, text: str) -> str:
        for word in sorted(self.rules.warning_words, key=len, reverse=True):
            if text[:len(word)].lower() == word.lower():
                after = text[len(word):len(word) + 1]
                if not after or after in " :：!！-–—" or self.language.writing != "latin":
                    return text[:len(word)]
        return ""


def _fit(scene: SceneDraft, language: Language) -> list[SceneDraft]:
    """A scene whose narration is longer than a script allows (a step with a long list under
    it, long speaker notes) as several, cut between sentences; the first keeps the picture."""
    if len(scene.narration) <= MAX_NARRATION:
        return [scene]
    parts = _packed([(piece, None) for piece in _sentence_pieces(scene.narration, language)],
                    MAX_NARRATION, language)
    return [replace(scene, narration=text, original=text,
                    picture=scene.picture if index == 0 else None)
            for index, (text, _) in enumerate(parts)]


def _sentence_pieces(text: str, language: Language) -> list[str]:
    """`text`'s sentences; one longer than a scene may hold (a run-on PDF paragraph) in the
    parts a speaker would pause between (stages.text.speech_parts)."""
    return [part for sentence in split_sentences(text, language)
            for part in speech_parts(sentence, language, lambda t: len(t) <= MAX_NARRATION)]


def _packed(pieces: list[tuple[str, Where]], limit: int, language: Language
            ) -> list[tuple[str, Where]]:
    """Consecutive pieces joined as sentences into texts of at most `limit` characters, each
    with the `where` of its first piece."""
    chunks: list[tuple[list[str], Where]] = []
    for piece, where in pieces:
        if chunks and len(_join_all([*chunks[-1][0], piece], language)) <= limit:
            chunks[-1][0].append(piece)
        else:
            chunks.append(([piece], where))
    return [(_join_all(texts, language), where) for texts, where in chunks]


def drop_logos(scenes: list[SceneDraft]) -> list[str]:
    """Pictures found three times or more are logos and letterheads: left out."""
    counts = Counter(s.picture.sha256 for s in scenes if s.picture is not None)
    logos = {sha for sha, count in counts.items() if count >= LOGO_REPEATS}
    for scene in scenes:
        if scene.picture is not None and scene.picture.sha256 in logos:
            scene.picture = None
    return [f"a picture repeated {counts[sha]} times (a logo?) was left out" for sha in logos]


def _counts(cells: list[str]) -> bool:
    """Cells that count 1, 2, 3 ... (a steps column)."""
    numbers = [cell_number(cell) for cell in cells]
    return bool(numbers) and all(n is not None for n in numbers) and \
        numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def _row_text(row: list[str], header: list[str] | None, skip: int, language: Language) -> str:
    """A table row read out, a sentence per cell: the first as it is, the others as
    'Header: value'."""
    parts = []
    for index, cell in enumerate(row[skip:], start=skip):
        if not cell:
            continue
        label = header[index] if header and index < len(header) else ""
        parts.append(f"{label}: {cell}" if label and parts else cell)
    return _join_all(parts, language) if parts else ""


def _sentence(text: str, language: Language) -> str:
    """`text` ending as a sentence does in its language."""
    text = text.strip()
    if not text or language.writing == "thai" or text[-1] in language.sentence_end + "。.!?！？":
        return text
    return text + ("。" if language.writing == "han" else ".")


def _join(first: str, then: str, language: Language) -> str:
    return _join_all([s for s in (first, _sentence(then, language)) if s], language)


def _join_all(sentences: list[str], language: Language) -> str:
    pieces = [_sentence(s, language) for s in sentences[:-1]] + sentences[-1:]
    return ("" if language.writing == "han" else " ").join(pieces)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"
