"""`sopreel import`: documents made here (Word, PowerPoint, PDF, Markdown, HTML) become scripts
that validate and build; an LLM rewrite (against a local fake of the OpenAI chat API) is held
until a person approves it, and refused while it drops one of the document's numbers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import ffprobe, parse_srt
from documents import (
    checklist_pdf,
    chinese_docx,
    chinese_pdf,
    deck_pptx,
    forklift_md,
    lockout_docx,
    lockout_pdf,
    spill_html,
    thai_docx,
)
from fake_llm import FakeLLM
from PIL import Image

from flows.cli import main
from stages.importer.detect import detect_language
from stages.importer.document import clean
from stages.importer.facts import numbers
from stages.importer.rewrite import parse_reply


def run(*args: object, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def imported(folder: Path, document: Path, *args: object) -> dict:
    """Import `document` on the command line; the script, checked by `sopreel validate`."""
    code, output = run("import", document, *args)
    assert code == 0, output
    script = document.with_suffix(".yaml")
    code, output = run("validate", script, "--allow-unreviewed")
    assert code == 0, output
    return yaml.safe_load(script.read_text(encoding="utf-8"))


def by_caption(data: dict) -> dict[str, dict]:
    return {scene.get("caption") or scene["id"]: scene for scene in data["scenes"]}


def test_word_steps_nested_items_tables_warnings_and_pictures(tmp_path):
    data = imported(tmp_path, lockout_docx(tmp_path))
    assert data["title"] == "Lockout/Tagout for Conveyor Maintenance"
    assert data["language"] == "en" and data["imported"]["file"] == "lockout.docx"
    scenes = by_caption(data)
    step1 = scenes["Step 1: Isolate the energy"]
    # The nested sub-step is read as part of its step; each scene says where it came from.
    assert step1["narration"] == ("Switch the conveyor off at the main disconnect. Check that "
                                  "the breaker shows OFF.")
    assert step1["source"] == {"file": "lockout.docx", "paragraph": 5}
    step2 = scenes["Step 2: Isolate the energy"]
    # The picture after step 2 is its photo, extracted beside the script.
    photo = tmp_path / step2["image"]
    assert photo.parent.name == "lockout.pictures" and "visual" not in step2
    with Image.open(photo) as image:
        assert image.size == (640, 480)
    warning = next(s for s in data["scenes"] if s.get("caption", "").startswith("Warning"))
    assert "30 seconds" in warning["narration"] and warning["source"]["paragraph"] == 9
    # The steps table: a scene per row, the other columns read out with their header.
    row = scenes["Step 2: Verify"]
    assert row["narration"] == "Wait 10 seconds. Check: The belt stays still."
    assert row["source"] == {"file": "lockout.docx", "table": 1, "row": 3}
    # A one-cell box is a warning; a paragraph in a content control (w:sdt) is read too.
    box = scenes["Danger: never reach into the belt while it can move."]
    assert box["source"] == {"file": "lockout.docx", "table": 2}
    assert data["scenes"][-1]["narration"] == "Report damaged equipment to your supervisor."
    # Short bullets make one scene; the logo (three times in the document) is no scene photo.
    ppe = next(s for s in data["scenes"] if s["id"] == "protective-equipment")
    assert ppe["narration"] == "Safety glasses. Cut-resistant gloves. Ear plugs."
    assert sorted(p.name for p in (tmp_path / "lockout.pictures").iterdir()) == \
        [Path(step2["image"]).name]
    assert all("visual" in s or "image" in s for s in data["scenes"])


def test_thai_and_traditional_chinese_documents(tmp_path):
    thai = imported(tmp_path, thai_docx(tmp_path))
    assert thai["language"] == "th" and thai["title"] == "การล็อกและติดป้ายเครื่องจักร"
    captions = [s.get("caption") for s in thai["scenes"]]
    assert "ขั้นตอนที่ 2: ตัดแหล่งพลังงาน" in captions
    assert any(c and c.startswith("คำเตือน: ") for c in captions)
    assert [s["id"] for s in thai["scenes"]][:2] == ["scene-01", "scene-02"]

    chinese = imported(tmp_path, chinese_docx(tmp_path))
    assert chinese["language"] == "zh-TW"
    steps = [s for s in chinese["scenes"] if s.get("caption", "").startswith("步驟")]
    # Steps typed as "1." paragraphs are steps; no full stop is added after Chinese text.
    assert [s["caption"] for s in steps] == ["步驟1：隔離能源", "步驟2：隔離能源"]
    assert steps[0]["narration"] == "在主電源開關處關閉輸送帶。"
    assert chinese["scenes"][-1]["caption"].startswith("警告：")


def test_slides_notes_become_narration_and_the_largest_picture_the_photo(tmp_path):
    data = imported(tmp_path, deck_pptx(tmp_path))
    first, second, third = data["scenes"]          # the hidden fourth slide is left out
    assert first["caption"] == "Isolate the conveyor" and first["source"]["slide"] == 1
    assert first["narration"].startswith("Switch the conveyor off at the main disconnect.")
    with Image.open(tmp_path / first["image"]) as image:
        assert image.size == (640, 480)     # the larger of the slide's two pictures
    assert second["caption"] == "Wear your PPE" and second["source"]["slide"] == 2
    assert second["narration"] == "Safety glasses. Hearing protection above 85 dB."   # no notes
    assert third["narration"] == "Noise, 85 dB. Load, 1,500 kg."       # a table, row by row


def test_pdf_headings_lists_pictures_and_tables_from_the_layout(tmp_path):
    data = imported(tmp_path, lockout_pdf(tmp_path))
    assert data["title"] == "Lockout Procedure"
    captions = [s.get("caption") for s in data["scenes"]]
    assert captions[:3] == ["Isolate energy", "Step 1: Isolate energy", "Step 2: Isolate energy"]
    assert data["scenes"][0]["narration"].startswith("Before you start, read the whole "
                                                     "procedure. The conveyor runs at 480 V")
    assert [s["source"]["page"] for s in data["scenes"]] == [1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert data["scenes"][-1]["narration"] == "Your padlock. Your tag."   # bullets, not text
    spoken = " ".join(s["narration"] for s in data["scenes"])
    assert "ACME" not in spoken and "Page" not in spoken     # running header, page numbers
    assert any("image" in s for s in data["scenes"])
    assert "WARNING: Stored energy can move the belt for 30 seconds." in captions
    rows = [s for s in data["scenes"] if s.get("caption", "").endswith("Verify") and
            "row" in s["source"]]
    assert [s["narration"] for s in rows] == ["Press the start button.",
                                              "Confirm that nothing moves."]
    # Steps worded alike at the foot of every page are content, not a running footer.
    checklist = imported(tmp_path, checklist_pdf(tmp_path))
    steps = [s for s in checklist["scenes"] if s.get("caption", "").startswith("Step 3")]
    assert [s["narration"] for s in steps] == [f"Check point 3 of area {n} and record it."
                                               for n in range(1, 5)]
    assert not any("ACME" in s["narration"] or "Page" in s["narration"]
                   for s in checklist["scenes"])
    # Traditional Chinese set in a standard CID font; a warning close under a step is its own.
    chinese = imported(tmp_path, chinese_pdf(tmp_path))
    assert chinese["language"] == "zh-TW" and chinese["title"] == "上鎖掛牌程序"
    assert [(s.get("caption"), s["narration"]) for s in chinese["scenes"]] == [
        ("步驟1", "在主電源開關處關閉輸送帶。"), ("步驟2", "用你自己的掛鎖鎖上隔離開關。"),
        ("警告：煞車中的儲存能量可能使皮帶移動30秒。",
         "警告：煞車中的儲存能量可能使皮帶移動30秒。")]


def test_markdown_and_a_saved_wiki_page(tmp_path):
    data = imported(tmp_path, forklift_md(tmp_path))
    scenes = by_caption(data)
    assert scenes["Step 2: Walk around"]["narration"] == ("Check the forks for cracks. Look at "
                                                          "the heel of each fork. Look at the "
                                                          "tips.")
    assert scenes["Step 2: Walk around"]["source"]["line"] == 13   # after the front matter
    assert "image" in scenes["Step 3: Walk around"]                  # ![The forks](forks.png)
    assert "Never lift more than 1,500 kg with this truck." in scenes
    assert scenes["Step 2: Test the controls"]["narration"] == \
        "Test the brakes. Expected: The truck stops within 2 m."
    # "4.1" numbers a section, not a step; a warning word on a line of its own labels the text
    # under it.
    assert scenes["Park"]["narration"] == "4.1 Park on level ground, forks lowered."
    assert scenes["CAUTION: The engine stays hot for 20 minutes."]["source"]["line"] == 36

    code, output = run("import", spill_html(tmp_path))
    assert code == 0 and "https://example.com/remote.png is on the web" in output
    page = yaml.safe_load((tmp_path / "spill.yaml").read_text(encoding="utf-8"))
    texts = " ".join(s["narration"] for s in page["scenes"])
    assert page["title"] == "Chemical spill response"
    assert "Home" not in texts and "last edited" not in texts          # nav and footer
    assert [s["caption"] for s in page["scenes"] if s.get("caption", "").startswith("Step")] == \
        ["Step 1: Respond", "Step 2: Respond", "Step 3: Respond"]
    assert any(s["narration"] == "Do not use water on acid spills." for s in page["scenes"])


def test_bad_documents_get_clear_errors_and_nothing_is_written(tmp_path):
    old = tmp_path / "sop.doc"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    code, output = run("import", old)
    assert code == 2 and "save it as .docx" in output and "Traceback" not in output
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"not a zip file")
    code, output = run("import", broken)
    assert code == 2 and "broken.docx: not a readable Word document" in output
    code, output = run("import", tmp_path / "missing.pdf")
    assert code == 2 and "missing.pdf: no such file" in output
    scan = tmp_path / "scan.pdf"
    Image.new("RGB", (200, 200), "white").save(scan)
    code, output = run("import", scan)
    assert code == 2 and "no text to read (a scan?)" in output
    document = lockout_docx(tmp_path)
    code, output = run("import", document, "--style", "corporate-blue")
    assert code == 2 and "--style corporate-blue: unknown style; available: clean-industrial" \
        in output
    code, output = run("import", document, "--llm", "http://127.0.0.1:9/v1")
    assert code == 2 and "--llm and --model go together" in output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".yaml", ".pictures")) == []
    assert run("import", document)[0] == 0
    code, output = run("import", document)
    assert code == 2 and "exists; choose another --out, or replace it with --force" in output
    assert run("import", document, "--force", "--out", tmp_path / "again.yaml")[0] == 0


def test_a_docx_becomes_a_video(tmp_path, tiny_profile, prefect_server):
    """The README's worked example: import, then build."""
    document = lockout_docx(tmp_path)
    assert run("import", document)[0] == 0
    script = tmp_path / "lockout.yaml"
    code, output = run("build", script, "--profile", tiny_profile, "--out", tmp_path / "out")
    assert code == 0, output
    folder = tmp_path / "out" / "lockout-tagout-for-conveyor-maintenance"
    streams = {s["codec_type"] for s in ffprobe(folder / "en" / "video.mp4")["streams"]}
    assert {"video", "audio"} <= streams
    cues = parse_srt((folder / "en" / "subtitles.srt").read_text(encoding="utf-8"))
    spoken = " ".join(" ".join(cue["lines"]) for cue in cues)
    assert "Lock the isolator with your own padlock LOTO-7." in spoken
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["script"]["imported"]["file"] == "lockout.docx"
    assert manifest["script"]["imported"]["rewrite"] is None


