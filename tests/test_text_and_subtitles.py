"""Sentence splitting, cue wrapping, subtitle files, and literal text through libass."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from stages import languages
from stages.narrate.speech import speakable
from stages.style import load_style
from stages.subtitles import ass_escape, to_ass, to_srt, to_vtt
from stages.text import CLOSING, OPENING, cue_texts, speech_parts, split_sentences, width
from stages.timeline import Cue, SentenceTiming, build_timeline

EN, ZH, TH = languages.get("en"), languages.get("zh-TW"), languages.get("th")


def test_english_sentences_keep_abbreviations():
    text = "Wear gloves, e.g. the blue ones. Check the guard! Is it closed? Yes"
    assert split_sentences(text, EN) == [
        "Wear gloves, e.g. the blue ones.", "Check the guard!", "Is it closed?", "Yes"]


def test_chinese_sentences_split_on_full_stops():
    text = "在主電源開關處關閉輸送帶。掛上你自己的鎖！鑰匙要隨身攜帶"
    assert split_sentences(text, ZH) == ["在主電源開關處關閉輸送帶。", "掛上你自己的鎖！",
                                         "鑰匙要隨身攜帶"]


def test_language_aliases_resolve():
    assert languages.canonical("zh-hant") == "zh-TW" and languages.canonical("ZH_cn") == "zh-CN"
    assert languages.canonical("xx") is None


def test_latin_cues_respect_width_and_line_count():
    sentence = ("Before you start any maintenance on the conveyor, isolate every energy source, "
                "including electrical, pneumatic and hydraulic power, and release stored energy.")
    cues = cue_texts(sentence, EN)
    assert len(cues) >= 2
    for lines in cues:
        assert len(lines) in (1, 2)
        assert all(width(line) <= 42 for line in lines)
    assert " ".join(" ".join(lines) for lines in cues) == sentence


def test_short_sentence_is_one_balanced_cue():
    cues = cue_texts("Switch the conveyor off at the main disconnect now.", EN)
    assert len(cues) == 1 and len(cues[0]) == 2
    assert abs(len(cues[0][0]) - len(cues[0][1])) <= 12


def test_chinese_cues_16_chars_and_punctuation_rules():
    sentence = ("在開始任何維修工作之前，必須先隔離所有能源，"
                "包括電力、氣壓和液壓，並釋放儲存的能量。")
    cues = cue_texts(sentence, ZH)
    lines = [line for cue in cues for line in cue]
    assert all(width(line) <= 16 for line in lines)
    assert all(line[0] not in CLOSING for line in lines)
    assert all(line[-1] not in OPENING for line in lines)
    assert "".join(lines) == sentence


def test_timeline_from_measured_sentences():
    narrations = [(3.0, [SentenceTiming("One.", 0.0, 1.2), SentenceTiming("Two.", 1.5, 3.0)]),
                  (2.0, [SentenceTiming("Three.", 0.0, 2.0)])]
    timeline = build_timeline(narrations, EN, lead_s=0.5, pause_s=1.0, fps=24)
    assert [s.start for s in timeline.slots] == [0.0, 4.5]
    assert timeline.duration == 4.5 + 3.5
    assert [(c.start, c.end) for c in timeline.cues] == [(0.5, 1.7), (2.0, 3.5), (5.0, 7.0)]


def test_every_scene_is_a_whole_number_of_frames_and_its_own_length():
    """A slot is rounded up to whole frames (the pause takes the rest), so every scene starts
    on a frame and a longer narration in one scene moves the others without changing them."""
    def lengths(first: float) -> list[float]:
        narrations = [(first, []), (2.013, []), (1.9, [])]
        timeline = build_timeline(narrations, EN, lead_s=0.4, pause_s=0.8, fps=24)
        for slot in timeline.slots:
            assert abs(slot.start * 24 - round(slot.start * 24)) < 1e-9
            assert abs(slot.length * 24 - round(slot.length * 24)) < 1e-9
        return [slot.length for slot in timeline.slots]

    short, long = lengths(3.0), lengths(3.3177)
    assert short[1:] == long[1:] and long[0] > short[0]
    assert short[1] == 78 / 24 and 0.4 + 2.013 + 0.8 <= short[1] < 0.4 + 2.013 + 0.8 + 1 / 24


def test_srt_and_vtt_keep_text_literal():
    cues = [Cue(1.0, 2.5, ("a <b>bold</b> & {\\an8} 100%", "line two"))]
    srt = to_srt(cues)
    assert srt == "1\n00:00:01,000 --> 00:00:02,500\na <b>bold</b> & {\\an8} 100%\nline two\n"
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\n")
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; {\\an8} 100%" in vtt


def test_ass_escape_neutralises_tags():
    escaped = ass_escape("{\\an8}C:\\new\\N")
    assert "{" not in escaped.replace("\\{", "")
    assert "\\n" not in escaped and "\\N" not in escaped


def _render(ass_text: str, tmp_path) -> np.ndarray:
    path = tmp_path / "t.ass"
    path.write_text(ass_text, encoding="utf-8")
    png = tmp_path / "frame.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=black:s=320x180:d=1", "-vf", f"ass={path}", "-frames:v", "1",
                    str(png)], check=True)
    return np.asarray(Image.open(png).convert("L"))


def test_libass_shows_override_tags_as_text(tmp_path):
    """`{\\an8}` in a script must not move the subtitle to the top of the frame."""
    style = load_style("clean-industrial")
    hostile = [Cue(0.0, 1.0, ("{\\an8}{\\fs80}TOP",))]
    frame = _render(to_ass(hostile, [], [], style=style, font="Noto Sans", width=320,
                           height=180), tmp_path)
    rows = np.flatnonzero(frame.max(axis=1) > 128)
    assert rows.size and rows.min() > 90, "text must stay at the bottom, at its normal size"
    assert rows.max() - rows.min() < 40


def test_chinese_lines_break_between_clauses_when_they_can():
    cues = cue_texts("在開始任何維修工作之前，必須先隔離所有能源，"
                     "包括電力、氣壓和液壓，並釋放儲存的能量。", ZH)
    assert cues == [["在開始任何維修工作之前，", "必須先隔離所有能源，"],
                    ["包括電力、氣壓和液壓，", "並釋放儲存的能量。"]]


def test_punctuation_only_narration_is_still_one_sentence():
    assert split_sentences("。！", ZH) == ["。！"]
    assert split_sentences("...", EN) == ["..."]


@pytest.mark.parametrize(("written", "language", "spoken"), [
    ("Max. 25 km/h near 1,200 people.", "en",
     "maximum twenty-five kilometres per hour near one thousand, two hundred people."),
    ("Lift 1 kg, not 2.5 kg, on the 3rd shelf; wear PPE.", "en",
     "Lift one kilogram, not two point five kilograms, on the third shelf; wear P P E."),
    ("限速25 km/h，50%的人，12005公斤。", "zh-TW",
     "限速二十五公里每小時，百分之五十的人，一萬二千零五公斤。"),
    ("限速10公里，3.5 kg。", "zh-CN", "限速十公里，三点五公斤。"),
    ("1,200人，1,5公斤", "zh-TW", "一千二百人，一點五公斤"),
    ("1.200 người", "vi", "một nghìn hai trăm người"),
    ("ความเร็ว 25 km/h", "th", "ความเร็ว ยี่สิบห้า กิโลเมตรต่อชั่วโมง"),
    ("Tốc độ 25 km/h, 3,5 kg.", "vi",
     "Tốc độ hai mươi lăm ki lô mét trên giờ, ba phẩy năm ki lô gam."),
])
def test_narration_reads_numbers_units_and_abbreviations(written, language, spoken):
    assert speakable(written, language) == spoken


LONG_SENTENCES = {
    "en": ("Before you start the forklift, walk around it and check the tyres, the forks and "
           "the chains, then sit down and fasten your seat belt because a tip-over can crush "
           "you.",
           ["Before you start the forklift,", "walk around it", "and check the tyres,",
            "the forks and the chains,", "then sit down", "and fasten your seat belt",
            "because a tip-over can crush", "you."]),
    "zh-TW": ("開始操作堆高機之前，請繞車一周檢查輪胎、貨叉和鏈條，"
              "然後坐下並繫好安全帶，因為翻車可能會壓傷你。",
              ["開始操作堆高機之前，請繞車一周檢查輪胎、貨叉和鏈條，",
               "然後坐下並繫好安全帶，因為翻車可能會壓傷你。"]),
    "th": ("ก่อนเริ่มใช้รถยก ให้เดินตรวจรอบรถ ตรวจยาง งา และโซ่ แล้วนั่งลงและคาดเข็มขัดนิรภัย "
           "เพราะรถอาจพลิกคว่ำทับคุณได้ และต้องสวม PPE ทุกครั้ง",
           ["ก่อนเริ่มใช้รถยก", "ให้เดินตรวจรอบรถ ตรวจยาง งา", "และโซ่",
            "แล้วนั่งลงและคาดเข็มขัดนิรภัย", "เพราะรถอาจพลิกคว่ำทับคุณได้",
            "และต้องสวม PPE ทุกครั้ง"]),
    "vi": ("Trước khi khởi động xe nâng, hãy đi một vòng quanh xe và kiểm tra lốp, càng nâng "
           "và xích, rồi ngồi xuống và thắt dây an toàn vì xe có thể lật và đè lên bạn.",
           ["Trước khi khởi động xe nâng,", "hãy đi một vòng quanh xe", "và kiểm tra lốp,",
            "càng nâng và xích,", "rồi ngồi xuống", "và thắt dây an toàn", "vì xe có thể lật",
            "và đè lên bạn."]),
}


@pytest.mark.parametrize("code", list(LONG_SENTENCES))
def test_a_sentence_too_long_for_the_model_is_split_where_a_speaker_pauses(code):
    """30 characters a part: clause punctuation first, then before a conjunction, then between
    (dictionary) words; nothing is lost or reordered."""
    sentence, expected = LONG_SENTENCES[code]
    language = languages.get(code)
    parts = speech_parts(sentence, language, lambda text: len(text) <= 30)
    assert parts == expected
    glue = "" if language.writing == "han" else " "
    assert glue.join(parts) == sentence
    assert speech_parts(sentence, language, lambda text: True) == [sentence]
    tiny = speech_parts(sentence, language, lambda text: len(text) <= 8)   # words split too
    assert all(len(p) <= 8 for p in tiny)
    assert "".join(tiny).replace(" ", "") == sentence.replace(" ", "")
