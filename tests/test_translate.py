"""Machine translation for review, the site glossary, approval (CLI and the Prefect UI's
paused flow), and dubbing batches that reuse every image and clip.

The translation model is a tiny random-weight NLLB built locally (tests/tiny_mt.py) and loaded
through the same `from_pretrained` path as facebook/nllb-200-distilled-600M: its text is noise,
so these tests check what happens to a draft, not its quality.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, parse_srt, write_script
from tiny_mt import build_nllb

from flows.cli import main
from stages.glossary import load_glossary, restore
from stages.translations import read_sidecar, sidecar_path

VI = {"title": "Khóa an toàn", "scenes": {
    "isolate": {"narration": "Tắt băng tải ở cầu dao chính.", "caption": "Bước 1: cách ly"},
    "lock": {"narration": "Gắn ổ khóa của bạn. Giữ chìa khóa bên mình.",
             "caption": "Bước 2: khóa"}}}


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mt")
    model = build_nllb(folder / "tiny-nllb")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_PROFILE, "translate": {
        "backend": "transformers", "model": str(model), "num_beams": 1, "max_new_tokens": 12,
        "license": "CC-BY-NC-4.0"}}), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_glossary_terms_are_matched_longest_first_and_restored_from_placeholders():
    glossary = load_glossary()
    text = "Apply lockout/tagout at the main disconnect, then test the lockout."
    used = glossary.used(text, "en", "zh-TW")
    assert [t.source for t in used] == ["main disconnect", "lockout/tagout", "lockout"]
    masked, terms = glossary.protect(text, "en", "zh-TW")
    assert "lockout" not in masked and "[T0]" in masked and "[T2]" in masked
    model_output = "在 [T0] 處執行 [ t1 ]，然後測試 [T2]。"   # spacing as models mangle it
    assert restore(model_output, terms) == "在 主電源開關 處執行 上鎖掛牌，然後測試 上鎖。"
    assert restore("在處執行", terms) is None            # a lost placeholder is not restored
    assert glossary.missing(text, "在主電源開關處執行上鎖掛牌，然後測試上鎖。", "en", "zh-TW") == []
    missing = glossary.missing(text, "在主開關處執行掛牌。", "en", "zh-TW")
    assert [t.target for t in missing] == ["主電源開關", "上鎖掛牌", "上鎖"]


def test_translate_review_approve_and_build(tmp_path, profile, prefect_server):
    script = write_script(tmp_path, base_script(languages=["en", "th"]))
    code, output = run("validate", script)
    assert code == 2 and "sopreel translate script.yaml --lang th" in output

    code, output = run("translate", script, "--lang", "th", "--profile", profile)
    assert code == 0, output
    sidecar, _ = read_sidecar(script)
    draft = sidecar.languages["th"]
    assert draft.status == "unreviewed" and draft.model.endswith("tiny-nllb")
    assert set(draft.scenes) == {"isolate", "lock"} and draft.title
    # The source says "main disconnect": the draft is told to use the glossary's Thai term.
    assert any("main disconnect" in note for note in draft.notes)

    code, output = run("build", script, "--lang", "th", "--profile", profile, "--out",
                       tmp_path / "out")
    assert code == 2 and "script.translations.yaml:" in output
    assert "languages.th.status: the machine translation is not reviewed" in output
    assert not (tmp_path / "out").exists()

    # The reviewer corrects the draft in the sidecar, then approves it.
    data = yaml.safe_load(sidecar_path(script).read_text(encoding="utf-8"))
    data["languages"]["th"]["title"] = "การล็อกเอาต์"
    data["languages"]["th"]["scenes"]["isolate"].update(
        narration="ปิดสายพานที่สวิตช์ตัดไฟหลัก", caption="ขั้นที่ 1: ตัดพลังงาน")
    data["languages"]["th"]["scenes"]["lock"].update(
        narration="ใส่กุญแจของคุณเอง เก็บลูกกุญแจไว้กับตัว", caption="ขั้นที่ 2: ล็อก")
    sidecar_path(script).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, output = run("review", script, "--lang", "th", "--approve")
    assert code == 2 and "reviewer" in output
    code, output = run("review", script, "--lang", "th", "--approve", "--reviewer", "Somchai")
    assert code == 0, output
    assert read_sidecar(script)[0].languages["th"].reviewer == "Somchai"

    out = tmp_path / "out"
    code, output = run("build", script, "--lang", "th", "--profile", profile, "--out", out)
    assert code == 0, output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    origin = manifest["translations"]["th"]
    assert origin["source"] == "machine" and origin["status"] == "reviewed"
    assert origin["reviewer"] == "Somchai"
    assert {"backend": "translate", "model": origin["model"], "license": "CC-BY-NC-4.0",
            "commercial": False} in manifest["licenses"]
    cues = parse_srt((out / "test-sop" / "th" / "subtitles.srt").read_text(encoding="utf-8"))
    assert "สวิตช์ตัดไฟหลัก" in "".join(line for cue in cues for line in cue["lines"])

    # The source changes: that scene's translation is stale until drafted and reviewed again.
    text = script.read_text(encoding="utf-8").replace("Fit your own padlock.",
                                                      "Fit your own red padlock.")
    script.write_text(text, encoding="utf-8")
    code, output = run("validate", script, "--lang", "th")
    assert code == 2 and "scene(s) lock changed since this was drafted" in output
    code, output = run("translate", script, "--lang", "th", "--profile", profile)
    assert code == 0 and "drafted 1 scene(s)" in output
    again = read_sidecar(script)[0].languages["th"]
    assert again.status == "unreviewed"
    assert again.scenes["isolate"].narration == "ปิดสายพานที่สวิตช์ตัดไฟหลัก"   # kept


def test_glossary_blocks_approval_until_accepted(tmp_path, profile):
    script = write_script(tmp_path, base_script(languages=["en", "th"]))
    assert run("translate", script, "--lang", "th", "--profile", profile)[0] == 0
    code, output = run("review", script, "--lang", "th", "--approve", "--reviewer", "Somchai")
    assert code == 2 and "'main disconnect' -> 'สวิตช์ตัดไฟหลัก'" in output
    code, output = run("review", script, "--lang", "th", "--approve", "--reviewer", "Somchai",
                       "--accept-deviations")
    assert code == 0, output
    approved = read_sidecar(script)[0].languages["th"]
    assert approved.status == "reviewed"
    assert any("main disconnect" in d for d in approved.accepted_deviations)


def test_translations_written_by_people_are_never_drafted(tmp_path, profile):
    script = write_script(tmp_path, base_script(languages=["en", "vi"], translations={"vi": VI}))
    code, output = run("translate", script, "--lang", "vi", "--profile", profile)
    assert code == 2 and "already has a vi translation written by people" in output
    assert not sidecar_path(script).exists()


def test_review_in_the_prefect_ui_pauses_for_corrections_and_approval(tmp_path, profile,
                                                                      prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.review import review_translation

    script = write_script(tmp_path, base_script(languages=["en", "zh-TW"]))
    assert run("translate", script, "--lang", "zh-TW", "--profile", profile)[0] == 0
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        review_translation(str(script), "zh-TW", poll_interval_s=1)))
    worker.start()
    with get_client(sync_client=True) as client:
        paused = None
        for _ in range(120):
            runs = client.read_flow_runs()
            paused = next((r for r in runs if r.state and r.state.is_paused()
                           and r.name and r.flow_id), None)
            if paused:
                break
            time.sleep(0.5)
        assert paused is not None, "the review flow never paused for input"
        corrected = {"title": "上鎖掛牌", "narration_0": "在主電源開關處關閉輸送帶。",
                     "caption_0": "步驟一：隔離", "narration_1": "掛上你自己的鎖。鑰匙要隨身攜帶。",
                     "caption_1": "步驟二：上鎖", "reviewer": "Mei Lin", "approve": True,
                     "accept_deviations": False}
        resume_flow_run(paused.id, run_input=corrected)
    worker.join(timeout=120)
    assert result == {"language": "zh-TW", "status": "reviewed", "reviewer": "Mei Lin"}
    draft = read_sidecar(script)[0].languages["zh-TW"]
    assert draft.status == "reviewed" and draft.scenes["isolate"].caption == "步驟一：隔離"
    assert draft.title == "上鎖掛牌" and draft.accepted_deviations == []
    assert run("validate", script, "--lang", "zh-TW")[0] == 0


def test_dub_batch_adds_languages_without_regenerating_visuals(tmp_path, profile,
                                                               prefect_server):
    first = write_script(tmp_path / "a", base_script(
        id="sop-a", languages=["en"], translations={"vi": VI}))
    second = write_script(tmp_path / "b", base_script(
        id="sop-b", languages=["en"], translations={"vi": VI}))
    out = tmp_path / "out"
    for script in (first, second):
        assert run("build", script, "--profile", profile, "--out", out)[0] == 0
    def visuals() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in out.glob("*/assets/*/*")
                if p.parent.name in ("images", "animate") and p.suffix in (".png", ".mp4")}

    before = visuals()
    assert len(before) == 8   # 2 scripts x 2 scenes x (image + clip)

    code, output = run("dub", first, second, "--lang", "vi", "--profile", profile,
                       "--out", out)
    assert code == 0, output
    assert visuals() == before                            # not one image or clip made again
    for script_id in ("sop-a", "sop-b"):
        manifest = json.loads((out / script_id / "manifest.json").read_text(encoding="utf-8"))
        assert set(manifest["outputs"]) == {"en", "vi"}   # the earlier English build is kept
        for scene in manifest["scenes"]:
            for asset in scene["assets"]:
                if asset["stage"] in ("images", "animate"):
                    assert asset["cached"] is True
        cues = parse_srt((out / script_id / "vi" / "subtitles.srt").read_text(encoding="utf-8"))
        assert "Tắt băng tải" in cues[0]["lines"][0]


def test_dub_checks_every_script_before_any_work(tmp_path, profile):
    good = write_script(tmp_path / "a", base_script(id="sop-a", translations={"vi": VI}))
    bad = write_script(tmp_path / "b", base_script(id="sop-b"))
    code, output = run("dub", good, bad, "--lang", "vi", "--profile", profile, "--out",
                       tmp_path / "out")
    assert code == 2 and "Nothing was dubbed" in output and "'vi' is not available" in output
    assert not (tmp_path / "out").exists()


def test_review_in_the_ui_needs_a_server_that_outlives_the_command(tmp_path, profile,
                                                                   monkeypatch):
    """Prefect's per-command temporary server (chosen here) would vanish while the reviewer
    works; by default sopreel's background server serves the review."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("SOPREEL_PREFECT_SERVER", "temporary")
    script = write_script(tmp_path, base_script(languages=["en", "th"]))
    assert run("translate", script, "--lang", "th", "--profile", profile)[0] == 0
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):   # no test server either
        code, output = run("review", script, "--lang", "th", "--ui")
    assert code == 2 and "PREFECT_API_URL" in output and "SOPREEL_PREFECT_SERVER" in output