def test_llm_rewrite_is_held_until_approved(tmp_path, monkeypatch):
    document = lockout_docx(tmp_path)
    script = tmp_path / "lockout.yaml"
    with FakeLLM("rewrite") as llm:
        code, output = run("import", document, "--llm", llm.url, "--model", "llama3.1:8b",
                           env={"SOPREEL_LLM_API_KEY": "sk-test"})
        assert code == 0, output
    request = llm.requests[0]
    assert request["model"] == "llama3.1:8b" and request["stream"] is False
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert "Write the narration and the caption in English" in request["messages"][0]["content"]
    assert llm.headers[0]["Authorization"] == "Bearer sk-test"
    data = yaml.safe_load(script.read_text(encoding="utf-8"))
    assert data["imported"]["rewrite"]["status"] == "unreviewed"
    step = next(s for s in data["scenes"] if s["source"].get("paragraph") == 7)
    assert step["narration"] == "You must do this: Lock the isolator with your own padlock LOTO-7."
    assert step["source"]["text"] == "Lock the isolator with your own padlock LOTO-7."
    assert step["visual"] if "image" not in step else True

    code, output = run("validate", script)
    assert code == 2 and "the LLM rewrite of lockout.docx is not reviewed" in output
    assert "sopreel review lockout.yaml --approve --reviewer NAME" in output
    code, output = run("review", script)
    assert code == 0 and "LLM rewrite of lockout.docx (unreviewed)" in output
    code, output = run("review", script, "--approve")
    assert code == 2 and "reviewer's name" in output
    code, output = run("review", script, "--approve", "--reviewer", "Dana Park")
    assert code == 0, output
    approved = yaml.safe_load(script.read_text(encoding="utf-8"))["imported"]["rewrite"]
    assert approved["status"] == "reviewed" and approved["reviewer"] == "Dana Park"
    assert run("validate", script)[0] == 0


