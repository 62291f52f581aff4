"""PDF documents through pypdf (BSD): text with its font sizes and positions, and pictures.

A PDF keeps no paragraphs, lists or tables, only text placed on a page, so they are read back
from the layout: text runs on one baseline make a line; a line set larger than the body text
(or all bold and short) is a heading, the larger the higher; consecutive lines close together
make a paragraph; lines with text in several columns make table rows; a line starting with a
number or bullet starts a list item. Pictures sit where the page draws them. One column of text
is assumed; a two-column layout reads across the columns.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stages.errors import SopreelError
from stages.importer.document import (
    Block,
    Document,
    Picture,
    cell_number,
    clean,
    leading_number,
)

_BULLET_START = re.compile(r"^\s*(?:[•◦▪●○■➢➤►]|[\-–*](?:\s|$))")
HEADING_RATIO = 1.15        # a line this much larger than the body text is a heading
PAGE_NUMBER = re.compile(r"(page\s*|p\.\s*|-\s*)?#(\s*(/|of)\s*#)?(\s*-)?")
MARGIN = 0.075              # running headers and footers sit in the page's top and bottom 7.5%
CELL_GAP = 1.0              # a gap this many font sizes wide between runs separates cells


@dataclass
class _Run:
    text: str
    x: float
    y: float
    size: float
    bold: bool


@dataclass
class _Line:
    y: float
    runs: list[_Run] = field(default_factory=list)

    @property
    def text(self) -> str:
        return clean(" ".join(run.text for run in self.runs))

    @property
    def bulleted(self) -> bool:
        """Starts with a bullet (which `text`, cleaned, no longer shows): a bullet character,
        or a lone symbol drawn on its own (a symbol font's bullet, which extracts as anything
        from U+007F to a private-use character)."""
        first = min(self.runs, key=lambda run: run.x).text.strip()
        lone_symbol = len(first) == 1 and not first.isalnum() and len(self.runs) > 1
        return bool(self.text) and (bool(_BULLET_START.match(first)) or lone_symbol)

    @property
    def size(self) -> float:
        return max(self.runs, key=lambda run: len(run.text.strip())).size

    @property
    def bold(self) -> bool:
        return all(run.bold for run in self.runs if run.text.strip())

    def cells(self) -> list[tuple[float, str]]:
        """(x, text) of the line's cells: runs far apart are separate cells."""
        cells: list[tuple[float, str, float]] = []   # x, text, estimated end
        for run in sorted(self.runs, key=lambda r: r.x):
            text = run.text.strip()
            if not text:
                continue
            if cells and run.x - cells[-1][2] < CELL_GAP * run.size:
                x, joined, _ = cells[-1]
                cells[-1] = (x, f"{joined} {text}", run.x + _width(text, run.size))
            else:
                cells.append((run.x, text, run.x + _width(text, run.size)))
        return [(x, clean(text)) for x, text, _ in cells if clean(text)]   # not a lone bullet


def _width(text: str, size: float) -> float:
    """A generous estimate of a run's width (no font metrics): wide for CJK."""
    return sum(size if ord(c) > 0x2E80 else size * 0.5 for c in text)


def read(path: Path) -> Document:
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted and reader.decrypt("") == 0:
            raise SopreelError(f"{path}: the PDF is password-protected; save an unprotected "
                               "copy and import that.")
        pages = [_page(page) for page in reader.pages]
    except PdfReadError as exc:
        raise SopreelError(f"{path}: not a readable PDF ({exc}).") from None
    pages = _without_page_furniture(pages, [float(page.mediabox.height) for page in
                                            reader.pages])
    lines = [line for page_lines, _ in pages for line in page_lines]
    if not any(line.text for line in lines):
        raise SopreelError(f"{path}: the PDF has no text to read (a scan?); run it through OCR "
                           "first, or import the document it was made from.")
    body = _body_size(lines)
    heading_sizes = sorted({round(line.size) for line in lines if _is_heading(line, body)},
                           reverse=True)
    blocks: list[Block] = []
    for number, (page_lines, pictures) in enumerate(pages, start=1):
        blocks += _blocks(page_lines, pictures, number, body, heading_sizes)
    return Document(title=_title(reader), blocks=blocks)


def _page(page) -> tuple[list[_Line], list[tuple[float, Picture]]]:
    """The page's lines, top to bottom, and its pictures with the height they start at."""
    runs: list[_Run] = []
    drawn: dict[str, float] = {}

    def text(content, cm, tm, font, size) -> None:
        if not content.strip():
            return
        matrix = _multiply(tm, cm)
        scale = math.hypot(matrix[2], matrix[3]) or 1.0
        name = str((font or {}).get("/BaseFont", ""))
        runs.append(_Run(content, matrix[4], matrix[5], size * scale, "bold" in name.lower()))

    def operator(op, args, cm, tm) -> None:
        if op == b"Do" and args:
            drawn[str(args[0]).lstrip("/")] = cm[5] + cm[3]   # the picture's top edge

    page.extract_text(visitor_text=text, visitor_operand_before=operator)
    lines: list[_Line] = []
    for run in sorted(runs, key=lambda r: (-round(r.y), r.x)):
        if lines and abs(lines[-1].y - run.y) < 0.3 * run.size:
            lines[-1].runs.append(run)
        else:
            lines.append(_Line(run.y, [run]))
    pictures = []
    for image in _images(page):
        top = drawn.get(image.name.rsplit(".", 1)[0], -math.inf)
        pictures.append((top, Picture(image.data, f"a picture on page {page.page_number + 1}")))
    return lines, pictures


