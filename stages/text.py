"""Text rules per writing system: sentences for synthesis, lines and cues for subtitles.

Narration is synthesised one sentence at a time so each sentence's real duration is known;
subtitles are then cut from those sentences into cues of at most two lines of at most
`line_chars` characters (42 for Latin scripts, 16 for Chinese), breaking Latin text at spaces,
Chinese text between characters (never opening a line with closing punctuation, never ending one
with opening punctuation, keeping Latin words and numbers whole), and Thai, which writes no
spaces between words, between the words of a dictionary segmenter (pythainlp's newmm), never
inside a word.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable

from stages.languages import Language

ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "approx.", "no.", "mr.", "mrs.", "ms.", "dr.", "vs.",
                 "min.", "max.", "fig.", "st.", "co.", "inc."}
CLOSING = set("，。！？、；：」』）》〉】〕,.!?;:)]}%’”…")
OPENING = set("「『（《〈【〔([{‘“")
CLAUSE_ENDS = set("，、；：。！？,;:!?")
MAX_LINES = 2
THAI_PHRASE_SPACE = re.compile(r"(?<=[\u0E01-\u0E5B]) (?=[\u0E01-\u0E5B])")


def width(text: str) -> int:
    """Characters that take space on screen (combining marks and format characters do not)."""
    return sum(1 for char in text if unicodedata.category(char) not in ("Mn", "Me", "Cf"))


def split_sentences(text: str, language: Language) -> list[str]:
    """Narration -> sentences, each synthesised and timed on its own."""
    text = " ".join(text.split())
    if language.writing == "han":
        enders = re.escape(language.sentence_end)
        parts = re.findall(rf"[^{enders}]+[{enders}]*[」』）”’]*", text)
    elif language.writing == "thai":   # a space between Thai letters ends a phrase; spaces
        # around numbers and Latin words ("เกิน 85 เดซิเบล", "สวม PPE") are word spaces
        parts = _merge_short(THAI_PHRASE_SPACE.split(text), minimum=12)
    else:
        parts = _latin_sentences(text, language.sentence_end)
    sentences = [part.strip() for part in parts if part.strip()]
    return sentences or ([text] if text else [])   # e.g. narration that is only punctuation


def _latin_sentences(text: str, enders: str) -> list[str]:
    sentences, current = [], []
    for word in text.split(" "):
        current.append(word)
        ends = word.rstrip("\"')”’]").endswith(tuple(enders))
        if ends and word.lower() not in ABBREVIATIONS:
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _merge_short(pieces: list[str], minimum: int) -> list[str]:
    merged: list[str] = []
    for piece in pieces:
        if merged and width(merged[-1]) < minimum:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    if len(merged) > 1 and width(merged[-1]) < minimum:
        last = merged.pop()
        merged[-1] = f"{merged[-1]} {last}"
    return merged


def _units(text: str, language: Language) -> tuple[list[str], str]:
    """Unbreakable units of text and the separator placed between them on a line."""
    if language.writing == "han":
        raw = re.findall(r"[A-Za-z0-9][A-Za-z0-9.,:%/+-]*|\s+|.", text)
        units: list[str] = []
        pending_open = ""
        for unit in raw:
            if unit.isspace():
                if units:
                    units[-1] += " "
                continue
            if unit in OPENING:
                pending_open += unit
                continue
            unit, pending_open = pending_open + unit, ""
            if units and unit[0] in CLOSING:
                units[-1] += unit
            else:
                units.append(unit)
        if pending_open:
            units.append(pending_open)
        return [u.rstrip() if i == len(units) - 1 else u for i, u in enumerate(units)], ""
    if language.writing == "thai":
        return _thai_words(text, language.line_chars), ""
    return [w for w in text.split(" ") if w], " "


def _thai_words(text: str, limit: int) -> list[str]:
    """Thai words from the dictionary segmenter; a space stays at the end of its word."""
    from pythainlp.tokenize import word_tokenize  # loads its dictionary on first use

    units: list[str] = []
    opening = ""
    for token in word_tokenize(text, engine="newmm", keep_whitespace=True):
        if token.isspace():
            if units and not opening:
                units[-1] += " "
        elif set(token) <= OPENING:        # "(" opens the next word's line, never ends one
            opening += token
        elif units and not opening and set(token) <= CLOSING:   # ")" stays with its word
            units[-1] += token
        else:
            pieces = _clusters_split(token, limit)   # a word longer than a line: rare
            pieces[0], opening = opening + pieces[0], ""
            units.extend(pieces)
    if opening:
        units.append(opening)
    return units


def _clusters_split(word: str, limit: int) -> list[str]:
    """Split an over-long word between grapheme clusters (never between a base and its marks)."""
    if width(word) <= limit:
        return [word]
    clusters: list[str] = []
    for char in word:
        if clusters and unicodedata.category(char) in ("Mn", "Me"):
            clusters[-1] += char
        else:
            clusters.append(char)
    return ["".join(clusters[i:i + limit]) for i in range(0, len(clusters), limit)]


def _fill(units: list[str], separator: str, limit: int) -> list[str]:
    """Greedy line filling; a unit longer than the limit is split on its own."""
    lines: list[str] = []
    current = ""
    for unit in units:
        for piece in _hard_split(unit, limit):
            candidate = f"{current}{separator}{piece}" if current else piece
            if width(candidate.strip()) <= limit:
                current = candidate
            else:
                lines.append(current.strip())
                current = piece
    if current.strip():
        lines.append(current.strip())
    return lines


def _hard_split(unit: str, limit: int) -> list[str]:
    return [unit] if width(unit) <= limit else _clusters_split(unit, limit)


def _clauses(units: list[str], limit: int) -> list[str]:
    """Chinese units merged into clauses (ending at ，、；：。！？) wherever a clause fits a line,
    so lines break between clauses rather than inside a word when they can."""
    merged: list[str] = []
    current: list[str] = []
    for unit in [*units, None]:
        if unit is not None:
            current.append(unit)
        if unit is None or unit.rstrip()[-1:] in CLAUSE_ENDS:
            clause = "".join(current)
            merged.extend([clause] if width(clause) <= limit else current)
            current = []
    return merged


def _balanced(units: list[str], separator: str, text: str, limit: int, count: int) -> list[str]:
    """The narrowest fill of `units` into at most `count` lines, or [] if none fits."""
    target = max(math.ceil(width(text) / count), *(min(width(u), limit) for u in units))
    for trial in range(target, limit + 1):
        lines = _fill(units, separator, trial)
        if len(lines) <= count:
            return lines
    return []


# ------------------------------------------------------- sentences that fit a voice model

PAUSE_AFTER = {"han": "，、；：,;:", "latin": ",;:", "thai": ""}


def speech_parts(sentence: str, language: Language, fits: Callable[[str], bool]) -> list[str]:
    """A sentence -> the parts a voice model is given, each one that `fits` it.

    A sentence that fits stays whole. A longer one is split where a speaker would pause: after
    clause punctuation (Chinese ，、；：, Latin , ; :; Thai the space between phrases), then
    before a conjunction (`clause_words`), then between words (Thai: dictionary words), and
    only as a last resort between characters; neighbouring pieces are joined again while they
    fit, so the parts are as few and as long as the model allows."""
    return _fitted(sentence.strip(), language, fits, 0)


def _fitted(text: str, language: Language, fits: Callable[[str], bool], level: int) -> list[str]:
    if fits(text) or level == len(_SPLITTERS):
        return [text]
    pieces, joiner = _SPLITTERS[level](text, language)
    return [part for piece in _packed(pieces, joiner, fits)
            for part in _fitted(piece, language, fits, level + 1)]


def _packed(pieces: list[str], joiner: str, fits: Callable[[str], bool]) -> list[str]:
    packed: list[str] = []   # pieces keep their own spaces (a Thai word's, before "PPE")
    for piece in (p for p in pieces if p.strip()):
        joined = f"{packed[-1]}{joiner}{piece}" if packed else piece
        if packed and fits(joined.strip()):
            packed[-1] = joined
        else:
            packed.append(piece)
    return [piece.strip() for piece in packed]


def _at_pauses(text: str, language: Language) -> tuple[list[str], str]:
    if language.writing == "thai":
        return THAI_PHRASE_SPACE.split(text), " "
    marks = re.escape(PAUSE_AFTER[language.writing])
    if language.writing == "han":
        return re.split(rf"(?<=[{marks}])", text), ""
    return re.split(rf"(?<=[{marks}])\s+", text), " "


def _at_clause_words(text: str, language: Language) -> tuple[list[str], str]:
    if not language.clause_words:
        return [text], " "
    words = "|".join(re.escape(w) for w in sorted(language.clause_words, key=len, reverse=True))
    return re.split(rf"\s+(?=(?:{words})(?:\s|$))", text, flags=re.IGNORECASE), " "


def _at_words(text: str, language: Language) -> tuple[list[str], str]:
    units, separator = _units(text, language)
    return units, separator if language.writing == "latin" else ""


def _at_characters(text: str, language: Language) -> tuple[list[str], str]:
    return _clusters_split(text, 1), ""


_SPLITTERS = (_at_pauses, _at_clause_words, _at_words, _at_characters)


def wrap_lines(text: str, language: Language) -> list[str]:
    """Lines of at most `line_chars`, balanced so the lines of a cue have similar lengths."""
    units, separator = _units(text, language)
    limit = language.line_chars
    greedy = _fill(units, separator, limit)
    count = len(greedy)
    if count <= 1:
        return greedy
    count = math.ceil(count / MAX_LINES) * MAX_LINES if count > MAX_LINES else count
    if language.writing == "han":   # prefer breaks between clauses, at no cost in lines
        lines = _balanced(_clauses(units, limit), separator, text, limit, count)
        if lines:
            return lines
    return _balanced(units, separator, text, limit, count) or greedy


def cue_texts(sentence: str, language: Language) -> list[list[str]]:
    """One sentence -> cues, each a list of at most two lines."""
    lines = wrap_lines(sentence, language)
    return [lines[i:i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)] or [[""]]