def test_a_rewrite_that_drops_a_number_cannot_be_approved(tmp_path):
    document = lockout_docx(tmp_path)
    script = tmp_path / "lockout.yaml"
    with FakeLLM("drop-numbers") as llm:
        code, output = run("import", document, "--llm", llm.url, "--model", "m")
    assert code == 0, output
    # Asked again with what it left out; it still drops it: the reviewer is told.
    assert "the rewrite leaves out 3, 480" in output
    assert any("left out 3, 480" in m["content"] for r in llm.requests for m in r["messages"])
    code, output = run("review", script, "--approve", "--reviewer", "Dana Park")
    assert code == 2 and "leaves out 3, 480" in output and "leaves out 10" in output
    text = script.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for scene in data["scenes"]:                 # the reviewer puts the numbers back
        scene["narration"] = f"{scene['narration']} {scene['source']['text']}"
    script.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")
    code, output = run("review", script, "--approve", "--reviewer", "Dana Park")
    assert code == 0, output

    with FakeLLM("fix-on-retry") as llm:   # a model that listens keeps the numbers
        code, output = run("import", document, "--llm", llm.url, "--model", "m", "--force")
    assert code == 0 and "leaves out" not in output


def test_llm_server_errors_timeouts_and_unusable_replies(tmp_path):
    document = lockout_docx(tmp_path)
    for mode, expected in [("404", "HTTP 404: The model `m` does not exist.; is 'm' a model"),
                           ("401", "HTTP 401: Incorrect API key provided.; set "
                                   "SOPREEL_LLM_API_KEY")]:
        with FakeLLM(mode) as llm:
            code, output = run("import", document, "--llm", llm.url, "--model", "m")
        assert code == 2 and expected in output, output
    with FakeLLM("slow", delay_s=3) as llm:
        code, output = run("import", document, "--llm", llm.url, "--model", "m",
                           "--llm-timeout", "1")
    assert code == 2 and "did not answer within 1 s" in output
    code, output = run("import", document, "--llm", "http://127.0.0.1:9/v1", "--model", "m")
    assert code == 2 and "nothing answers at http://127.0.0.1:9/v1/chat/completions" in output
    assert not (tmp_path / "lockout.yaml").exists() and not (tmp_path / "lockout.pictures").exists()

    with FakeLLM("flaky", failures=2) as llm:     # busy twice, then answers: retried; the
        server = llm.url.removesuffix("/v1")      # server's bare address means its /v1
        assert run("import", document, "--llm", server, "--model", "m")[0] == 0
    with FakeLLM("prose") as llm:      # chatter: taken as the narration, flagged, not approved
        code, output = run("import", document, "--llm", llm.url, "--model", "m", "--force")
    assert code == 0 and "answered without the NARRATION/CAPTION/VISUAL lines" in output
    code, output = run("review", tmp_path / "lockout.yaml", "--approve", "--reviewer", "D")
    assert code == 2 and "scene step-2-isolate-the-energy: leaves out 7" in output
    for mode in ("echo", "json"):      # its own text back, or JSON: read, facts kept
        with FakeLLM(mode) as llm:
            code, output = run("import", document, "--llm", llm.url, "--model", "m", "--force")
        assert code == 0 and "leaves out" not in output, output
        data = yaml.safe_load((tmp_path / "lockout.yaml").read_text(encoding="utf-8"))
        step = next(s for s in data["scenes"] if s["id"] == "step-2-isolate-the-energy")
        assert step["narration"].endswith("Lock the isolator with your own padlock LOTO-7.")


