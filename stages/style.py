"""Visual house styles (`templates/styles/<name>.yaml`): prompt text, colours, an optional logo."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stages.errors import Problem, StyleError, UnknownNameError
from stages.paths import STYLES
from stages.yamlfile import load_yaml, validate


def _hex(value: str) -> str:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        raise ValueError(f"expected a colour like '#F5B700', got {value!r}")
    return value.upper()


Colour = Annotated[str, AfterValidator(_hex)]


class Colors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    background: Colour = "#1F2933"
    panel: Colour = "#2B3A47"
    primary: Colour = "#F5B700"
    text: Colour = "#FFFFFF"
    muted: Colour = "#A9B4BE"


class Style(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=100)
    prompt_prefix: str = Field(default="", max_length=500)
    prompt_suffix: str = Field(default="", max_length=500)
    negative_prompt: str = Field(default="", max_length=1000)
    colors: Colors = Colors()
    logo: Path | None = None

    def prompt(self, visual: str) -> str:
        """The full generation prompt for a scene's visual description."""
        return " ".join(part for part in (self.prompt_prefix, visual, self.prompt_suffix) if part)

    def negative(self, extra: str = "") -> str:
        """The negative prompt: the style's, then what a profile adds."""
        return ", ".join(part for part in (self.negative_prompt, extra) if part)


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@cache
def load_style(name: str) -> Style:
    path = STYLES / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError("style", name, sorted(p.stem for p in STYLES.glob("*.yaml")))
    located = load_yaml(path, StyleError)
    style = validate(Style, located, StyleError)
    if style.logo is not None:
        logo = (path.parent / style.logo).resolve()
        if not logo.is_file():
            raise StyleError(path, [Problem(located.line(("logo",)), "logo",
                                            f"file not found: {style.logo}")])
        style = style.model_copy(update={"logo": logo})
    return style
