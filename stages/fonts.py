"""Font files for fontconfig families, for text Pillow draws (libass asks fontconfig itself)."""

from __future__ import annotations

import subprocess
from functools import cache

from PIL import ImageFont

from stages.errors import SopreelError


@cache
def font_file(family: str, bold: bool = False) -> tuple[str, int]:
    """(path, face index) of the installed font fontconfig picks for `family`."""
    pattern = f"{family}:{'bold' if bold else 'regular'}"
    try:
        found = subprocess.run(["fc-match", "-f", "%{file}\t%{index}\t%{family}", pattern],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SopreelError(f"fontconfig (fc-match) is not usable: {exc}") from None
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
