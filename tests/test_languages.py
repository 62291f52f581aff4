"""Every language reads right: fonts that cover the text, line breaks by writing system, and
subtitles slow enough to read. Checked with tools independent of the code under test:
fontconfig's own charset query, a dictionary segmenter, libass."""

from __future__ import annotations

import subprocess
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from conftest import write_script
from pythainlp.tokenize import word_tokenize

from stages import languages
from stages.errors import ScriptError
from stages.fonts import font_chain, font_runs
from stages.paths import TEMPLATES
from stages.script import load_script
from stages.subtitles import ass_line
from stages.text import CLOSING, OPENING, cue_texts, width, wrap_lines
from stages.timeline import CUE_GAP_S, MIN_CUE_S, SentenceTiming, build_timeline, slow_cues

TH, ZH_TW, ZH_CN, VI, EN = (languages.get(c) for c in ("th", "zh-TW", "zh-CN", "vi", "en"))

SAMPLES = {   # letters each language's own font must draw
    "en": "The quick brown fox jumps over the lazy dog 0123456789",
    "zh-TW": "在主電源開關處關閉輸送帶，掛上鎖與標籤。",
    "zh-CN": "在主电源开关处关闭输送带，挂上锁和标签。",
    "th": "ปิดสวิตช์สายพานลำเลียงที่สวิตช์ตัดไฟหลัก",
    "vi": "Tắt băng tải ở cầu dao chính. Đội mũ bảo hộ",
    "es": "Señal de peligro: ¿está el protector cerrado?",
    "fr": "Vérifiez la protection, ça évite l'œil",
    "de": "Prüfen Sie die Schutzhaube, größer", "it": "Perché è così", "pt": "Atenção: proteção",
    "pl": "Zażółć gęślą jaźń", "tr": "Çalışma güvenliği İşçi ğ ş ı", "ru": "Проверьте защиту",
    "nl": "Controleer de beschermkap", "cs": "Příliš žluťoučký kůň", "hu": "Árvíztűrő tükörfúrógép",
    "ar": "تحقق من واقي الآلة", "hi": "मशीन गार्ड की जाँच करें", "ja": "安全メガネをかけてください",
    "ko": "보안경을 착용하십시오",
}


@cache
def _fc_covers(family: str, char: str) -> bool:
    """fontconfig's own answer, asked differently: does a font of `family` list the char?"""
    listed = subprocess.run(["fc-list", f":charset={ord(char):x}", "family"],
                            capture_output=True, text=True, check=True).stdout
    return any(family in line.split(",") for line in listed.splitlines())


def test_every_language_has_a_font_that_draws_its_letters():
    assert set(SAMPLES) == set(languages.languages())
    for code, sample in SAMPLES.items():
        font = languages.get(code).font
        for char in set(sample) - {" "}:
            assert _fc_covers(font, char), f"{code}: {font} lacks {char!r}"


@pytest.mark.parametrize("template", sorted((TEMPLATES / "scripts").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_templates_glyph_coverage(template: Path):
    loaded = load_script(template)
    for code in loaded.languages:
        chain = font_chain(languages.get(code).font)
        texts = [loaded.title(code) or ""]
        texts += [t for lines in loaded.lines(code) for t in (lines.narration, lines.caption or "")]
        for text in texts:
            runs = font_runs(text, chain)
            assert "".join(run for _, run in runs) == text   # nothing dropped
            for family, run in runs:
                for char in set(run) - {" "}:
                    assert _fc_covers(family, char), f"{template.name} {code}: {family} {char!r}"


def test_digits_and_latin_in_thai_text_switch_font_in_the_subtitle():
    chain = font_chain(TH.font)
    line = ass_line("สวมแว่นตา PPE ทุก 5 นาที", chain)
    assert "{\\fnNoto Sans}PPE" in line and "{\\fnNoto Sans}5" in line
    assert line.count("{\\fnNoto Sans Thai}") == 2   # back to the style's font after each run
    assert not _fc_covers("Noto Sans Thai", "P") and _fc_covers("Noto Sans", "P")


def test_a_character_no_font_has_is_refused_with_file_line_and_field(tmp_path):
    script = write_script(tmp_path, """\
id: emoji
title: Gloves
language: en
languages: [en, th]
scenes:
  - id: gloves
    narration: Wear gloves.
    caption: "Extinguisher \U0001F9EF"
    visual: gloves
translations:
  th:
    scenes:
      gloves: {narration: "สวมถุงมือ", caption: "ถุงมือ"}
""")
    with pytest.raises(ScriptError) as caught:
        load_script(script)
    message = str(caught.value)
    assert "script.yaml:8: scenes[0].caption" in message
    assert "U+1F9EF FIRE EXTINGUISHER" in message and "Noto Sans" in message
    assert message.count("\n") == 1   # one problem: the Thai text is fine


# --- emoji and symbols --------------------------------------------------------------------

EMOJI = ["✅", "❌", "🚫", "🔥", "⚠️", "🙂", "🧤"]
TOFU = "\ue000"   # private use: no font has it, so a renderer draws its missing-glyph box


def _libass_picture(tmp_path: Path, line: str) -> np.ndarray:
    """One 320x180 frame with `line` (ASS text, font switches included) burned in by libass,
    as black on a white card: the ink as a boolean mask."""
    ass = tmp_path / "t.ass"
    ass.write_text("[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 180\n\n"
                   "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, Alignment\n"
                   "Style: Big,Noto Sans,96,&H00000000,5\n\n[Events]\nFormat: Layer, Start, "
                   f"End, Style, Text\nDialogue: 0,0:00:00.00,0:00:01.00,Big,{line}\n",
                   encoding="utf-8")
    done = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                           "color=white:s=320x180:d=1", "-vf", "ass=t.ass", "-frames:v", "1",
                           "-f", "rawvideo", "-pix_fmt", "gray", "-"], cwd=tmp_path,
                          capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.uint8).reshape(180, 320) < 128


