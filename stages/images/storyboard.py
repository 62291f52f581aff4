"""The draft images backend: a storyboard panel drawn with Pillow, no model weights.

Each panel shows the step number, a short summary of the scene's visual prompt, and the style's
brand colours. It carries no language-specific text beyond the prompt, so every language's
video reuses it; the caption is drawn per language by compose.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from stages.fonts import font_chain, font_runs, pillow_font
from stages.images import ImageBackend, ImageRequest
from stages.style import rgb

SUMMARY_WORDS = 18


def summary(visual: str, limit: int = 110) -> str:
    """The first words of a prompt, cut at a word boundary with an ellipsis."""
    words = visual.split()
    short = " ".join(words[:SUMMARY_WORDS])
    if len(short) > limit:
        short = short[:limit].rsplit(" ", 1)[0] if " " in short[:limit] else short[:limit]
    return short + ("…" if short != visual.strip() else "")


# Pillow does no font fallback: text is drawn in runs, each in a font that covers it. The prompt
# may be in any language; this chain draws them all (characters no installed font has are skipped:
# the panel is a preview, the prompt is not shown to trainees).
CHAIN_START = "Noto Sans CJK SC"   # Latin, Cyrillic, Greek, CJK, kana, Hangul


# Emoji and text presentation selectors: Pillow's basic layout (no shaping) would draw them
# as glyphs of their own (a dotted circle after "⚠️"); libass shapes them away.
VARIATION_SELECTORS = dict.fromkeys((0xFE0E, 0xFE0F))


def _runs(text: str, size: int, bold: bool) -> list[tuple[ImageFont.FreeTypeFont, str]]:
    return [(pillow_font(family, size, bold), run) for family, run in
            font_runs(text.translate(VARIATION_SELECTORS), font_chain(CHAIN_START))]


def text_length(text: str, size: int, bold: bool = False) -> float:
    return sum(font.getlength(run) for font, run in _runs(text, size, bold))


def wrap_to_width(text: str, size: int, max_width: float, bold: bool = False) -> list[str]:
    """Greedy wrapping by measured width: at spaces, or between characters for CJK text."""
    units = text.split(" ") if " " in text else list(text)
    joiner = " " if " " in text else ""
    lines, current = [], ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if current and text_length(candidate, size, bold) > max_width:
            lines.append(current)
            current = unit
        else:
            current = candidate
    return [*lines, current] if current else lines


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int,
              fill: tuple[int, int, int], bold: bool = False, anchor: str = "la") -> None:
    """Draw text in font runs; `anchor` applies to the whole line (left or middle only)."""
    runs = _runs(text, size, bold)
    total = sum(font.getlength(run) for font, run in runs)
    x, y = xy
    if anchor[0] == "m":
        x -= total / 2
    for font, run in runs:
        draw.text((x, y), run, font=font, fill=fill, anchor="l" + anchor[1])
        x += font.getlength(run)


class StoryboardBackend(ImageBackend):
    name = "storyboard"
    version = 1
    license = "n/a (drawn by sopreel)"

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        options = self.options
        w, h = options.width, options.height
        colors = request.style.colors
        rng = random.Random(request.seed)
        image = Image.new("RGB", (w, h), rgb(colors.background))
        draw = ImageDraw.Draw(image)

        # Soft vertical gradient towards the panel colour.
        top, bottom = rgb(colors.background), rgb(colors.panel)
        for y in range(0, h, 4):
            mix = y / h
            shade = tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
            draw.rectangle([0, y, w, y + 4], fill=shade)

        # Storyboard sketch: a few outlined shapes, different for every scene (seeded): right
        # of the text in a landscape or square panel, below it in a portrait one.
        upright = h > w
        unit = min(w, h) // 12
        shapes_x = (int(w * 0.1), w - 3 * unit) if upright else (int(w * 0.6), w - 3 * unit)
        shapes_y = (int(h * 0.58), h - 5 * unit) if upright else (2 * unit, h - 5 * unit)
        for _ in range(7):
            x0, y0 = rng.randint(*shapes_x), rng.randint(*shapes_y)
            x1, y1 = x0 + rng.randint(unit, 4 * unit), y0 + rng.randint(unit, 3 * unit)
            shape = rng.choice(["rect", "ellipse"])
            box = [x0, y0, min(x1, w - unit), min(y1, h - 3 * unit)]
            if shape == "rect":
                draw.rounded_rectangle(box, radius=unit // 4, outline=rgb(colors.muted),
                                       width=max(2, unit // 20))
            else:
                draw.ellipse(box, outline=rgb(colors.muted), width=max(2, unit // 20))

        # Step badge: left of the text, or above it in a portrait panel.
        radius = int(unit * 1.6)
        cx, cy = (w // 2, int(h * 0.2)) if upright else (int(unit * 2.6), int(h * 0.42))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=rgb(colors.primary))
        draw_text(draw, (cx, cy), str(request.step), int(radius * 1.1),
                  rgb(colors.background), bold=True, anchor="mm")
        draw_text(draw, (cx, cy + radius + unit // 2), f"STEP {request.step} / {request.steps}",
                  max(12, unit // 2), rgb(colors.muted), anchor="mt")

        # The visual summary, wrapped to the left 55% of the panel (most of a portrait one).
        left = int(w * 0.1) if upright else cx + radius + unit
        size = max(14, int(unit * 0.55))
        room = w * 0.9 - left if upright else w * 0.55 - left
        wrap = wrap_to_width(summary(request.visual), size, room, bold=True)[:5]
        y = int(h * 0.36) if upright else int(h * 0.42) - len(wrap) * unit // 2
        for line in wrap:
            draw_text(draw, (left, y), line, size, rgb(colors.text), bold=True)
            y += int(unit * 0.85)

        # Hazard stripe along the bottom edge.
        stripe = max(6, h // 60)
        for x in range(-stripe * 2, w, stripe * 4):
            draw.polygon([(x, h), (x + stripe * 2, h - stripe), (x + stripe * 4, h - stripe),
                          (x + stripe * 2, h)], fill=rgb(colors.primary))
        image.save(out, format="PNG", compress_level=1)
        return {"seed": request.seed}
