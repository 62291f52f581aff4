"""A document as `sopreel import` sees it: a title and blocks in reading order.

Every reader (Word, slides, PDF, Markdown, HTML) turns its format into the same few kinds of
block, each with where it came from, so one set of rules (stages/importer/scenes.py) makes
scenes from all of them.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, UnidentifiedImageError

BlockKind = Literal["heading", "paragraph", "item", "table", "slide"]
KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
MIN_PICTURE_SIDE = 100      # smaller pictures are icons, bullets and logos, not scene photos
_BULLET = re.compile(r"^[\s•◦▪▫●○■□➢➤►▶✓✔☐☑\-–—*·]+\s*")
_INVISIBLE = {"Cc", "Cf", "Co", "Cs"}
# C1 control codes as Windows-1252 reads them (\x92 -> ’), and the ligatures ﬁ ﬂ ﬀ ﬃ ﬄ ﬅ ﬆ.
_REPAIRS = {**{code: bytes([code]).decode("cp1252", errors="ignore") or None
               for code in range(0x80, 0xA0)},
            **{code: unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}}
_NUMBER_CELL = re.compile(r"\s*(\d{1,3})\s*[.)、．]?\s*")
_NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[.)、．]\s*(?=[^\d\s])")   # not "4.1 Scope"


@dataclass(frozen=True)
class Picture:
    """A picture embedded in the document, as its bytes."""

    data: bytes
    name: str          # for messages: where it was found

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Block:
    """One piece of the document.

    heading: `level` 1 is the top. item: a list item, `level` 0 at the top of its list,
    `numbered` for ordered lists. table: `rows` of cell texts, the first row the header when
    the document marks one. slide: one slide, `text` its speaker notes, `lines` its body,
    `title` its title. `pictures` are those the block holds (a slide: its largest). `where`
    is what a reviewer looks up: {"page": 3}, {"slide": 2}, {"paragraph": 14}, {"line": 20},
    {"table": 1}.
    """

    kind: BlockKind
    text: str = ""
    where: dict[str, int] = field(default_factory=dict)
    level: int = 0
    numbered: bool = False
    number: int | None = None       # the number the document shows, when it shows one
    warning: bool = False           # marked as a warning by the format (a styled box)
    rows: list[list[str]] = field(default_factory=list)
    row_pictures: list[list[Picture]] = field(default_factory=list)   # a table's, per row
    title: str = ""
    lines: list[str] = field(default_factory=list)   # a slide's body text, a line per paragraph
    pictures: list[Picture] = field(default_factory=list)


@dataclass
class Document:
    """What a reader found: the title (when the format records one) and the blocks."""

    title: str | None
    blocks: list[Block]
    warnings: list[str] = field(default_factory=list)


def clean(text: str) -> str:
    """Text as it should be spoken and shown: no bullets, invisible or private-use characters
    (symbol-font bullets), soft hyphens or runs of whitespace; Windows-1252 quotes that PDFs
    leave as C1 control codes become the quotes they are, typographic ligatures letters."""
    text = unicodedata.normalize("NFC", text.replace("\u00ad", "").translate(_REPAIRS))
    text = "".join(" " if c in "\t\n\r\v\f\u00a0\u2028\u2029" else c for c in text
                   if c in "\t\n\r\v\f" or unicodedata.category(c) not in _INVISIBLE)
    return _BULLET.sub("", " ".join(text.split())).strip()


def cell_number(cell: str) -> int | None:
    """'3', '3.' or '3)': a table cell or list marker that is only a step number."""
    match = _NUMBER_CELL.fullmatch(cell)
    return int(match.group(1)) if match else None


def leading_number(text: str) -> tuple[int | None, str]:
    """'3. Lock the isolator' -> (3, 'Lock the isolator'): numbering typed into the text."""
    match = _NUMBERED.match(text)
    if match is None:
        return None, text
    return int(match.group(1)), text[match.end():].strip()


def usable_picture(picture: Picture) -> tuple[bytes, str] | str:
    """(bytes, extension) of a picture fit to be a scene photo, or why it is not: JPEG, PNG
    and WEBP are kept as they are; other formats Pillow reads (GIF, BMP, TIFF) become PNG."""
    try:
        with Image.open(io.BytesIO(picture.data)) as image:
            width, height = image.size
            if min(width, height) < MIN_PICTURE_SIDE:
                return f"{picture.name} is {width}x{height} pixels, too small for a scene"
            if image.format in KEPT_FORMATS:
                return picture.data, KEPT_FORMATS[image.format]
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue(), ".png"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return f"{picture.name} is in a format sopreel cannot read (EMF, WMF, SVG?)"