def _pillow_picture(text: str, font: str | None = None) -> np.ndarray:
    """`text` drawn by the storyboard's text drawing; with `font`, in that font alone."""
    from PIL import Image, ImageDraw

    from stages.fonts import pillow_font
    from stages.images.storyboard import draw_text

    image = Image.new("L", (320, 180), 255)
    draw = ImageDraw.Draw(image)
    if font:
        draw.text((160, 90), text, font=pillow_font(font, 96), fill=0, anchor="mm")
    else:
        draw_text(draw, (160, 90), text, 96, fill=0, anchor="mm")
    return np.asarray(image) < 128


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.mark.parametrize("emoji", EMOJI)
def test_emoji_are_drawn_in_burned_text_and_storyboards(tmp_path, emoji):
    """Each emoji training material uses is drawn, by libass in captions and subtitles and by
    Pillow on storyboards: ink in its box, and not the missing-glyph box a renderer shows
    for a character its font lacks."""
    chain = font_chain(EN.font)
    caption = f"Wear gloves {emoji}"
    assert "".join(run for _, run in font_runs(caption, chain)) == caption   # nothing dropped
    burned = _libass_picture(tmp_path, ass_line(emoji, chain))
    tofu = _libass_picture(tmp_path, "{\\fnSymbola}" + TOFU)
    assert tofu.sum() > 200 and burned.sum() > 200, (tofu.sum(), burned.sum())
    assert _overlap(burned, tofu) < 0.5
    drawn, tofu = _pillow_picture(emoji), _pillow_picture(TOFU, font="Symbola")
    assert tofu.sum() > 200 and drawn.sum() > 200, (tofu.sum(), drawn.sum())
    assert _overlap(drawn, tofu) < 0.5
    if emoji.endswith("\ufe0f"):   # the presentation selector draws nothing of its own
        assert np.array_equal(drawn, _pillow_picture(emoji[0]))


def test_emoji_in_a_caption_pass_validation(tmp_path):
    script = write_script(tmp_path, """\
id: emoji
title: "Hot work \u26a0\ufe0f"
language: en
scenes:
  - id: gloves
    narration: Wear gloves.
    caption: "\u2705 Gloves \U0001F9E4  \u274c Bare hands \U0001F6AB \U0001F525"
    visual: gloves
""")
    assert load_script(script).script.scenes[0].caption.startswith("\u2705 Gloves")


# --- line breaking -----------------------------------------------------------------------

THAI = ["ก่อนเริ่มกะทุกครั้ง ผู้ขับต้องตรวจสอบรถโฟล์คลิฟท์ ใช้เวลาเพียงห้านาที และป้องกันอุบัติเหตุได้",
        "ปิดสวิตช์สายพานลำเลียงที่สวิตช์ตัดไฟหลักแล้วล็อกและแขวนป้ายด้วยกุญแจของคุณเองก่อนเริ่มงานซ่อมบำรุงทุกครั้ง",
        "สวมแว่นตานิรภัยที่มีแผ่นกันด้านข้างตลอดเวลาในพื้นที่ผลิต",
        "ใส่กุญแจและป้ายของคุณเอง (สีแดง) และเก็บลูกกุญแจไว้กับตัว"]


def _boundaries(text: str) -> set[int]:
    """Word boundaries of the dictionary segmenter, as offsets into `text`."""
    offsets, at = {0}, 0
    for token in word_tokenize(text, engine="newmm", keep_whitespace=True):
        at += len(token)
        offsets.add(at)
    return offsets


