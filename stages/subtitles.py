"""Subtitle files: SRT and WebVTT beside the video, and the ASS script libass burns in.

Script text is shown exactly as written. In ASS, `{...}` would start override tags and `\\N`
would break a line, so braces are escaped (`\\{`, `\\}`) and every backslash is followed by a
word joiner (U+2060), which libass draws as nothing. WebVTT escapes `&`, `<` and `>`; SRT is
plain text, with a word joiner inside any `-->` so no line of text reads as a timing line.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.fonts import font_chain, font_runs
from stages.languages import Language
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


FADE_MS = 250   # captions, titles, the notice and the label fade in and out


@dataclass(frozen=True)
class AssEvent:
    """One line of the ASS script's events: shown from `start` to `end` on `layer`, fading in
    and out where it begins and ends (overlays only; subtitles cut)."""

    layer: int
    start: float
    end: float
    style: str
    text: str
    fades: tuple[bool, bool] = (False, False)   # fade in, fade out

    def render(self) -> str:
        fade_in, fade_out = self.fades
        fade = (f"{{\\fad({FADE_MS if fade_in else 0},{FADE_MS if fade_out else 0})}}"
                if fade_in or fade_out else "")
        return (f"Dialogue: {self.layer},{_ass_time(self.start)},{_ass_time(self.end)},"
                f"{self.style},,0,0,0,,{fade}{self.text}")

    def within(self, start: float, end: float) -> AssEvent | None:
        """This event as seen in the part of the video from `start` to `end`, in that part's
        own time; a fade is kept only where the event really begins or ends."""
        if self.end <= start or self.start >= end:
            return None
        fade_in, fade_out = self.fades
        return AssEvent(self.layer, max(self.start, start) - start, min(self.end, end) - start,
                        self.style, self.text,
                        (fade_in and self.start >= start, fade_out and self.end <= end))


def ass_events(cues: list[Cue], captions: list[Overlay], titles: list[Overlay], *, font: str,
               notices: list[Overlay] | None = None,
               labels: list[Overlay] | None = None) -> list[AssEvent]:
    """Subtitles, captions, the title, the AI notice and the label as ASS events."""
    chain = font_chain(font)
    events = [AssEvent(0, cue.start, cue.end, "Sub",
                       r"\N".join(ass_line(line, chain) for line in cue.lines)) for cue in cues]
    for layer, name, overlays in ((1, "Caption", captions), (2, "Title", titles),
                                  (3, "Notice", notices or []), (4, "Label", labels or [])):
        events += [AssEvent(layer, item.start, item.end, name,
                            r"\N".join(ass_line(line, chain) for line in item.lines),
                            (True, True)) for item in overlays]
    return events


@dataclass(frozen=True)
class TextLayout:
    """Text sized for the frame. Sizes follow the frame's shorter side, so text in a 9:16 or
    1:1 frame is as large against its width as in a 16:9 frame against its height; a line
    holds what the width leaves room for (`line_scale`: against a 16:9 frame, at most 1)."""

    size: int           # subtitle font size, pixels
    margin: int         # from the frame's edges
    side: int           # left and right margins of subtitles and the title
    line_scale: float


def text_layout(width: int, height: int) -> TextLayout:
    short = min(width, height)
    size, margin = max(8, round(short * 0.052)), round(short * 0.05)
    side = margin * 2 if width >= height * 1.5 else margin   # narrow frames keep their width
    room = (width - 2 * side) / size
    widescreen = (short * 16 / 9 - 4 * margin) / size
    return TextLayout(size=size, margin=margin, side=side, line_scale=min(1.0, room / widescreen))


def framed_language(language: Language, width: int, height: int) -> Language:
    """The language with subtitle lines as long as a frame of `width` x `height` holds:
    `line_chars` is set for 16:9 and shortened for narrower frames (42 -> 24 at 9:16)."""
    scale = text_layout(width, height).line_scale
    if scale >= 1.0:
        return language
    return language.model_copy(update={"line_chars": max(6, round(language.line_chars * scale))})


def ass_header(*, style: Style, font: str, width: int, height: int) -> str:
    """An ASS script's head with five styles: bottom subtitles, a caption bar (top left), the
    opening title on a panel in the lower third above the subtitles, the AI notice in the
    middle of its card, and the AI label in the top right corner; sized by `text_layout`."""
    colours = style.colors
    layout = text_layout(width, height)
    size, margin, side = layout.size, layout.margin, layout.side
    fields = ("Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
              "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
              "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding")
    white, dark = _ass_colour(colours.text), _ass_colour("#000000", 0x60)
    panel = _ass_colour(colours.panel)
    styles = [
        f"Style: Sub,{font},{size},{white},{white},{_ass_colour('#000000')},{dark},0,0,0,0,100,"
        f"100,0,0,1,{max(1, size // 14)},{max(1, size // 20)},2,{side},{side},{margin},1",
        f"Style: Caption,{font},{round(size * 0.9)},{_ass_colour(colours.background)},{white},"
        f"{_ass_colour(colours.primary)},{dark},1,0,0,0,100,100,0,0,3,{max(2, size // 5)},0,7,"
        f"{margin},{margin},{margin},1",
        f"Style: Title,{font},{round(size * 1.35)},{white},{white},{panel},{dark},1,0,0,0,100,"
        f"100,0,0,3,{max(3, size // 3)},0,2,{side},{side},{round(height * 0.27)},1",
        f"Style: Notice,{font},{round(size * 1.1)},{white},{white},{_ass_colour('#000000')},"
        f"{dark},1,0,0,0,100,100,0,0,1,{max(1, size // 14)},0,5,{margin * 3},{margin * 3},0,1",
        f"Style: Label,{font},{max(10, round(size * 0.55))},{_ass_colour(colours.text, 0x40)},"
        f"{white},{_ass_colour('#000000', 0x40)},{dark},1,0,0,0,100,100,0,0,3,"
        f"{max(2, size // 8)},0,9,{margin // 2},{margin // 2},{margin // 2},1",
    ]
    return "\n".join([
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}",
        "WrapStyle: 0", "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]", f"Format: {fields}", *styles, "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text", ""])


def ass_script(header: str, events: list[AssEvent]) -> str:
    return header + "".join(event.render() + "\n" for event in events)


def to_ass(cues: list[Cue], captions: list[Overlay], titles: list[Overlay], *, style: Style,
           font: str, width: int, height: int, notices: list[Overlay] | None = None,
           labels: list[Overlay] | None = None) -> str:
    """The whole ASS script (`ass_header` and `ass_events`)."""
    return ass_script(ass_header(style=style, font=font, width=width, height=height),
                      ass_events(cues, captions, titles, font=font, notices=notices,
                                 labels=labels))
