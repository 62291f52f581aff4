"""The languages sopreel builds, read from `templates/languages.yaml`.

Adding a language is a line of YAML: its writing system (how subtitles break), its espeak-ng
voice, a font that covers it, and its subtitle line length.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.errors import DataFileError, UnknownNameError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, problems_from


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    iso639_2: str = Field(pattern=r"^[a-z]{3}$")
    nllb: str = Field(pattern=r"^[a-z]{3}_[A-Z][a-z]{3}$")
    name: str
    writing: Literal["latin", "han", "thai"]
    espeak: str
    font: str
    line_chars: int = Field(gt=4, le=80)
    reading_cps: float = Field(gt=1, le=40)
    sentence_end: str
    clause_words: tuple[str, ...] = ()   # a too-long sentence may be split before these
    aliases: tuple[str, ...] = ()


@cache
def languages() -> dict[str, Language]:
    """All supported languages by canonical code."""
    path = TEMPLATES / "languages.yaml"
    located = load_yaml(path, DataFileError)
    result = {}
    for code, entry in located.data.items():
        try:
            result[code] = Language.model_validate({"code": code, **entry})
        except ValidationError as exc:
            raise DataFileError(path, problems_from(exc, Language, located, (code,))) from None
    return result


@cache
def _lookup() -> dict[str, str]:
    table = {}
    for code, lang in languages().items():
        for name in (code, *lang.aliases):
            table[name.lower()] = code
    return table


def canonical(code: str) -> str | None:
    """'ZH-tw' -> 'zh-TW'; None for an unsupported code."""
    return _lookup().get(code.replace("_", "-").lower())


def get(code: str) -> Language:
    """The language for a (canonical or alias) code, or a clear error listing what exists."""
    found = canonical(code)
    if found is None:
        raise UnknownNameError("language", code, list(languages()))
    return languages()[found]
