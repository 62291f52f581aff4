"""Fonts: which installed font draws each character, checked before anything is rendered.

Neither Pillow nor a burned-in subtitle may show a box for a character its font lacks. Text is
therefore cut into runs, each in the first font of a chain that covers it: the language's own
font (templates/languages.yaml), then the fallbacks in templates/fonts.yaml. Coverage is the
character set fontconfig reports for the font file (its cmap), so what is checked is what libass
and Pillow will draw. A character no font covers is an error, raised before rendering.
"""

from __future__ import annotations

import bisect
import subprocess
import unicodedata
from functools import cache

from PIL import ImageFont
from pydantic import BaseModel, ConfigDict

from stages.errors import DataFileError, SopreelError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, validate

# Characters drawn as nothing (or as space): they join the run they are in, any font will do.
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}


def _fc_match(family: str, bold: bool, fields: str) -> str:
    pattern = f"{family}:{'bold' if bold else 'regular'}"
    try:
        return subprocess.run(["fc-match", "-f", fields, pattern], capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SopreelError(f"fontconfig (fc-match) is not usable: {exc}") from None


@cache
def installed(family: str) -> bool:
    return family.lower() in _fc_match(family, False, "%{family}").lower()


@cache
def font_file(family: str, bold: bool = False) -> tuple[str, int]:
    """(path, face index) of the installed font fontconfig picks for `family`."""
    found = _fc_match(family, bold, "%{file}\t%{index}\t%{family}")
    path, index, families = [*found.split("\t"), "", "", ""][:3]
    if family.lower() not in families.lower():
        raise SopreelError(f"The font '{family}' is not installed (fontconfig offers {families!r}"
                           " instead). Install fonts-noto-core and fonts-noto-cjk, or run "
                           "`make setup`.")
    return path, int(index or 0)


@cache
def pillow_font(family: str, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path, index = font_file(family, bold)
    return ImageFont.truetype(path, size=size, index=index)


class Coverage:
    """The code points one font can draw, as sorted inclusive ranges."""

    def __init__(self, ranges: list[tuple[int, int]]):
        self._starts = [start for start, _ in ranges]
        self._ends = [end for _, end in ranges]

    @classmethod
    def parse(cls, charset: str) -> Coverage:
        """fontconfig's `%{charset}`: hex code points and ranges, e.g. '20-7e a0 e01-e3a'."""
        ranges = []
        for item in charset.split():
            start, _, end = item.partition("-")
            ranges.append((int(start, 16), int(end or start, 16)))
        return cls(sorted(ranges))

    def __contains__(self, char: str) -> bool:
        code = ord(char)
        at = bisect.bisect_right(self._starts, code) - 1
        return at >= 0 and code <= self._ends[at]


@cache
def coverage(family: str) -> Coverage:
    font_file(family)   # a clear error when the family is not installed
    return Coverage.parse(_fc_match(family, False, "%{charset}"))


class _FontData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fallback: list[str]


@cache
def fallback_fonts() -> tuple[str, ...]:
    """The installed fallback families, in the order templates/fonts.yaml lists them."""
    data = validate(_FontData, load_yaml(TEMPLATES / "fonts.yaml", DataFileError), DataFileError)
    return tuple(family for family in data.fallback if installed(family))


def font_chain(primary: str) -> tuple[str, ...]:
    """The language's font first, then every installed fallback."""
    return (primary, *(family for family in fallback_fonts() if family != primary))


def _needs_font(char: str) -> bool:
    return char != " " and unicodedata.category(char) not in _INVISIBLE


def _family_for(char: str, chain: tuple[str, ...], current: str | None) -> str | None:
    if not _needs_font(char):
        return current or chain[0]
    if current is not None and unicodedata.category(char) in ("Mn", "Me") \
            and char in coverage(current):
        return current   # marks stay with their base character's font when it has them
    return next((family for family in chain if char in coverage(family)), None)


def missing_glyphs(text: str, chain: tuple[str, ...]) -> list[str]:
    """The distinct characters of `text` that no font of `chain` can draw."""
    return list(dict.fromkeys(c for c in text
                              if _needs_font(c) and not any(c in coverage(f) for f in chain)))


def describe_chars(chars: list[str]) -> str:
    """'🚧' (U+1F6A7 CONSTRUCTION SIGN), ... for an error message."""
    return ", ".join(f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in chars)


def font_runs(text: str, chain: tuple[str, ...]) -> list[tuple[str, str]]:
    """`text` as (family, run) pieces, each run drawable in its family.

    Characters no font covers are left out; callers check `missing_glyphs` first, so for
    checked text nothing is dropped.
    """
    runs: list[tuple[str, str]] = []
    for char in text:
        family = _family_for(char, chain, runs[-1][0] if runs else None)
        if family is None:
            continue
        if runs and runs[-1][0] == family:
            runs[-1] = (family, runs[-1][1] + char)
        else:
            runs.append((family, char))
    return runs
