"""Word documents (.docx) through python-docx: paragraphs and tables in body order.

Headings are paragraphs in a "Heading N" or "Title" style (or with an outline level); list
items are paragraphs with Word numbering (their own or their style's), numbered unless the
level's format is a bullet; pictures are the images their runs embed.
"""

from __future__ import annotations

import re
from pathlib import Path

from stages.importer.document import Block, Document, Picture, clean

_HEADING = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def read(path: Path) -> Document:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))
    numbering = _numbering_formats(document)
    blocks: list[Block] = []
    paragraph_index = table_index = 0
    body = document._body
    for element in _body_elements(document.element.body):
        if element.tag == _w("tbl"):
            table_index += 1
            blocks.append(_table(Table(element, body), table_index, document))
            continue
        paragraph_index += 1
        block = _paragraph(Paragraph(element, body), paragraph_index, numbering, document)
        if block is not None:
            blocks.append(block)
    return Document(title=clean(document.core_properties.title or "") or None, blocks=blocks)


def _body_elements(container):
    """Paragraphs and tables in order, including those inside content controls (w:sdt), which
    company SOP templates wrap whole sections in."""
    for child in container:
        if child.tag in (_w("p"), _w("tbl")):
            yield child
        elif child.tag == _w("sdt"):
            for content in child.findall(_w("sdtContent")):
                yield from _body_elements(content)


def _paragraph(paragraph, index: int, numbering: dict[tuple[str, str], str],
               document) -> Block | None:
    text = clean(paragraph.text)
    pictures = _pictures(paragraph._p, document, f"the picture in paragraph {index}")
    if not text and not pictures:
        return None
    where = {"paragraph": index}
    style = paragraph.style.name if paragraph.style is not None else ""
    level = _heading_level(paragraph, style)
    if level is not None and text:
        return Block("heading", text, where, level=level, pictures=pictures)
    list_level, numbered = _list_item(paragraph, style, numbering)
    if list_level is not None:
        return Block("item", text, where, level=list_level, numbered=numbered,
                     pictures=pictures)
    warning = any(word in style.lower() for word in ("warning", "caution", "danger"))
    return Block("paragraph", text, where, warning=warning, pictures=pictures)


def _heading_level(paragraph, style: str) -> int | None:
    if style.lower() == "title":
        return 0
    match = _HEADING.search(style) or _HEADING.search(getattr(paragraph.style, "style_id", ""))
    if match:
        return int(match.group(1))
    outline = _xpath(paragraph._p, "./w:pPr/w:outlineLvl/@w:val")
    return int(outline[0]) + 1 if outline else None


def _list_item(paragraph, style: str, numbering: dict[tuple[str, str], str]
               ) -> tuple[int | None, bool]:
    """(level, numbered) of a list paragraph, or (None, False)."""
    own_level = _xpath(paragraph._p, "./w:pPr/w:numPr/w:ilvl/@w:val")
    named_level = _style_level(style)
    for element in _style_chain(paragraph):
        num_id = _xpath(element, "./w:pPr/w:numPr/w:numId/@w:val")
        if num_id and num_id[0] != "0":
            level = own_level or ([str(named_level)] if named_level is not None else None) \
                or _xpath(element, "./w:pPr/w:numPr/w:ilvl/@w:val") or ["0"]
            fmt = numbering.get((num_id[0], level[0])) or \
                numbering.get((num_id[0], "0"), "decimal")
            return int(level[0]), fmt not in ("bullet", "none")
    if named_level is not None:
        return named_level, style.lower().startswith("list number")
    return None, False


def _style_level(style: str) -> int | None:
    """"List Number 2" -> 1 (Word's built-in list styles name their level); None otherwise."""
    lowered = style.lower()
    if not lowered.startswith(("list number", "list bullet")):
        return None
    suffix = lowered.rsplit(" ", 1)[-1]
    return int(suffix) - 1 if suffix.isdigit() else 0


def _style_chain(paragraph) -> list:
    """The paragraph's own properties, then its style's, then the styles it is based on."""
    chain = [paragraph._p]
    style = paragraph.style
    while style is not None and len(chain) < 10:
        chain.append(style.element)
        style = style.base_style
    return chain


def _numbering_formats(document) -> dict[tuple[str, str], str]:
    """(numId, level) -> the level's number format ('decimal', 'bullet', ...)."""
    try:
        root = document.part.numbering_part.element
    except (KeyError, NotImplementedError):
        return {}
    abstract = {}
    for definition in _xpath(root, "./w:abstractNum"):
        levels = {lvl.get(_w("ilvl")): (_xpath(lvl, "./w:numFmt/@w:val") or ["decimal"])[0]
                  for lvl in _xpath(definition, "./w:lvl")}
        abstract[definition.get(_w("abstractNumId"))] = levels
    formats = {}
    for num in _xpath(root, "./w:num"):
        ref = _xpath(num, "./w:abstractNumId/@w:val")
        for level, fmt in abstract.get(ref[0] if ref else "", {}).items():
            formats[(num.get(_w("numId")), level)] = fmt
    return formats


def _xpath(element, expression: str) -> list:
    """XPath with Word's namespace prefixes (w:, a:, r:) on any element, python-docx's or not."""
    from docx.oxml.ns import nsmap
    from lxml import etree

    return etree.XPath(expression, namespaces=nsmap)(element)


def _w(name: str) -> str:
    from docx.oxml.ns import qn

    return qn(f"w:{name}")


def _pictures(element, document, name: str) -> list[Picture]:
    pictures = []
    for rel_id in _xpath(element, ".//a:blip/@r:embed"):
        part = document.part.related_parts.get(rel_id)
        if part is not None and hasattr(part, "blob"):
            pictures.append(Picture(part.blob, name))
    return pictures


def _table(table, index: int, document) -> Block:
    rows, pictures = [], []
    for number, row in enumerate(table.rows, start=1):
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:   # a merged cell is listed once per grid column
                continue
            seen.add(id(cell._tc))
            cells.append(clean(cell.text))
        rows.append(cells)
        pictures.append(_pictures(row._tr, document, f"the picture in table {index}, "
                                                     f"row {number}"))
    return Block("table", where={"table": index}, rows=rows, row_pictures=pictures)
