"""Subtitle files: SRT and WebVTT beside the video, and the ASS script libass burns in.

Script text is shown exactly as written. In ASS, `{...}` would start override tags and `\\N`
would break a line, so braces are escaped (`\\{`, `\\}`) and every backslash is followed by a
word joiner (U+2060), which libass draws as nothing. WebVTT escapes `&`, `<` and `>`; SRT is
plain text, with a word joiner inside any `-->` so no line of text reads as a timing line.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.fonts import font_chain, font_runs
from stages.style import Style, rgb
from stages.timeline import Cue

WORD_JOINER = "\u2060"


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _no_arrow(text: str) -> str:
    """A cue line must not read as a timing line: `-->` gets an invisible word joiner."""
    return text.replace("-->", "--" + WORD_JOINER + ">")


def to_srt(cues: list[Cue]) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_no_arrow(c.text)}\n"
              for i, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    def escape(text: str) -> str:   # no "-->" is left once ">" is escaped
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{escape(c.text)}\n"
              for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _literal(text: str) -> str:
    text = text.replace("\\", "\\" + WORD_JOINER)
    return text.replace("{", "\\{").replace("}", "\\}")


def ass_escape(text: str) -> str:
    """Text that libass shows literally: no override tags, no escapes, no line breaks."""
    return _literal(" ".join(text.split()))


def ass_line(text: str, chain: tuple[str, ...]) -> str:
    """One line of literal text, with a font switch (`\\fn`) around every run the style's
    font (`chain[0]`) cannot draw, so libass never falls back to a box."""
    parts = []
    for family, run in font_runs(" ".join(text.split()), chain):
        parts.append(_literal(run) if family == chain[0] else
                     f"{{\\fn{family}}}{_literal(run)}{{\\fn{chain[0]}}}")
    return "".join(parts)


def _ass_time(seconds: float) -> str:
    centis = max(0, round(seconds * 100))
    hours, centis = divmod(centis, 360_000)
    minutes, centis = divmod(centis, 6000)
    secs, centis = divmod(centis, 100)
    return f"{hours:d}:{minutes:02d}:{secs:02d}.{centis:02d}"


def _ass_colour(colour: str, alpha: int = 0) -> str:
    red, green, blue = rgb(colour)
    return f"&H{alpha:02X}{blue:02X}{green:02X}{red:02X}"


@dataclass(frozen=True)
class Overlay:
    """An on-screen caption or title shown from `start` to `end`."""

    start: float
    end: float
    lines: tuple[str, ...]


def to_ass(cues: list[Cue], captions: list[Overlay], titles: list[Overlay], *, style: Style,
           font: str, width: int, height: int, notices: list[Overlay] | None = None,
           labels: list[Overlay] | None = None) -> str:
    """An ASS script with five styles: bottom subtitles, a caption bar (top left), the
    opening title on a panel in the lower third above the subtitles, the AI notice in the
    middle of its card, and the AI label in the top right corner."""
    colours = style.colors
    size = round(height * 0.052)
    margin = round(height * 0.05)
    fields = ("Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
              "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
              "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding")
    white, dark = _ass_colour(colours.text), _ass_colour("#000000", 0x60)
    panel = _ass_colour(colours.panel)
    styles = [
        f"Style: Sub,{font},{size},{white},{white},{_ass_colour('#000000')},{dark},0,0,0,0,100,"
        f"100,0,0,1,{max(1, size // 14)},{max(1, size // 20)},2,{margin * 2},{margin * 2},"
        f"{margin},1",
        f"Style: Caption,{font},{round(size * 0.9)},{_ass_colour(colours.background)},{white},"
        f"{_ass_colour(colours.primary)},{dark},1,0,0,0,100,100,0,0,3,{max(2, size // 5)},0,7,"
        f"{margin},{margin},{margin},1",
        f"Style: Title,{font},{round(size * 1.35)},{white},{white},{panel},{dark},1,0,0,0,100,"
        f"100,0,0,3,{max(3, size // 3)},0,2,{margin * 2},{margin * 2},{round(height * 0.27)},1",
        f"Style: Notice,{font},{round(size * 1.1)},{white},{white},{_ass_colour('#000000')},"
        f"{dark},1,0,0,0,100,100,0,0,1,{max(1, size // 14)},0,5,{margin * 3},{margin * 3},0,1",
        f"Style: Label,{font},{max(10, round(size * 0.55))},{_ass_colour(colours.text, 0x40)},"
        f"{white},{_ass_colour('#000000', 0x40)},{dark},1,0,0,0,100,100,0,0,3,"
        f"{max(2, size // 8)},0,9,{margin // 2},{margin // 2},{margin // 2},1",
    ]
    chain = font_chain(font)
    events = []
    for cue in cues:
        text = r"\N".join(ass_line(line, chain) for line in cue.lines)
        events.append(f"Dialogue: 0,{_ass_time(cue.start)},{_ass_time(cue.end)},Sub,,0,0,0,,"
                      f"{text}")
    for layer, name, overlays in ((1, "Caption", captions), (2, "Title", titles),
                                  (3, "Notice", notices or []), (4, "Label", labels or [])):
        for item in overlays:
            events.append(f"Dialogue: {layer},{_ass_time(item.start)},{_ass_time(item.end)},"
                          f"{name},,0,0,0,,{{\\fad(250,250)}}"
                          + r"\N".join(ass_line(line, chain) for line in item.lines))
    return "\n".join([
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}",
        "WrapStyle: 0", "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]", f"Format: {fields}", *styles, "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
        *events, ""])
