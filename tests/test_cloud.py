"""The hosted backends (`elevenlabs`, `openai`, `runway`, `openai-video`) against local fakes
of each API (tests/fake_services.py): what is sent, what a build makes of the answers, what it
costs, and what happens when a service refuses, rate-limits, is slow, or the build is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, enrol_anna, ffprobe, parse_srt, write_script
from fake_services import KEYS, POLICY_WORD, FakeServices, png

from flows.cli import main
from stages.animate import BACKENDS as ANIMATORS
from stages.animate import ClipRequest
from stages.cloud import ServiceClient, ServiceError, ServiceUnavailable
from stages.errors import ConsentError
from stages.narrate import BACKENDS as NARRATORS
from stages.narrate import NarrationRequest

ENV = {"ELEVENLABS_API_KEY": KEYS["elevenlabs"], "OPENAI_API_KEY": KEYS["openai"],
       "RUNWAYML_API_SECRET": KEYS["runway"]}


@pytest.fixture
def fake(tmp_path):
    services = FakeServices(tmp_path, polls_to_finish=2)
    yield services
    services.close()


@pytest.fixture
def keys(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def cloud_profile(folder: Path, fake: FakeServices, name: str = "cloud.yaml",
                  **changes: Any) -> Path:
    profile = {**TINY_PROFILE,
               "images": {"backend": "openai", "url": f"{fake.url}/v1", "quality": "low",
                          "width": 480, "height": 272},
               "animate": {"backend": "runway", "url": fake.url, "seconds": 5, "poll_s": 0.05},
               "narrate": {"backend": "elevenlabs", "url": fake.url,
                           "speaker": "stock-voice-1"}}
    for stage, options in changes.items():
        profile[stage] = options if options is None or "backend" in options \
            else {**profile[stage], **options}
    path = folder / name
    path.write_text(yaml.safe_dump({k: v for k, v in profile.items() if v is not None}),
                    encoding="utf-8")
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def every_output(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


def test_a_build_with_hosted_services_costs_what_it_said_and_leaks_no_key(
        fake, keys, tmp_path, monkeypatch, prefect_server):
    """OpenAI stills (its key from a Prefect Secret block), ElevenLabs narration, Runway
    clips: the video, its subtitles on the service's timing, the estimate before any request,
    the cost and usage recorded, nothing paid twice on a rebuild, and no key anywhere."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    Secret(value=KEYS["openai"]).save("sopreel-test-openai", overwrite=True)
    monkeypatch.delenv("OPENAI_API_KEY")
    profile = cloud_profile(tmp_path, fake, images={"key_secret": "sopreel-test-openai"})
    script = write_script(tmp_path, base_script(music=None))
    out = tmp_path / "out"

    first = run("build", script, "--profile", profile, "--out", out)
    assert first.exit_code == 0, first.output
    assert "Estimated cost at hosted services" in first.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    video = out / "test-sop" / "en" / "video.mp4"
    kinds = [s["codec_type"] for s in ffprobe(video)["streams"]]
    assert kinds.count("video") == 1 and kinds.count("audio") == 1

    # What was sent: the documented fields, the stills at the nearest size OpenAI makes.
    images = [r for r in fake.requests if r["path"] == "/v1/images/generations"]
    assert [r["body"]["size"] for r in images] == ["1536x1024", "1536x1024"]
    assert {r["body"]["model"] for r in images} == {"gpt-image-1"}
    speech = [r for r in fake.requests if r["path"].startswith("/v1/text-to-speech/")]
    assert {r["path"] for r in speech} == {"/v1/text-to-speech/stock-voice-1/with-timestamps"}
    said = [r["body"]["text"] for r in speech]
    assert "Fit your own padlock." in said and "Keep the key with you." in said
    second_sentence = next(r for r in speech if r["body"]["text"] == "Keep the key with you.")
    assert second_sentence["body"]["previous_text"] == "Fit your own padlock."
    tasks = [r for r in fake.requests if r["path"] == "/v1/image_to_video"]
    assert {(t["body"]["model"], t["body"]["ratio"], t["body"]["duration"]) for t in tasks} == \
        {("gen4_turbo", "1280:720", 5)}
    downloads = [r for r in fake.requests if r["path"].startswith("/files/")]
    assert downloads and not any("Authorization" in r["headers"] for r in downloads)

    # Each sentence's span is the service's timing of its first to last character (50 ms a
    # character in the fake, 30 ms kept either side), and the subtitles follow the spans.
    narration = manifest["scenes"][1]["assets"][2]
    spans = {s["text"]: s["end"] - s["start"] for s in narration["info"]["sentences"]}
    assert spans == {"Fit your own padlock.": pytest.approx(21 * 0.05 + 0.06, abs=0.003),
                     "Keep the key with you.": pytest.approx(22 * 0.05 + 0.06, abs=0.003)}
    cues = parse_srt((out / "test-sop" / "en" / "subtitles.srt").read_text(encoding="utf-8"))
    assert [" ".join(c["lines"]) for c in cues][1:] == list(spans)

    # Money: estimated before, spent after, the API's own usage beside it.
    cost = manifest["cost"]
    assert set(cost["estimate"]["services"]) == {"elevenlabs", "openai-images", "runway"}
    assert cost["estimate"]["prices_as_of"] == "2026-12-02"
    spent = cost["spent"]["services"]
    assert spent["openai-images"] == {"usd": 0.032, "quantity": 2, "unit": "image", "new": 2}
    characters = sum(len(text) for text in said)
    assert spent["elevenlabs"]["quantity"] == characters
    assert spent["elevenlabs"]["usd"] == pytest.approx(characters * 0.10 / 1000)
    assert cost["spent"]["usage"]["elevenlabs"]["character_cost"] == characters
    assert cost["spent"]["usage"]["openai-images"]["output_tokens"] == 2 * 4160
    assert spent["runway"]["quantity"] == 5 * len(tasks)
    assert cost["spent"]["total_usd"] <= cost["estimate"]["total_usd"]   # errs high
    # Terms as licences, and what made each asset.
    licences = {lic["license"]: lic["commercial"] for lic in manifest["licenses"]}
    assert licences == {"OpenAI Services Agreement (output owned by the customer)": True,
                        "Runway Terms of Use (paid plan)": True,
                        "ElevenLabs Terms of Service (paid plan)": True}
    iptc = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert {a["digital_source_type"] for s in manifest["scenes"] for a in s["assets"]} == {iptc}

    # A rebuild sends nothing and costs nothing.
    sent = len(fake.requests)
    again = run("build", script, "--profile", profile, "--out", out)
    assert again.exit_code == 0, again.output
    assert len(fake.requests) == sent
    assert "$0.00" in again.output and "already made" in again.output
    rebuilt = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    assert rebuilt["cost"]["spent"]["total_usd"] == 0
    assert rebuilt["cost"]["estimate"]["total_usd"] == 0

    # No key in any file written, any message shown, any artifact or run log.
    written = every_output(out)
    with get_client(sync_client=True) as client:
        published = json.dumps([a.data for a in client.read_artifacts()], default=str)
        logged = " ".join(log.message for log in client.read_logs())
    assert "Hosted services" in published
    for key in KEYS.values():
        assert key.encode() not in written
        assert key not in first.output + again.output
        assert key not in published and key not in logged


