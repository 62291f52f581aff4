"""`sopreel package`: SCORM 1.2, SCORM 2004, xAPI and HTML zips of a build, checked as an LMS
would: the manifest against the SCORM schemas, the package played in headless Chromium inside
a page hosting a real SCORM runtime (scorm-again), and xAPI statements at a loopback LRS."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from lxml import etree

from flows.cli import main
from stages.package import verify_package
from tests.conftest import TINY_PROFILE, ZH_TW, base_script, build, write_script
from tests.lms import SCORM_AGAIN, FakeLms

SCHEMAS = Path(__file__).parent / "schemas"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QUIZ = {"pass_mark": 80, "questions": [
    {"id": "first", "question": "What do you do first?",
     "choices": ["Start the conveyor", "Switch it off at the main disconnect"], "answer": 2},
    {"id": "lock", "question": "Which of these belong on the disconnect? Choose all.",
     "choices": ["Your own padlock", "Your danger tag", "A colleague's lock"],
     "answer": [1, 2]}]}
ZH_TW_WITH_QUIZ = {**ZH_TW, "quiz": {"first": {"question": "第一步要做什麼？",
                                                "choices": ["啟動輸送帶", "在主電源開關處關閉它"]}}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("package")
    script = write_script(folder, base_script(languages=["en", "zh-TW"],
                                              translations={"zh-TW": ZH_TW_WITH_QUIZ},
                                              quiz=QUIZ))
    profile = folder / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    build(script, folder / "out", profile)
    return {"script": script, "out": folder / "out", "folder": folder}


def make_package(built: dict, kind: str, *args: str) -> Path:
    out = built["folder"] / f"{kind}{'-'.join(args).replace('/', '_')}.zip"
    result = CliRunner().invoke(main, ["package", str(built["script"]), "--format", kind,
                                       "--outputs", str(built["out"]), "--out", str(out),
                                       *args])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("kind", ["scorm12", "scorm2004"])
def test_scorm_manifest_is_valid_and_lists_every_file(built, kind):
    package = make_package(built, kind)
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        manifest = etree.fromstring(archive.read("imsmanifest.xml"))
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / kind / "sopreel-all.xsd"),
                                         etree.XMLParser(no_network=True)))
    assert schema.validate(manifest), schema.error_log
    listed = {node.get("href") for node in manifest.iter() if node.tag.endswith("}file")}
    assert listed == names - {"imsmanifest.xml"}
    assert {"index.html", "player.js", "player.css", "media/en.mp4", "media/zh-TW.mp4",
            "media/en.vtt", "media/zh-TW.vtt"} <= names
    page = zipfile.ZipFile(package).read("index.html").decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "nothing from a CDN"
    if kind == "scorm12":
        assert manifest.find(".//{*}masteryscore").text == "80"
    else:
        assert manifest.find(".//{*}minNormalizedMeasure").text == "0.80"
        assert manifest.find(".//{*}completionThreshold").get("minProgressMeasure") == "0.95"


@pytest.mark.usefixtures("prefect_server")
def test_a_file_missing_from_the_zip_is_found(built, tmp_path):
    package = make_package(built, "scorm12")
    assert verify_package(package) == []
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            if item.filename != "media/zh-TW.vtt":
                target.writestr(item, source.read(item.filename))
    problems = verify_package(broken)
    assert problems and all("media/zh-TW.vtt" in p for p in problems)


@pytest.mark.usefixtures("prefect_server")
def test_clear_errors_before_a_build_and_for_a_language_not_built(built, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["package", str(built["script"]), "--format", "html",
                                  "--outputs", str(tmp_path / "nothing")])
    assert result.exit_code != 0 and "Build it first: sopreel build" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["package", str(built["script"]), "--format", "html",
                                  "--outputs", str(built["out"]), "--lang", "th"])
    assert result.exit_code != 0 and "th not built" in result.output
    bad = dict(QUIZ, questions=[dict(QUIZ["questions"][0], answer=3)])
    path = write_script(tmp_path, base_script(quiz=bad))
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code != 0
    assert re.search(r"script\.yaml:\d+: quiz\.questions\[0\]\.answer: choice 3 does not exist",
                     result.output), result.output


# ---- In the browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or not SCORM_AGAIN.is_dir():
        pytest.fail("The package tests need Chromium and scorm-again: run `make test` (it "
                    "installs both) or `make browser`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--autoplay-policy=no-user-gesture-required"])
        yield launched
        launched.close()


@pytest.fixture
def lms(tmp_path):
    server = FakeLms(tmp_path / "lms")
    (tmp_path / "lms").mkdir(exist_ok=True)
    yield server
    server.close()


def course(page, url: str):
    """The package's frame inside the LMS page, once its player has started."""
    page.goto(url)
    frame = page.wait_for_selector("#course").content_frame()
    frame.wait_for_function("window.sopreel && document.getElementById('video').duration > 0")
    return frame


