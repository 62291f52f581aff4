"""Which language a document is written in, from its characters, when --language is not given.

Thai letters mean Thai; Han characters mean Chinese, Traditional or Simplified by which of the
characters that differ between the two it uses more; Vietnamese's own letters (ă, ơ, ư, đ and
its stacked tone marks) mean Vietnamese; any other Latin text is taken as English, and the
import says so, so a Spanish or German SOP is imported with --language.
"""

from __future__ import annotations

import re
import unicodedata

# Frequent characters written differently in Traditional and Simplified Chinese (same order).
TRADITIONAL = "們這個說為國會來時對開關機電與從後點過應該裝備護險請設確認檢查應體動員業"
SIMPLIFIED = "们这个说为国会来时对开关机电与从后点过应该装备护险请设确认检查应体动员业"
_DIFFERENT = [(t, s) for t, s in zip(TRADITIONAL, SIMPLIFIED, strict=True) if t != s]
_VIETNAMESE = re.compile(r"[ăâđêôơưĂÂĐÊÔƠƯ]|[ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]",
                         re.IGNORECASE)


def detect_language(text: str) -> tuple[str, str]:
    """(code, why) for a document's text."""
    sample = unicodedata.normalize("NFC", text[:200_000])
    counts = {"thai": 0, "han": 0, "latin": 0}
    for char in sample:
        if "\u0e00" <= char <= "\u0e7f":
            counts["thai"] += 1
        elif "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf":
            counts["han"] += 1
        elif char.isalpha() and char.isascii():
            counts["latin"] += 1
    script = max(counts, key=lambda k: counts[k])
    if counts[script] == 0:
        return "en", "no letters found; taken as English"
    if script == "thai":
        return "th", "written in Thai letters"
    if script == "han":
        traditional = sum(sample.count(t) for t, _ in _DIFFERENT)
        simplified = sum(sample.count(s) for _, s in _DIFFERENT)
        if simplified > traditional:
            return "zh-CN", "Chinese in simplified characters"
        return "zh-TW", "Chinese in traditional characters"
    if len(_VIETNAMESE.findall(sample)) > max(3, counts["latin"] // 200):
        return "vi", "Vietnamese letters found"
    return "en", "Latin letters, taken as English (give --language for another language)"