@pytest.mark.parametrize("sentence", THAI)
def test_thai_lines_break_only_between_dictionary_words(sentence):
    lines = [line for cue in cue_texts(sentence, TH) for line in cue]
    assert len(lines) >= 2
    assert all(width(line) <= TH.line_chars for line in lines)
    assert all(len(cue) <= 2 for cue in cue_texts(sentence, TH))
    assert all(line[0] not in CLOSING and line[-1] not in OPENING for line in lines), lines
    boundaries, at = _boundaries(sentence), 0
    for line in lines:
        at = sentence.index(line, at)
        assert at in boundaries and at + len(line) in boundaries, line
        at += len(line)
    assert "".join(lines) == sentence.replace(" ", "") or " ".join(lines).replace(" ", "") == \
        sentence.replace(" ", "")


def test_thai_never_splits_a_known_word():
    lines = wrap_lines("ผู้ขับต้องตรวจสอบรถโฟล์คลิฟท์และป้องกันอุบัติเหตุได้ทุกครั้งก่อนเริ่มกะการทำงาน", TH)
    assert len(lines) >= 2
    for word in ("โฟล์คลิฟท์", "อุบัติเหตุ", "ตรวจสอบ", "ป้องกัน"):
        assert any(word in line for line in lines)   # whole on one line
        assert not any(word[:k] == line[-k:] and word[k:] == nxt[:len(word) - k]
                       for line, nxt in pairwise(lines) for k in range(1, len(word)))


CHINESE = ["在開始任何維修工作之前，必須先隔離所有能源，包括電力、氣壓和液壓，並釋放儲存的能量。",
           "請按下「緊急停止」按鈕（紅色），然後通知主管：「設備已停止」。",
           "戴上安全帽并调整帽带，使其戴正。始终佩戴带侧护板的安全眼镜（ANSI Z87.1）。",
           "噪音超過85分貝的區域，請配戴耳塞《聽力保護規範》第3章。"]


@pytest.mark.parametrize("sentence", CHINESE)
def test_chinese_lines_obey_punctuation_rules(sentence):
    language = ZH_TW if "開" in sentence or "請" in sentence or "噪" in sentence else ZH_CN
    lines = [line for cue in cue_texts(sentence, language) for line in cue]
    assert all(width(line) <= 16 for line in lines)
    assert all(line[0] not in CLOSING for line in lines), lines
    assert all(line[-1] not in OPENING for line in lines), lines
    assert "".join(lines) == sentence.replace(" ", "")
    for token in ("ANSI", "Z87.1", "85"):   # Latin words and numbers stay whole
        if token in sentence:
            assert any(token in line for line in lines)


def test_vietnamese_breaks_at_spaces_within_42():
    sentence = ("Ở khu vực có biển báo tai màu xanh, tiếng ồn trên tám mươi lăm đề-xi-ben; "
                "hãy nhét nút tai thật sâu trước khi vào và kiểm tra lại với đồng nghiệp.")
    lines = [line for cue in cue_texts(sentence, VI) for line in cue]
    assert all(width(line) <= 42 for line in lines) and len(lines) >= 3
    assert " ".join(lines) == sentence


# --- reading speed -----------------------------------------------------------------------

def test_cues_stay_up_long_enough_to_read_within_their_scene():
    sentences = [SentenceTiming("Lock it.", 0.0, 0.4), SentenceTiming("Tag it now.", 2.0, 2.8)]
    timeline = build_timeline([(3.0, sentences)], EN, lead_s=0.5, pause_s=0.5, fps=24)
    first, second = timeline.cues
    assert first.end - first.start >= MIN_CUE_S - 1e-3          # held past the spoken 0.4 s
    assert second.end <= timeline.slots[0].end                  # never past its scene
    assert first.end <= second.start - CUE_GAP_S + 1e-6
    assert slow_cues(timeline.cues, EN) == []


def test_cues_too_fast_to_read_are_reported():
    fast = "在主電源開關處關閉輸送帶並上鎖掛牌。"   # 18 characters spoken in one second
    timeline = build_timeline([(1.0, [SentenceTiming(fast, 0.0, 1.0)])], ZH_TW,
                              lead_s=0.2, pause_s=0.1, fps=24)
    slow = slow_cues(timeline.cues, ZH_TW)
    assert slow and all(cue.cps > ZH_TW.reading_cps for cue in slow)
    assert slow[0].limit_cps == 9 and slow[0].index == 1


def test_thai_phrases_end_at_spaces_between_thai_words_only():
    from stages.text import split_sentences
    text = "ในพื้นที่ที่มีป้ายรูปหูสีน้ำเงิน เสียงดังเกิน 85 เดซิเบล สวม PPE ทุกครั้งก่อนเข้าพื้นที่"
    assert split_sentences(text, TH) == ["ในพื้นที่ที่มีป้ายรูปหูสีน้ำเงิน", "เสียงดังเกิน 85 เดซิเบล",
                                         "สวม PPE ทุกครั้งก่อนเข้าพื้นที่"]
