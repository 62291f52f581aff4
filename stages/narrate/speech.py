"""What a synthesiser should say for a written sentence: numbers, units and abbreviations.

Training scripts write "Max. 25 km/h" and "PPE"; a voice should say "maximum twenty-five
kilometres per hour" and "P P E". The expansions are data (`templates/speech.yaml`), numbers are
spelled out with num2words (Chinese with the small converter below, which num2words lacks).
Subtitles keep the written text: only the narration hears the expansion.
"""

from __future__ import annotations

import re
from functools import cache

from pydantic import BaseModel, ConfigDict, ValidationError

from stages import languages
from stages.errors import DataFileError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, problems_from

NUMBER = r"\d+(?:[.,]\d+)?"
AFTER_UNIT = r"(?![A-Za-z0-9])"   # not (?!\w): in Chinese the next character is a word character


class SpeechRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    units: dict[str, str] = {}
    prefix_units: dict[str, str] = {}
    abbreviations: dict[str, str] = {}
    decimal_point: str | None = None   # the word between a number's whole and its decimals
    decimal_comma: bool = False        # 3,5 is three point five and 1.200 is 1200 (vi, de...)


@cache
def rules(language: str) -> SpeechRules:
    path = TEMPLATES / "speech.yaml"
    located = load_yaml(path, DataFileError)
    entry = (located.data or {}).get(language, {})
    try:
        return SpeechRules.model_validate(entry)
    except ValidationError as exc:
        raise DataFileError(path, problems_from(exc, SpeechRules, located, (language,))) from None


def speakable(sentence: str, language: str) -> str:
    """The sentence as it should be read aloud in `language`."""
    rule = rules(language)
    text = sentence
    for written, spoken in rule.abbreviations.items():
        flags = 0 if written.isupper() else re.IGNORECASE   # "PPE" exactly; "Max." or "max."
        text = re.sub(rf"(?<!\w){re.escape(written)}(?!\w)", spoken, text, flags=flags)
    grouping = "." if rule.decimal_comma else ","
    text = re.sub(rf"(?<=\d){re.escape(grouping)}(?=\d{{3}}(?!\d))", "", text)   # 1,200 -> 1200
    if language == "en":
        text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b",
                      lambda m: _num2words(int(m.group(1)), "en", to="ordinal") or m.group(0),
                      text)
    joiner = "" if languages.get(language).writing == "han" else " "
    for written, spoken in _longest_first(rule.prefix_units):
        text = re.sub(rf"({NUMBER})\s?{re.escape(written)}{AFTER_UNIT}",
                      lambda m, s=spoken: f"{s}{joiner}{m.group(1)}", text)
    for written, spoken in _longest_first(rule.units):
        text = re.sub(rf"({NUMBER})\s?{re.escape(written)}{AFTER_UNIT}",
                      lambda m, s=spoken: f"{m.group(1)}{joiner}{_inflect(s, m.group(1))}", text)
    text = re.sub(NUMBER, lambda m: number_words(m.group(0), language), text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _longest_first(table: dict[str, str]) -> list[tuple[str, str]]:
    """'km/h' must win over 'km', and 'km' over 'm'."""
    return sorted(table.items(), key=lambda item: -len(item[0]))


def _inflect(forms: str, number: str) -> str:
    singular, _, plural = forms.partition("|")
    return singular if not plural or number in ("1", "1.0") else plural


def number_words(number: str, language: str) -> str:
    """'25' -> 'twenty-five' (en), '二十五' (zh); digits stay digits where no speller exists.

    Thousands separators are gone by now (`speakable`), so a '.' or ',' left is the decimal
    mark. Decimals are read digit by digit after the point word ("two point five"), as people
    read measurements, and because num2words reads some languages' fractions as whole numbers.
    """
    value = number.replace(",", ".")
    if language.startswith("zh"):
        return chinese_number(value, traditional=language == "zh-TW")
    whole, _, fraction = value.partition(".")
    base = language.split("-")[0]
    spoken = _num2words(int(whole), base)
    if spoken is None:
        return number
    if fraction:
        from num2words import CONVERTER_CLASSES

        point = rules(language).decimal_point or getattr(CONVERTER_CLASSES[base], "pointword",
                                                         "point")
        spoken += f" {point} " + " ".join(_num2words(int(d), base) or d for d in fraction)
    return spoken


def _num2words(value: int, base: str, to: str = "cardinal") -> str | None:
    from num2words import CONVERTER_CLASSES, num2words

    if base not in CONVERTER_CLASSES:
        return None
    try:
        return num2words(value, lang=base, to=to)
    except (NotImplementedError, OverflowError):
        return None


def chinese_number(value: str, traditional: bool) -> str:
    """Chinese numerals: '12005' -> '一萬二千零五', '3.5' -> '三點五'."""
    whole, _, fraction = value.partition(".")
    digits = "零一二三四五六七八九"
    spoken = _chinese_integer(int(whole), traditional)
    if fraction:
        spoken += ("點" if traditional else "点") + "".join(digits[int(d)] for d in fraction)
    return spoken


def _chinese_integer(n: int, traditional: bool) -> str:
    digits, small = "零一二三四五六七八九", ["", "十", "百", "千"]
    big = ["", "萬", "億", "兆"] if traditional else ["", "万", "亿", "兆"]
    if n == 0:
        return "零"
    if n >= 10 ** 16:
        return "".join(digits[int(d)] for d in str(n))
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out, need_zero = "", False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or group < 1000):
            out += "零"
        part, gap = "", False
        for position in (3, 2, 1, 0):
            digit = group // 10 ** position % 10
            if digit == 0:
                gap = bool(part)
                continue
            if gap:
                part += "零"
                gap = False
            part += digits[digit] + small[position]
        out += part + big[index]
        need_zero = False
    return out[1:] if out.startswith("一十") else out