def _without_page_furniture(pages: list[tuple[list[_Line], list]], heights: list[float]
                            ) -> list[tuple[list[_Line], list]]:
    """Pages without their running headers and footers and bare page numbers ("3", "Page 3
    of 10"): in the page's top and bottom margins, a line found at the same height and with
    the same words (numbers aside) on at least half of three or more pages, or a page
    number."""
    def shape(line: _Line) -> str:
        words = re.sub(r"\d+", "#", line.text).strip().lower()
        return f"{round(line.y / 4)}:{words}"

    def margins(page_lines: list[_Line], height: float) -> list[_Line]:
        return [line for line in page_lines
                if line.y < height * MARGIN or line.y > height * (1 - MARGIN)]

    seen: Counter[str] = Counter()
    for (page_lines, _), height in zip(pages, heights, strict=True):
        seen.update({shape(line) for line in margins(page_lines, height)})
    repeated = {text for text, count in seen.items()
                if len(pages) >= 3 and count >= max(3, len(pages) // 2)}
    kept = []
    for (page_lines, pictures), height in zip(pages, heights, strict=True):
        furniture = {id(line) for line in margins(page_lines, height)
                     if shape(line) in repeated
                     or PAGE_NUMBER.fullmatch(shape(line).split(":", 1)[1])}
        kept.append(([line for line in page_lines if id(line) not in furniture], pictures))
    return kept


def _images(page) -> list:
    try:
        return list(page.images)
    except Exception:   # pypdf raises many kinds on odd image streams
        return []


def _multiply(a: list[float], b: list[float]) -> list[float]:
    """The product of two PDF matrices [a b c d e f]."""
    return [a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3],
            a[4] * b[0] + a[5] * b[2] + b[4], a[4] * b[1] + a[5] * b[3] + b[5]]


def _body_size(lines: list[_Line]) -> float:
    """The size most of the text is set in."""
    counts: Counter[float] = Counter()
    for line in lines:
        for run in line.runs:
            counts[round(run.size, 1)] += len(run.text.strip())
    return counts.most_common(1)[0][0] if counts else 10.0


def _is_heading(line: _Line, body: float) -> bool:
    text = line.text
    if not text or len(text) > 120 or len(line.cells()) > 1:
        return False
    if line.size >= body * HEADING_RATIO:
        return True
    return line.bold and len(text) < 80 and not text.endswith((".", "。", ":", "："))


def _blocks(lines: list[_Line], pictures: list[tuple[float, Picture]], page: int, body: float,
            heading_sizes: list[int]) -> list[Block]:
    where = {"page": page}
    blocks: list[Block] = []
    waiting = sorted(pictures, key=lambda p: -p[0])
    previous: _Line | None = None
    for line in lines:
        while waiting and waiting[0][0] >= line.y:   # a picture drawn above this line
            blocks.append(Block("paragraph", "", where, pictures=[waiting.pop(0)[1]]))
            previous = None
        text, cells = line.text, line.cells()
        if not text:
            continue
        last = blocks[-1] if blocks else None
        gap = (previous.y - line.y) if previous else math.inf
        if _is_heading(line, body):
            level = heading_sizes.index(round(line.size)) + 1 if round(line.size) in \
                heading_sizes else len(heading_sizes) + 1
            blocks.append(Block("heading", text, where, level=level))
        elif last is not None and last.kind == "table" and len(cells) > 1 and \
                len(cells) == len(last.rows[-1]) and gap < 3 * line.size:
            last.rows.append([cell for _, cell in cells])     # the table's next row
        elif len(cells) > 2 or (len(cells) == 2 and cell_number(cells[0][1]) is None):
            blocks.append(Block("table", where=where, rows=[[c for _, c in cells]]))
        elif len(cells) == 2:   # "1" | "Switch off ...": a list item set with a hanging indent
            number = cell_number(cells[0][1])
            blocks.append(Block("item", cells[1][1], where, numbered=True, number=number))
        elif line.bulleted or leading_number(text)[0] is not None or _starts_warning(text):
            # a list item or a warning starts a block of its own, however close it sits under
            # the line above (the scene rules read a "3." typed into the text as step 3)
            blocks.append(Block("item" if line.bulleted else "paragraph", text, where))
        elif last is not None and last.kind in ("paragraph", "item") and last.text and \
                gap < 1.8 * line.size and previous is not None:
            last.text = f"{last.text} {text}"    # the next line of the same paragraph
        elif last is not None and last.kind == "table" and gap < 3 * line.size and previous:
            last.rows[-1][-1] = f"{last.rows[-1][-1]} {text}"   # a cell's wrapped line
        else:
            blocks.append(Block("paragraph", text, where))
        previous = line
    blocks += [Block("paragraph", "", where, pictures=[p]) for _, p in waiting]
    return blocks


def _starts_warning(text: str) -> bool:
    """A line starting with a warning word (PDFs often set a warning with no spacing above)."""
    from stages.importer.scenes import import_rules

    lowered = text.lower()
    return any(lowered.startswith(word.lower()) for word in import_rules().warning_words)


def _title(reader) -> str | None:
    """The title the PDF's metadata records, unless it is a placeholder."""
    metadata = reader.metadata or {}
    title = clean(str(metadata.get("/Title", "") or "")).strip("()")
    if title.lower() in ("", "anonymous", "untitled", "unspecified"):
        return None
    return title