def test_the_estimate_refuses_a_build_past_its_limit_before_any_request(fake, keys,
                                                                       tmp_path):
    script = write_script(tmp_path, base_script(music=None))
    profile = cloud_profile(tmp_path, fake)
    out = tmp_path / "out"
    checked = run("validate", script, "--profile", profile)
    assert checked.exit_code == 0, checked.output
    assert "Estimated cost at hosted services" in checked.output
    assert "openai-images: $0.03 (2 images, 2 new)" in checked.output

    refused = run("build", script, "--profile", profile, "--out", out, "--max-cost", "0.05")
    assert refused.exit_code == 2
    assert "more than --max-cost ($0.05). Nothing was sent." in refused.output
    assert "runway:" in refused.output
    budget = tmp_path / "budget.yaml"
    budget.write_text(profile.read_text(encoding="utf-8") + "budget: 0.10\n", encoding="utf-8")
    over = run("build", script, "--profile", budget, "--out", out)
    assert over.exit_code == 2 and "more than the budget in budget.yaml ($0.10)" in over.output
    assert fake.requests == [] and not (out / "test-sop").exists()


def test_keys_and_prices_are_checked_when_the_profile_is_read(fake, tmp_path, monkeypatch):
    script = write_script(tmp_path, base_script(music=None))
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    missing = run("validate", script, "--profile", cloud_profile(tmp_path, fake))
    assert missing.exit_code == 2
    assert "cloud.yaml" in missing.output and "ELEVENLABS_API_KEY" in missing.output
    assert "RUNWAYML_API_SECRET" in missing.output
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    unpriced = run("validate", script, "--profile", cloud_profile(
        tmp_path, fake, images={"model": "gpt-image-9"}))
    assert unpriced.exit_code == 2
    assert "No price for openai-images model 'gpt-image-9'" in unpriced.output
    assert "prices.yaml" in unpriced.output


