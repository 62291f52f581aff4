"""The facts a rewrite must keep: every number and every glossary term of the source text.

An SOP's numbers are its substance (480 V, 30 seconds, 1.5 m, padlock 7) and its glossary terms
are the words the site agreed on; a rewrite that loses one is not approved until a person puts
it back. Thai digits count as the digits they are; "1,500" and "1500" are the same number.
"""

from __future__ import annotations

import re

from stages.glossary import Glossary

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def numbers(text: str) -> list[str]:
    """The numbers written in `text` as digits, each once, in order."""
    text = text.translate(_THAI_DIGITS).translate(_FULL_WIDTH_DIGITS)
    found = []
    for match in _NUMBER.findall(text):
        match = match.rstrip(".,:/")
        if re.fullmatch(r"\d{1,3}(?:,\d{3})+", match):
            match = match.replace(",", "")
        found.append(match)
    return list(dict.fromkeys(found))


def missing_facts(source: str, rewrite: str, language: str, glossary: Glossary) -> list[str]:
    """The numbers and glossary terms of `source` that `rewrite` lacks."""
    have = set(numbers(rewrite))
    missing = [number for number in numbers(source) if number not in have]
    terms = [term.source for term in glossary.missing(source, rewrite, language, language)]
    return missing + [f"'{term}'" for term in terms]
