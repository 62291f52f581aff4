"""The site glossary (`templates/glossary.yaml`): agreed translations of safety terms.

A term counts as used in a source text when it appears there (whole words, any case, in Latin
scripts; anywhere in Chinese and Thai, which do not space words), longest terms first, so
"lockout/tagout" is one term, not also "lockout". A translation follows the glossary when it
contains the agreed target term for every source term used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages import languages
from stages.errors import DataFileError, Problem
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, problems_from

GLOSSARY = TEMPLATES / "glossary.yaml"
PLACEHOLDER = "[T{}]"
_PLACEHOLDER = re.compile(r"\[\s*T\s*(\d+)\s*\]", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    source: str
    target: str

    def describe(self) -> str:
        return f"'{self.source}' -> '{self.target}'"


class _GlossaryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    terms: list[dict[str, str]] = Field(default_factory=list)


class Glossary:
    def __init__(self, entries: list[dict[str, str]]):
        self.entries = entries

    def terms(self, source: str, target: str) -> list[Term]:
        """Source -> target pairs, longest source term first."""
        pairs = [Term(e[source].strip(), e[target].strip()) for e in self.entries
                 if e.get(source, "").strip() and e.get(target, "").strip()]
        return sorted(pairs, key=lambda t: len(t.source), reverse=True)

    def used(self, text: str, source: str, target: str) -> list[Term]:
        """The terms `text` uses (each once), matched longest first without overlaps."""
        taken: list[tuple[int, int]] = []
        found: list[Term] = []
        for term in self.terms(source, target):
            for match in _pattern(term.source, source).finditer(text):
                span = match.span()
                if not any(a < span[1] and span[0] < b for a, b in taken):
                    taken.append(span)
                    if term not in found:
                        found.append(term)
        return found

    def missing(self, source_text: str, translated: str, source: str, target: str) -> list[Term]:
        """Terms the source uses whose agreed translation the translated text lacks."""
        return [term for term in self.used(source_text, source, target)
                if not _pattern(term.target, target).search(translated)]

    def protect(self, text: str, source: str, target: str) -> tuple[str, list[Term]]:
        """`text` with each glossary term replaced by a numbered placeholder ([T0], [T1], ...)
        that translation models carry over unchanged; `restore` puts the target terms in."""
        terms = self.used(text, source, target)
        for number, term in enumerate(terms):
            text = _pattern(term.source, source).sub(PLACEHOLDER.format(number), text)
        return text, terms


def restore(translated: str, terms: list[Term]) -> str | None:
    """Placeholders replaced by their target terms; None if the model lost or invented one."""
    numbers = [int(n) for n in _PLACEHOLDER.findall(translated)]
    if sorted(set(numbers)) != list(range(len(terms))):
        return None
    return _PLACEHOLDER.sub(lambda m: terms[int(m.group(1))].target, translated)


@cache
def _pattern(term: str, language: str) -> re.Pattern[str]:
    escaped = re.escape(term)
    if languages.get(language).writing == "latin":
        return re.compile(rf"(?<!\w){escaped}(?!\w)", re.IGNORECASE)
    return re.compile(escaped, re.IGNORECASE)


@cache
def load_glossary(path: Path = GLOSSARY) -> Glossary:
    """The glossary; a missing file is an empty glossary, a broken one a clear error."""
    if not path.is_file():
        return Glossary([])
    located = load_yaml(path, DataFileError)
    try:
        data = _GlossaryFile.model_validate(located.data or {})
    except ValidationError as exc:
        raise DataFileError(path, problems_from(exc, _GlossaryFile, located)) from None
    problems = []
    for index, entry in enumerate(data.terms):
        for code in entry:
            if languages.canonical(code) != code:
                problems.append(Problem(located.line(("terms", index, code)),
                                        f"terms[{index}].{code}", "unknown language code; use "
                                        "the codes of templates/languages.yaml"))
    if problems:
        raise DataFileError(path, problems)
    return Glossary(data.terms)