def test_long_steps_are_cut_and_too_many_scenes_refused(tmp_path):
    long_step = "1. Inspect the guards.\n" + "".join(
        f"   - Check guard number {n} on the north side for cracks, loose bolts and missing "
        "labels before you sign the sheet.\n" for n in range(1, 25))
    document = tmp_path / "guards.md"
    document.write_text(f"# Guards\n\n{long_step}", encoding="utf-8")
    data = imported(tmp_path, document)
    assert len(data["scenes"]) == 2 and all(len(s["narration"]) <= 2000 for s in data["scenes"])
    assert data["scenes"][1]["narration"].endswith("guard number 24 on the north side for "
                                                   "cracks, loose bolts and missing labels "
                                                   "before you sign the sheet.")
    many = tmp_path / "many.md"
    many.write_text("".join(f"{n}. Step number {n}.\n" for n in range(1, 202)), encoding="utf-8")
    code, output = run("import", many)
    assert code == 2 and "makes 201 scenes; a script holds at most 200" in output


def test_reply_parsing_numbers_and_language_detection():
    assert parse_reply('<think>x</think>```json\n{"narration": "Lock it."}\n```') == \
        {"narration": "Lock it."}
    assert parse_reply("**Narration:** Lock it.\nWith your padlock.\nCaption: Lock\n"
                       "VISUAL: a padlock") == {"narration": "Lock it. With your padlock.",
                                                "caption": "Lock", "visual": "a padlock"}
    assert parse_reply("Lock it.") == {"narration": "Lock it.", "plain": True}
    assert parse_reply("<think>only thinking</think>") is None
    assert numbers("Lift 1,500 kg within 2.5 m at 10:30, ขั้นตอน ๓") == \
        ["1500", "2.5", "10:30", "3"]
    assert clean("• Here\x92s the mis\ufb01t\u00ad \uf0b7list") == "Here’s the misfit list"
    assert detect_language("ปิดสวิตช์ตัดไฟหลัก")[0] == "th"
    assert detect_language("在主電源開關處關閉輸送帶。這適用於每一項維修")[0] == "zh-TW"
    assert detect_language("在主电源开关处关闭输送带。这适用于每一项维修")[0] == "zh-CN"
    assert detect_language("Tắt băng tải ở cầu dao chính. Gắn ổ khóa của bạn.")[0] == "vi"


