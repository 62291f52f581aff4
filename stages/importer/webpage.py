"""HTML pages (.html, .htm; a wiki page saved from the browser) through the standard library.

Headings, paragraphs, list items, table rows, pictures and <title> are read; navigation,
headers, footers, scripts and styles are skipped. An element whose class names a warning,
caution or danger (Confluence's and most wikis' warning boxes) is a warning.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from stages.importer.document import Block, Document, Picture, clean
from stages.importer.pictures import local_picture

SKIPPED = {"script", "style", "nav", "header", "footer", "noscript", "template", "svg", "head"}
TEXT_BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "dt", "dd",
               "blockquote", "pre", "figcaption", "caption", "div", "section", "article"}
VOID = {"img", "br", "hr", "meta", "link", "input", "source", "area", "col", "wbr", "base"}
_WARNING_CLASS = re.compile(r"warning|caution|danger|alert-error", re.IGNORECASE)


def read(path: Path) -> Document:
    parser = _Parser(path)
    parser.feed(path.read_text(encoding="utf-8-sig", errors="replace"))
    parser.close()
    parser.flush()
    return Document(title=clean(parser.title) or None, blocks=parser.blocks,
                    warnings=parser.warnings)


class _Parser(HTMLParser):
    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path = path
        self.blocks: list[Block] = []
        self.warnings: list[str] = []
        self.title = ""
        self.stack: list[tuple[str, bool]] = []   # open elements: (tag, is a warning box)
        self.skipping = 0
        self.lists: list[bool] = []
        self.text: list[str] = []
        self.pictures: list[Picture] = []
        self.count = 0
        self.table: Block | None = None
        self.row: list[str] | None = None
        self.row_pictures: list[Picture] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in SKIPPED:
            self.skipping += 1
            if tag == "head":
                self.skipping -= 1     # <title> lives in <head>: read it, skip the rest
            return
        if tag == "img":
            found = local_picture(self.path, values.get("src") or "")
            if isinstance(found, Picture):
                (self.row_pictures if self.row is not None else self.pictures).append(found)
            else:
                self.warnings.append(found)
            return
        if tag in VOID:
            if tag == "br":
                self.text.append(" ")
            return
        if tag in TEXT_BLOCKS or tag in ("ul", "ol", "table", "tr"):
            self.flush()
        warning = bool(_WARNING_CLASS.search(values.get("class") or ""))
        self.stack.append((tag, warning))
        if tag in ("ul", "ol"):
            self.lists.append(tag == "ol")
        elif tag == "table":
            self.table = Block("table", where={"paragraph": self.count + 1})
            self.count += 1
            self.blocks.append(self.table)
        elif tag == "tr":
            self.row, self.row_pictures = [], []

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED and tag != "head":
            self.skipping = max(0, self.skipping - 1)
            return
        if tag in TEXT_BLOCKS:
            self.flush()
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "tr" and self.table is not None and self.row is not None:
            self.table.rows.append(self.row)
            self.table.row_pictures.append(self.row_pictures)
            self.row = None
        elif tag == "table":
            self.table = None
        for index in range(len(self.stack) - 1, -1, -1):   # tolerate unclosed elements
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][0] == "title":
            self.title += data
        elif not self.skipping:
            self.text.append(data)

    def flush(self) -> None:
        """The text gathered since the last block boundary becomes a block."""
        text, pictures = clean("".join(self.text)), self.pictures
        self.text, self.pictures = [], []
        tags = [tag for tag, _ in self.stack]
        if self.row is not None and tags and tags[-1] in ("td", "th"):
            if text:
                self.row.append(text)
            return
        if not text and not pictures:
            return
        self.count += 1
        where = {"paragraph": self.count}
        heading = next((int(t[1]) for t in reversed(tags) if re.fullmatch(r"h[1-6]", t)), None)
        if heading is not None:
            self.blocks.append(Block("heading", text, where, level=heading, pictures=pictures))
        elif "li" in tags and self.lists:
            self.blocks.append(Block("item", text, where, level=len(self.lists) - 1,
                                     numbered=self.lists[-1], pictures=pictures))
        else:
            warning = any(flag for _, flag in self.stack)
            self.blocks.append(Block("paragraph", text, where, warning=warning,
                                     pictures=pictures))