def watch_to_the_end(frame, rate: float = 4.0) -> None:
    frame.evaluate(f"""() => {{ const v = document.getElementById('video');
        v.muted = true; v.playbackRate = {rate}; return v.play(); }}""")
    frame.wait_for_function("document.getElementById('video').ended", timeout=60_000)


def answer(frame, choices: dict[str, list[int]]) -> None:
    for question, numbers in choices.items():
        for box in frame.query_selector_all(f"input[name='{question}']"):
            box.set_checked(int(box.get_attribute("value")) in numbers)
    frame.click("#quiz-submit")


RIGHT = {"first": [2], "lock": [1, 2]}
REGISTRATION = "6f8c9d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f"
HALF_RIGHT = {"first": [2], "lock": [1]}


@pytest.mark.usefixtures("prefect_server")
def test_scorm12_completion_then_quiz_failed_and_passed(built, browser, lms):
    lms.add(make_package(built, "scorm12"), "course")
    page = browser.new_page()
    frame = course(page, lms.host_url("course", "scorm12"))
    assert "made with AI" in frame.inner_text("#notice"), "the AI notice shown in words"
    assert frame.is_hidden("#quiz"), "the quiz waits for the video"
    assert lms.recorded.latest("cmi.core.lesson_status") in (None, "incomplete")
    watch_to_the_end(frame)
    assert lms.recorded.latest("cmi.core.lesson_status") == "completed"
    answer(frame, HALF_RIGHT)
    assert lms.recorded.latest("cmi.core.lesson_status") == "failed"
    assert lms.recorded.latest("cmi.core.score.raw") == "50"
    answer(frame, RIGHT)
    assert lms.recorded.latest("cmi.core.lesson_status") == "passed"
    assert lms.recorded.latest("cmi.core.score.raw") == "100"
    frame.evaluate("window.sopreel.finish()")
    assert lms.recorded.latest("cmi.core.session_time").count(":") == 2
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_an_lms_that_launches_in_a_pop_up_is_found(built, browser, lms):
    lms.add(make_package(built, "scorm12"), "popup")
    page = browser.new_page()
    page.goto(lms.host_url("popup", "scorm12", framed=False))
    assert page.evaluate("window.API.isInitialized()") is False
    with page.expect_popup() as opened:
        page.evaluate("window.open('/popup/index.html', 'course')")
    course = opened.value
    course.wait_for_function("window.sopreel && document.getElementById('video').duration > 0")
    assert course.evaluate("window.sopreel.connected") is True
    assert page.evaluate("window.API.isInitialized()") is True, "the pop-up found the LMS"
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_scorm2004_completion_progress_and_scaled_score(built, browser, lms):
    lms.add(make_package(built, "scorm2004"), "course")
    page = browser.new_page()
    frame = course(page, lms.host_url("course", "scorm2004"))
    watch_to_the_end(frame)
    assert lms.recorded.latest("cmi.completion_status") == "completed"
    assert float(lms.recorded.latest("cmi.progress_measure")) >= 0.95, "the share watched"
    answer(frame, HALF_RIGHT)
    assert lms.recorded.latest("cmi.success_status") == "failed"
    assert float(lms.recorded.latest("cmi.score.scaled")) == 0.5
    answer(frame, RIGHT)
    assert lms.recorded.latest("cmi.success_status") == "passed"
    assert float(lms.recorded.latest("cmi.score.scaled")) == 1.0
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_skipping_ahead_is_not_watching_and_can_be_refused(built, browser, lms):
    lms.add(make_package(built, "scorm12"), "free")
    lms.add(make_package(built, "scorm12", "--require-full-watch"), "strict")
    page = browser.new_page()
    frame = course(page, lms.host_url("free", "scorm12"))
    frame.evaluate("""() => { const v = document.getElementById('video');
        v.currentTime = v.duration * 0.8; }""")
    watch_to_the_end(frame)
    watched = frame.evaluate("window.sopreel.fraction()")
    assert 0.1 < watched < 0.3, "only the last fifth was watched"
    assert lms.recorded.latest("cmi.core.lesson_status") == "incomplete"
    frame = course(page, lms.host_url("strict", "scorm12"))
    frame.evaluate("""() => { const v = document.getElementById('video');
        v.currentTime = v.duration * 0.8; }""")
    frame.wait_for_function("!document.getElementById('video').seeking")
    assert frame.evaluate("document.getElementById('video').currentTime") < 0.5
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_the_language_picker_switches_video_subtitles_and_quiz(built, browser, lms):
    lms.add(make_package(built, "html"), "plain")
    page = browser.new_page()
    page.goto(f"{lms.base}/plain/index.html")
    page.wait_for_function("document.getElementById('video').duration > 0")
    assert page.evaluate("[...document.querySelectorAll('#language option')].map(o => o.value)"
                         ) == ["en", "zh-TW"]
    page.select_option("#language", "zh-TW")
    page.wait_for_function("""document.getElementById('video').currentSrc.endsWith('zh-TW.mp4')
        && document.getElementById('video').readyState > 0""")
    modes = page.evaluate("""Object.fromEntries([...document.getElementById('video')
        .textTracks].map(t => [t.language, t.mode]))""")
    assert modes == {"en": "disabled", "zh-TW": "hidden"}, "burned in: not drawn twice"
    page.wait_for_function("""[...document.getElementById('video').textTracks]
        .find(t => t.language === 'zh-TW').cues?.length > 0""")   # the WebVTT track loaded
    assert "人工智慧" in page.inner_text("#notice")
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; "
                  "v.playbackRate = 4; return v.play(); }")
    page.wait_for_selector("#quiz:not([hidden])", timeout=60_000)
    assert "第一步要做什麼？" in page.inner_text("#quiz-form")
    # A long video's slice (here 1/200 of it) is watched over many short steps of playback:
    # they add up, and half of it counts.
    steps = page.evaluate("""() => { const s = window.sopreel, slice = s.state.watched.length;
        const length = document.getElementById('video').duration / slice;
        s.state.watched.fill(false); s.state.covered.fill(0);
        const seen = [];
        for (let k = 0; k < 10; k++) { s.mark(k * length / 10, (k + 1) * length / 10);
                                        seen.push(s.state.watched[0]); }
        return seen; }""")
    assert steps == [False] * 4 + [True] * 6
    assert "Which of these belong" in page.inner_text("#quiz-form"), "untranslated: English"
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_xapi_statements_reach_the_lrs(built, browser, lms):
    package = make_package(built, "xapi", "--lrs", "http://127.0.0.1:9/not-used")
    with zipfile.ZipFile(package) as archive:
        assert b"urn:sopreel:test-sop" in archive.read("tincan.xml")
    lms.add(package, "tincan")
    actor = {"objectType": "Agent", "name": "Anna Chen", "mbox": "mailto:anna@example.com"}
    from urllib.parse import urlencode

    query = urlencode({"endpoint": f"{lms.base}/lrs/", "auth": "Basic dGVzdDp0ZXN0",
                       "actor": json.dumps(actor), "registration": REGISTRATION})
    page = browser.new_page()
    page.goto(f"{lms.base}/tincan/index.html?{query}")
    page.wait_for_function("document.getElementById('video').duration > 0")
    page.evaluate("() => { const v = document.getElementById('video'); v.muted = true; "
                  "v.playbackRate = 4; return v.play(); }")
    page.wait_for_selector("#quiz:not([hidden])", timeout=60_000)
    answer(page, RIGHT)
    for _ in range(50):
        if len(lms.recorded.statements) >= 3:
            break
        page.wait_for_timeout(100)
    verbs = [s["verb"]["id"].rsplit("/", 1)[1] for s in lms.recorded.statements]
    assert verbs == ["experienced", "completed", "passed"]
    passed = lms.recorded.statements[-1]
    assert passed["actor"] == actor and passed["object"]["id"] == "urn:sopreel:test-sop"
    assert passed["result"]["score"]["scaled"] == 1.0 and passed["result"]["success"] is True
    assert passed["context"]["registration"] == REGISTRATION
    headers = lms.recorded.headers[-1]
    assert headers["X-Experience-API-Version"] == "1.0.3"
    assert headers["Authorization"] == "Basic dGVzdDp0ZXN0"
    page.close()


@pytest.mark.usefixtures("prefect_server")
def test_the_prefect_flow_packages_a_build(built, tmp_path):
    from flows.packaging import package_video

    result = package_video(script=str(built["script"]), format="scorm2004",
                           outputs=str(built["out"]), out=str(tmp_path / "lms.zip"),
                           languages=["zh-TW"], require_full_watch=True)
    assert result["package"] == str(tmp_path / "lms.zip") and result["languages"] == ["zh-TW"]
    assert verify_package(tmp_path / "lms.zip") == []
    page = zipfile.ZipFile(tmp_path / "lms.zip").read("index.html").decode()
    assert '"requireFullWatch": true' in page and "media/en.mp4" not in page