@pytest.mark.usefixtures("prefect_server")
def test_import_in_the_prefect_ui_waits_for_the_reviewer(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from flows.importing import import_sop

    document = lockout_docx(tmp_path)
    result: dict = {}
    with FakeLLM("rewrite") as llm:
        worker = threading.Thread(target=lambda: result.update(import_sop(
            str(document), llm_url=llm.url, llm_model="m", poll_interval_s=1)))
        worker.start()
        with get_client(sync_client=True) as client:
            paused = None
            for _ in range(240):
                paused = next((r for r in client.read_flow_runs()
                               if r.state and r.state.is_paused()), None)
                if paused:
                    break
                time.sleep(0.5)
            assert paused is not None, "the import never paused for its reviewer"
            artifacts = client.read_artifacts()
            assert any(a.key == "imported-script" and "Step 2: Isolate the energy" in
                       (a.data or "") for a in artifacts)
            data = yaml.safe_load((tmp_path / "lockout.yaml").read_text(encoding="utf-8"))
            answer = {"title": data["title"], "reviewer": "Dana Park", "approve": True,
                      "accept_deviations": False}
            for index, scene in enumerate(data["scenes"]):
                answer[f"narration_{index}"] = scene["narration"]
                answer[f"caption_{index}"] = scene.get("caption") or ""
                if "visual" in scene:
                    answer[f"visual_{index}"] = scene["visual"]
            answer["narration_0"] = ("Read this first. It is for all maintenance on line 3. "
                                     "The conveyor runs at 480 V.")
            resume_flow_run(paused.id, run_input=answer)
        worker.join(timeout=120)
    assert result["status"] == "reviewed" and result["reviewer"] == "Dana Park"
    final = yaml.safe_load((tmp_path / "lockout.yaml").read_text(encoding="utf-8"))
    assert final["scenes"][0]["narration"] == answer["narration_0"]
    assert run("validate", tmp_path / "lockout.yaml")[0] == 0