def test_the_cloud_profile_prices_a_template_before_anything_is_sent(keys, tmp_path):
    """The shipped profile, as the README shows it: the estimate per service, Thai and
    Vietnamese routed to the ElevenLabs model that speaks them, and the budget held to."""
    checked = run("validate", "templates/scripts/ppe-check.yaml", "--profile", "cloud")
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    assert lines[0].startswith("Estimated cost at hosted services (prices of 2026-12-02")
    assert [line.split(":")[0].strip() for line in lines[1:4]] == \
        ["elevenlabs", "openai-images", "runway"]
    assert "(6 images, 6 new)" in lines[2]   # one still per scene, none made yet
    over = run("build", "templates/scripts/ppe-check.yaml", "--profile", "cloud",
               "--max-cost", "0.50", "--out", tmp_path / "out")
    assert over.exit_code == 2 and "more than --max-cost ($0.50). Nothing was sent." in over.output
    assert not (tmp_path / "out").exists()


def test_rate_limits_and_server_errors_are_retried_as_the_service_asks(fake):
    waits: list[float] = []
    client = ServiceClient("OpenAI", f"{fake.url}/v1", {"Authorization": "Bearer "
                           + KEYS["openai"]}, KEYS["openai"], 10, 3, 0.5, sleep=waits.append)
    fake.fail_next = [(429, {"Retry-After": "7"}, {"error": {"message": "Rate limit reached",
                                                             "code": "rate_limit_exceeded"}}),
                      (503, {}, {"error": {"message": "overloaded"}}),
                      (429, {"retry-after-ms": "1500"}, {"error": {"message": "slow down"}})]
    body = {"model": "gpt-image-1", "prompt": "a forklift", "size": "1024x1024"}
    answer = client.send("POST", "/images/generations", json=body, creates=True,
                         idempotency_key="k1")
    assert answer.status_code == 200 and waits == [7.0, 0.5 * 2, 1.5]
    posts = [r for r in fake.requests if r["path"] == "/v1/images/generations"]
    assert len(posts) == 4 and {r["headers"]["Idempotency-Key"] for r in posts} == {"k1"}

    fake.fail_next = [(500, {}, {"error": {"message": "boom"}})] * 4
    with pytest.raises(ServiceUnavailable, match=r"HTTP 500 \(boom\) \(4 tries\)"):
        client.send("POST", "/images/generations", json=body)
    waits.clear()
    fake.fail_next = [(429, {}, {"error": {"message": "You exceeded your current quota",
                                           "code": "insufficient_quota"}})]
    empty = client.send("POST", "/images/generations", json=body)
    assert empty.status_code == 429 and waits == []   # no credit: waiting will not help
    assert "no credit left" in str(client.refused(empty, "the image"))
    unreachable = ServiceClient("Runway", "http://127.0.0.1:9", {}, "k", 5, 1, 0,
                                sleep=waits.append)
    with pytest.raises(ServiceUnavailable, match="Cannot reach Runway"):
        unreachable.send("GET", "/v1/tasks/x")


