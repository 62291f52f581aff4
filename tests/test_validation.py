"""Every refusal a user can meet in a script: file, line, field, what was expected; no traceback,
a non-zero exit, and nothing written to the output folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import base_script, make_photo, write_script

from flows.cli import main


def refuse(script: Path, *args: str, out: Path | None = None) -> str:
    """Run `sopreel build`; assert a clean refusal; return the message."""
    out = out or script.parent / "outputs"
    result = CliRunner().invoke(main, ["build", str(script), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir()), "nothing may be written"
    return result.output


def refuse_scene(folder: Path, index: int, **changes: object) -> str:
    """Refusal of the base script with one scene's fields changed (None deletes a field)."""
    script = base_script()
    for key, value in changes.items():
        if value is None:
            del script["scenes"][index][key]
        else:
            script["scenes"][index][key] = value
    return refuse(write_script(folder, script))


def test_valid_script_passes(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(write_script(tmp_path, base_script()))])
    assert result.exit_code == 0, result.output
    assert "2 scenes" in result.output


def test_unknown_key_names_line_and_suggests(tmp_path):
    message = refuse_scene(tmp_path, 1, narraton="typo")
    assert "script.yaml:" in message and "scenes[1].narraton" in message
    assert "did you mean 'narration'?" in message
    line = int(re.search(r"script\.yaml:(\d+): scenes\[1\]", message).group(1))
    text = (tmp_path / "script.yaml").read_text().splitlines()
    assert "narraton" in text[line - 1]


def test_unknown_top_level_key(tmp_path):
    message = refuse(write_script(tmp_path, base_script(langauges=["en"])))
    assert "langauges" in message and "did you mean 'languages'?" in message


def test_duplicate_scene_ids(tmp_path):
    message = refuse_scene(tmp_path, 1, id="isolate")
    assert "scenes[1].id" in message and "duplicate scene id 'isolate'" in message


def test_wrong_type(tmp_path):
    message = refuse_scene(tmp_path, 0, narration=42)
    assert "scenes[0].narration" in message and "valid string" in message and "42" in message


def test_missing_required_field(tmp_path):
    assert "scenes[0].narration: is required" in refuse_scene(tmp_path, 0, narration=None)


def test_unknown_language_suggests(tmp_path):
    message = refuse(write_script(tmp_path, base_script(languages=["en", "zh-tx"])))
    assert "languages[1]" in message and "unknown language 'zh-tx'" in message
    assert "zh-TW" in message


@pytest.mark.parametrize("bad_id", ["Lockout Tagout", "../escape", "a" * 70, "x;rm -rf"])
def test_unsafe_script_id(tmp_path, bad_id):
    message = refuse(write_script(tmp_path, base_script(id=bad_id)))
    assert "id:" in message and "lowercase letters" in message


def test_missing_photo(tmp_path):
    message = refuse_scene(tmp_path, 0, image="photos/nope.jpg")
    assert "scenes[0].image" in message and "file not found" in message


def test_photo_that_is_not_an_image(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "fake.jpg").write_text("not a jpeg")
    assert "fake.jpg is not a JPEG, PNG or WEBP photo" in \
        refuse_scene(tmp_path, 0, image="photos/fake.jpg")


@pytest.mark.parametrize("path", ["../outside.png", "/etc/passwd", "photos/../../outside.png"])
def test_photo_outside_the_script_folder(tmp_path, path):
    make_photo(tmp_path / "outside.png", (64, 64))
    script = base_script()
    script["scenes"][0]["image"] = path
    message = refuse(write_script(tmp_path / "sop", script))
    assert "scenes[0].image" in message
    assert "'..' is not allowed" in message or "absolute" in message


def test_photo_symlink_escaping_the_folder(tmp_path):
    target = make_photo(tmp_path / "secret.png", (64, 64))
    (tmp_path / "sop").mkdir()
    os.symlink(target, tmp_path / "sop" / "link.png")
    script = base_script()
    script["scenes"][0]["image"] = "link.png"
    assert "leads outside the script's folder" in refuse(write_script(tmp_path / "sop", script))


def test_voice_not_enrolled(tmp_path):
    message = refuse(write_script(tmp_path, base_script(voice="anna")),
                     "--voices-dir", str(tmp_path / "voices"))
    assert "voice: voice 'anna' is not enrolled" in message


def test_translation_missing_a_scene(tmp_path):
    script = base_script(languages=["en", "th"], translations={
        "th": {"scenes": {"isolate": {"narration": "ปิดสายพาน"}}}})
    message = refuse(write_script(tmp_path, script))
    assert "misses the narration of scene 'lock'" in message


