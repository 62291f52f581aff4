"""Markdown (.md) through markdown-it-py, CommonMark with GitHub's tables.

Headings, paragraphs, list items (nested, ordered or not), table rows and pictures (local
files next to the document; web addresses are not fetched) keep the line they start on.
A blockquote that starts with GitHub's `[!WARNING]` or `[!CAUTION]` is a warning.
"""

from __future__ import annotations

import re
from pathlib import Path

from stages.importer.document import Block, Document, Picture, clean
from stages.importer.pictures import local_picture

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.DOTALL)
_ALERT = re.compile(r"^\[!(WARNING|CAUTION|DANGER|IMPORTANT|NOTE|TIP)\]\s*", re.IGNORECASE)


def read(path: Path) -> Document:
    from markdown_it import MarkdownIt

    text, title = _front_matter(path.read_text(encoding="utf-8-sig"))
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    reader = _Reader(path)
    for token in tokens:
        reader.token(token)
    return Document(title=title, blocks=reader.blocks, warnings=reader.warnings)


def _front_matter(text: str) -> tuple[str, str | None]:
    """The text with a leading YAML front matter block blanked (lines keep their numbers),
    and the `title:` it gives, if any."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text, None
    title = re.search(r"^title:\s*[\"']?(.+?)[\"']?\s*$", match.group(1), re.MULTILINE)
    blanked = "\n" * match.group(0).count("\n") + text[match.end():]
    return blanked, clean(title.group(1)) if title else None


class _Reader:
    """Walks markdown-it's flat token stream, keeping the list and table it is inside."""

    def __init__(self, path: Path):
        self.path = path
        self.blocks: list[Block] = []
        self.warnings: list[str] = []
        self.lists: list[bool] = []     # open lists, innermost last: ordered?
        self.heading = 0
        self.item_line: int | None = None
        self.item_number: int | None = None
        self.row: list[str] | None = None
        self.table: Block | None = None
        self.cell = False
        self.row_pictures: list[Picture] = []

    def token(self, token) -> None:
        kind = token.type
        line = token.map[0] + 1 if token.map else None
        if kind in ("bullet_list_open", "ordered_list_open"):
            self.lists.append(kind == "ordered_list_open")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
        elif kind == "list_item_open":
            self.item_line = line
            self.item_number = int(token.info) if token.info.isdigit() else None
        elif kind == "heading_open":
            self.heading = int(token.tag[1])
        elif kind == "table_close":
            self.table = None
        elif kind == "table_open":
            self.table = Block("table", where={"line": line or 0})
            self.blocks.append(self.table)
        elif kind == "tr_open":
            self.row = []
        elif kind in ("th_open", "td_open"):
            self.cell = True
        elif kind in ("th_close", "td_close"):
            self.cell = False
        elif kind == "tr_close" and self.table is not None and self.row is not None:
            self.table.rows.append(self.row)
            self.table.row_pictures.append(self.row_pictures)
            self.row, self.row_pictures = None, []
        elif kind == "inline":
            self.inline(token, line)

    def inline(self, token, line: int | None) -> None:
        text, pictures = self.text_and_pictures(token)
        if self.cell and self.row is not None:
            self.row.append(text)
            self.row_pictures += pictures
            return
        where = {"line": self.item_line if self.lists and self.item_line else line or 0}
        if self.heading:
            self.blocks.append(Block("heading", text, where, level=self.heading,
                                     pictures=pictures))
            self.heading = 0
        elif self.lists and self.item_line is not None:
            self.blocks.append(Block("item", text, where, level=len(self.lists) - 1,
                                     numbered=self.lists[-1], number=self.item_number,
                                     pictures=pictures))
            self.item_line = None      # a second paragraph in the item is a paragraph
        else:
            alert = _ALERT.match(text)
            warning = bool(alert and alert.group(1).upper() in ("WARNING", "CAUTION", "DANGER"))
            if alert:
                text = text[alert.end():]
            if text or pictures:
                self.blocks.append(Block("paragraph", text, where, warning=warning,
                                         pictures=pictures))

    def text_and_pictures(self, token) -> tuple[str, list[Picture]]:
        parts, pictures = [], []
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
            elif child.type == "image":
                found = local_picture(self.path, str(child.attrs.get("src", "")))
                if isinstance(found, Picture):
                    pictures.append(found)
                else:
                    self.warnings.append(found)
        return clean("".join(parts)), pictures