def test_a_content_policy_refusal_names_the_scene_and_the_reason(fake, keys, tmp_path):
    scenes = base_script()["scenes"]
    scenes[1]["visual"] = f"a {POLICY_WORD} scene"
    script = write_script(tmp_path, base_script(music=None, scenes=scenes))
    result = run("build", script, "--profile", cloud_profile(tmp_path, fake),
                 "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert "scene 'lock'" in result.output and "backend openai" in result.output
    assert "rejected by the safety system. (moderation_blocked)" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "test-sop" / "en" / "video.mp4").exists()

    fake.requests.clear()
    scenes[1]["visual"], scenes[1]["motion"] = "a padlock", f"{POLICY_WORD} pan"
    script = write_script(tmp_path, base_script(music=None, scenes=scenes))
    result = run("build", script, "--profile", cloud_profile(tmp_path, fake),
                 "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert "animate (scene 'lock', backend runway)" in result.output
    assert "SAFETY.INPUT.TEXT" in result.output


def backend(name: str, fake: FakeServices, **options: Any) -> Any:
    registry = ANIMATORS if name in ("runway", "openai-video") else NARRATORS
    url = f"{fake.url}/v1" if name == "openai-video" else fake.url
    chosen = registry.get(name)
    return chosen(chosen.Options(url=url, poll_s=0.05, **options)) \
        if registry is ANIMATORS else chosen(chosen.Options(url=url, **options))


def still(tmp_path: Path, size: tuple[int, int] = (480, 270)) -> Path:
    path = tmp_path / "still.png"
    path.write_bytes(png(size))
    return path


def test_sora_gets_the_still_at_its_size_and_its_sound_is_left_out(fake, keys, tmp_path):
    videos = backend("openai-video", fake, seconds=4)
    out = tmp_path / "assets" / "clip.mp4"
    out.parent.mkdir()
    progress: list[float] = []
    info = videos.animate(ClipRequest(image=still(tmp_path), prompt="slow push-in", seed=3),
                          out, progress.append)
    created = next(r for r in fake.requests if r["path"] == "/v1/videos")
    assert created["body"] == {"model": "sora-2", "prompt": "slow push-in", "seconds": "4",
                               "size": "1280x720"}
    streams = ffprobe(out)["streams"]
    assert [s["codec_type"] for s in streams] == ["video"] and streams[0]["codec_name"] == "h264"
    assert (info["fps"], info["frames"], info["width"], info["height"]) == (30, 120, 1280, 720)
    assert info["cost"] == {"service": "openai-video", "usd": 0.4, "quantity": 4,
                            "unit": "second"}
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert fake.count("GET", "/v1/videos/") >= 3   # polled, then downloaded
    assert not list((out.parent / "jobs").glob("*.json"))   # done: nothing left to resume

    portrait = backend("openai-video", fake, seconds=4)
    assert portrait.shape_for(still(tmp_path, (270, 480))) == "720x1280"


def test_a_slow_job_is_polled_until_its_limit_then_resumed_not_paid_twice(fake, keys,
                                                                         tmp_path):
    fake.hold = True
    runway = backend("runway", fake, seconds=5, max_wait_s=0.3)
    out = tmp_path / "assets" / "clip.mp4"
    out.parent.mkdir()
    request = ClipRequest(image=still(tmp_path), prompt="pan left", seed=7)
    with pytest.raises(ServiceError, match=r"was not done within 0\.3 s; build again"):
        runway.animate(request, out)
    fake.hold = False
    info = runway.animate(request, out)
    assert info["resumed"] is True and fake.count("POST", "/v1/image_to_video") == 1


KILLED = """
import sys
sys.path[:0] = [{root!r}]
from pathlib import Path
from stages.animate import BACKENDS, ClipRequest
chosen = BACKENDS.get({name!r})
backend = chosen(chosen.Options(url={url!r}, poll_s=0.05, seconds={seconds}))
backend.animate(ClipRequest(image=Path({image!r}), prompt="pan left", seed=7), Path({out!r}))
"""


@pytest.mark.parametrize("name", ["runway", "openai-video"])
def test_a_build_killed_while_polling_polls_the_same_job_again(fake, keys, tmp_path, name):
    fake.hold = True
    url = f"{fake.url}/v1" if name == "openai-video" else fake.url
    seconds = 4 if name == "openai-video" else 5
    image, out = still(tmp_path), tmp_path / "assets" / "clip.mp4"
    out.parent.mkdir()
    code = KILLED.format(root=str(Path(__file__).parents[1]), name=name, url=url,
                         seconds=seconds, image=str(image), out=str(out))
    worker = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **ENV})
    polls = "/v1/videos/" if name == "openai-video" else "/v1/tasks/"
    deadline = time.monotonic() + 60
    while fake.count("GET", polls) < 3 and worker.poll() is None:
        assert time.monotonic() < deadline, "the job was never polled"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    assert len(list((out.parent / "jobs").glob("*.json"))) == 1   # its id, kept

    fake.hold = False
    chosen = ANIMATORS.get(name)
    again = chosen(chosen.Options(url=url, poll_s=0.05, seconds=seconds))
    info = again.animate(ClipRequest(image=image, prompt="pan left", seed=7), out)
    created = "/v1/videos" if name == "openai-video" else "/v1/image_to_video"
    assert sum(r["method"] == "POST" and r["path"] == created for r in fake.requests) == 1
    assert info["resumed"] is True and ffprobe(out)["streams"][0]["codec_name"] == "h264"