def test_language_without_translation(tmp_path):
    message = refuse(write_script(tmp_path, base_script(languages=["en", "vi"])))
    assert "builds 'vi' but 'translations' has no vi block" in message


def test_translation_for_unknown_scene(tmp_path):
    script = base_script(languages=["en", "th"], translations={"th": {"scenes": {
        "isolate": {"narration": "หนึ่ง"}, "lock": {"narration": "สอง"},
        "lokc": {"narration": "สาม"}}}})
    assert "no scene has this id; did you mean 'lock'?" in refuse(write_script(tmp_path, script))


def test_not_utf8(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_bytes(b"id: test\ntitle: caf\xe9\n")
    message = refuse(path)
    assert "script.yaml:2" in message and "not valid UTF-8" in message


def test_yaml_alias_bomb(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    message = refuse(write_script(tmp_path, bomb))
    assert "aliases" in message and "not allowed" in message


def test_duplicate_yaml_key(tmp_path):
    text = "id: test\nid: other\n"
    message = refuse(write_script(tmp_path, text))
    assert "script.yaml:2" in message and "appears twice" in message


def test_invalid_yaml_syntax(tmp_path):
    message = refuse(write_script(tmp_path, "id: test\nscenes: [unclosed\n"))
    assert "not valid YAML" in message


def test_oversized_field(tmp_path):
    message = refuse_scene(tmp_path, 0, caption="x" * 500)
    assert "scenes[0].caption" in message and "the limit is 120 characters" in message


def test_oversized_file(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text("# " + "x" * (1024 * 1024 + 10) + "\n")
    assert "the limit is 1,048,576 bytes" in refuse(path)


def test_control_character(tmp_path):
    assert "control character U+0007" in refuse_scene(tmp_path, 0, narration="Off\x07 now.")


def test_all_problems_reported_at_once(tmp_path):
    script = base_script(id="Bad Id")
    script["scenes"][0]["narraton"] = "typo"
    message = refuse(write_script(tmp_path, script))
    assert "has 2 problems" in message


def test_missing_script_file(tmp_path):
    message = refuse(tmp_path / "nope.yaml")
    assert "file not found" in message


def test_lang_option_must_have_text(tmp_path):
    message = refuse(write_script(tmp_path, base_script()), "--lang", "th")
    assert "--lang: 'th' is not available for this script" in message


def test_unknown_profile(tmp_path):
    message = refuse(write_script(tmp_path, base_script()), "--profile", "drafty")
    assert "Unknown profile 'drafty'. Did you mean 'draft'?" in message


def test_profile_typo_names_key_and_line(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("images: {backend: storyboard, widht: 640}\n"
                       "animate: {backend: kenburns}\nnarrate: {backend: espeak}\n"
                       "music: {backend: synth}\n")
    message = refuse(write_script(tmp_path, base_script()), "--profile", str(profile))
    assert "bad.yaml:1: images.widht: unknown key; did you mean 'width'?" in message


def test_profile_unknown_backend(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("images: {backend: difusers}\nanimate: {backend: kenburns}\n"
                       "narrate: {backend: espeak}\nmusic: {backend: synth}\n")
    message = refuse(write_script(tmp_path, base_script()), "--profile", str(profile))
    assert "Unknown images backend 'difusers'" in message and "storyboard" in message


def test_unknown_style(tmp_path):
    message = refuse(write_script(tmp_path, base_script(style="clean-industral")))
    assert "unknown style 'clean-industral'. Did you mean 'clean-industrial'?" in message


def test_missing_music_file(tmp_path):
    message = refuse(write_script(tmp_path, base_script(music="audio/bed.mp3")))
    assert "music: file not found" in message


def test_templates_validate():
    from stages.paths import TEMPLATES

    scripts = sorted((TEMPLATES / "scripts").glob("*.yaml"))
    assert len(scripts) >= 2
    for script in scripts:
        result = CliRunner().invoke(main, ["validate", str(script), "--profile", "draft"])
        assert result.exit_code == 0, result.output


def test_yaml_tags_are_refused(tmp_path):
    text = 'id: x\ntitle: !!python/object/apply:os.system ["echo hi"]\n'
    message = refuse(write_script(tmp_path, text))
    assert "script.yaml:2: title: the YAML tag" in message and "not allowed" in message


def test_truncated_photo_is_refused_or_reported(tmp_path):
    good = make_photo(tmp_path / "photos" / "cut.png", (64, 64))
    good.write_bytes(good.read_bytes()[:60])
    assert "cut.png" in refuse_scene(tmp_path, 0, image="photos/cut.png")
