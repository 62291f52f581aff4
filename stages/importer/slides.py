"""Slide decks (.pptx) through python-pptx: one slide, one scene.

The speaker notes are what the presenter says, so they become the narration (the slide's body
text when it has no notes); the title becomes the caption; the largest picture the photo.
Hidden slides are left out.
"""

from __future__ import annotations

from pathlib import Path

from stages.importer.document import Block, Document, Picture, clean


def read(path: Path) -> Document:
    from pptx import Presentation

    deck = Presentation(str(path))
    blocks, warnings = [], []
    for number, slide in enumerate(deck.slides, start=1):
        if slide._element.get("show") == "0":
            warnings.append(f"slide {number} is hidden; left out")
            continue
        title_shape = slide.shapes.title
        title = clean(title_shape.text_frame.text) if title_shape is not None and \
            title_shape.has_text_frame else ""
        notes = ""
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = " ".join(clean(p.text) for p in slide.notes_slide.notes_text_frame.paragraphs
                             if clean(p.text))
        shapes = list(_shapes(slide.shapes))
        lines = [clean(p.text) for shape in shapes
                 if shape.has_text_frame and shape is not title_shape
                 and (title_shape is None or shape.shape_id != title_shape.shape_id)
                 for p in shape.text_frame.paragraphs if clean(p.text)]
        lines += _table_lines(shapes)
        pictures = [shape for shape in shapes if _has_image(shape)]
        largest = max(pictures, key=lambda s: (s.width or 0) * (s.height or 0), default=None)
        found = [Picture(largest.image.blob, f"the picture on slide {number}")] if largest else []
        blocks.append(Block("slide", notes, {"slide": number}, title=title, lines=lines,
                            pictures=found))
    title = clean(deck.core_properties.title or "") or \
        next((block.title for block in blocks if block.title), None)
    return Document(title=title, blocks=blocks, warnings=warnings)


def _table_lines(shapes) -> list[str]:
    """A slide's tables, a line per row: the cells joined."""
    lines = []
    for shape in shapes:
        if getattr(shape, "has_table", False):
            for row in shape.table.rows:
                cells = [clean(cell.text) for cell in row.cells
                         if not cell.is_spanned and clean(cell.text)]   # a merged cell once
                if cells:
                    lines.append(", ".join(cells))
    return lines


def _shapes(shapes):
    """Every shape, inside groups too."""
    for shape in shapes:
        if hasattr(shape, "shapes"):   # a group
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _has_image(shape) -> bool:
    try:
        return shape.image is not None
    except (AttributeError, ValueError):   # not a picture, or a placeholder without one
        return False