def test_elevenlabs_asks_consent_before_every_request(fake, keys, tmp_path):
    narrator = backend("elevenlabs", fake, speaker="stock-voice-1")
    request = NarrationRequest(sentences=("Stop the line.", "Lock it.", "Test it."),
                               language="en", voice="anna", service_voice="clone-of-anna")
    asked: list[int] = []

    def gate() -> None:
        asked.append(len(fake.requests))
        if len(asked) == 3:
            raise ConsentError("Voice 'anna' may not speak en for training: revoked.")

    with pytest.raises(ConsentError, match="revoked"):
        narrator.narrate(request, tmp_path / "n.wav", gate)
    assert asked == [0, 1, 2] and len(fake.requests) == 2   # the third was never sent
    assert {r["path"] for r in fake.requests} == {
        "/v1/text-to-speech/clone-of-anna/with-timestamps"}


def test_a_cloned_voice_at_elevenlabs_needs_its_link_and_its_consent(
        fake, keys, tmp_path, recordings, monkeypatch):
    voices = tmp_path / "voices"
    enrol_anna(voices, recordings)
    script = write_script(tmp_path, base_script(music=None, voice="anna"))
    profile = cloud_profile(tmp_path, fake)
    out = tmp_path / "out"
    unlinked = run("build", script, "--profile", profile, "--out", out, "--voices-dir", voices)
    assert unlinked.exit_code == 2
    assert "sopreel voices link anna --service elevenlabs --voice-id" in unlinked.output

    linked = run("voices", "link", "anna", "--voice-id", "clone-of-anna",
                 "--voices-dir", voices)
    assert linked.exit_code == 0, linked.output
    shown = run("voices", "show", "anna", "--voices-dir", voices)
    assert "elevenlabs voice clone-of-anna" in shown.output
    built = run("build", script, "--profile", profile, "--out", out, "--voices-dir", voices)
    assert built.exit_code == 0, built.output
    speech = {r["path"] for r in fake.requests if r["path"].startswith("/v1/text-to-speech")}
    assert speech == {"/v1/text-to-speech/clone-of-anna/with-timestamps"}
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["voice"]["spoken"]["en"]["cloned"] is True
    audit = json.loads(run("voices", "audit", "anna", "--json", "--voices-dir", voices).output)
    assert any(e["event"] == "service" for e in audit["voices"]["anna"]["history"])
    assert len(audit["voices"]["anna"]["syntheses"]) == 3

    assert run("voices", "revoke", "anna", "--voices-dir", voices).exit_code == 0
    sent = len(fake.requests)
    scenes = base_script()["scenes"]
    scenes[0]["narration"] = "Switch the conveyor off now."   # new narration to make
    edited = write_script(tmp_path, base_script(music=None, voice="anna", scenes=scenes))
    refused = run("build", edited, "--profile", profile, "--out", out, "--voices-dir", voices)
    assert refused.exit_code == 2 and "revoked" in refused.output
    assert len(fake.requests) == sent
