"""Shared test fixtures: one Prefect test server per session, tiny profiles, script writers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

# On pytest-xdist workers (make test runs two on two cores) every math library gets one
# thread: by default each process starts a spinning thread per core, and two workers' threads
# then fight for the cores (bench/gpu.py --quick: 73 s alone, 283 s beside a second copy, 75 s
# beside it with one thread each). Set before any test imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")

# Prefect's home (its SQLite database) lives in a temporary folder, never in the user's.
_PREFECT_HOME = tempfile.mkdtemp(prefix="sopreel-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
# The organisation's consent key and this machine's ledger witness, never the user's own.
_CONSENT_HOME = tempfile.mkdtemp(prefix="sopreel-test-consent-")
os.environ["SOPREEL_CONSENT_KEY"] = os.path.join(_CONSENT_HOME, "key", "consent-key.pem")
os.environ["XDG_STATE_HOME"] = os.path.join(_CONSENT_HOME, "state")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

TINY_PROFILE = {
    "images": {"backend": "storyboard", "width": 480, "height": 272},
    "animate": {"backend": "kenburns", "frames": 24, "fps": 12, "width": 320, "height": 180},
    "narrate": {"backend": "espeak", "rate": 220},
    "music": {"backend": "synth", "bars": 4},
    "compose": {"width": 320, "height": 180, "fps": 12, "preset": "ultrafast"},
}


# Marks every process this session starts, so another session's servers are never touched.
os.environ["SOPREEL_TEST_SESSION"] = _SESSION = os.path.basename(_PREFECT_HOME)


def _prefect_servers() -> set[int]:
    """Process ids of every `prefect server start` this test session started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
            ours = f"SOPREEL_TEST_SESSION={_SESSION}".encode() in (
                entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if not ours:
            continue
        if any(w.endswith(b"prefect") and words[i + 1:i + 3] == [b"server", b"start"]
               for i, w in enumerate(words)):
            found.add(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_server_is_left_running():
    """A test (or a command it runs) that leaves a Prefect server behind fails the session;
    the server is stopped."""
    before = _prefect_servers()
    yield
    left = _prefect_servers() - before
    for pid in left:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)
    assert not left, f"tests left Prefect servers running (pids {sorted(left)}); stopped now"


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect server for the whole session (the first start migrates a database)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def whole_frames(seconds: float, fps: int = TINY_PROFILE["compose"]["fps"]) -> float:
    """A slot's length as compose lays it: rounded up to whole frames."""
    import math

    return math.ceil(round(seconds * fps, 6)) / fps


@pytest.fixture
def tiny_profile(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    return path


def base_script(**overrides: Any) -> dict[str, Any]:
    script = {
        "id": "test-sop",
        "title": "Test SOP",
        "language": "en",
        "voice": "stock",
        "music": "calm ambient, 90 bpm",
        "style": "clean-industrial",
        "scenes": [
            {"id": "isolate", "narration": "Switch the conveyor off at the main disconnect.",
             "caption": "Step 1: isolate", "visual": "a worker turning a red disconnect switch",
             "motion": "push in"},
            {"id": "lock", "narration": "Fit your own padlock. Keep the key with you.",
             "caption": "Step 2: lock", "visual": "a padlock on a disconnect handle",
             "motion": "pan left"},
        ],
    }
    script.update(overrides)
    return script


def write_script(folder: Path, data: dict[str, Any] | str, name: str = "script.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True,
                                                             sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


ZH_TW = {"title": "上鎖掛牌", "scenes": {   # base_script's scenes in Traditional Chinese
    "isolate": {"narration": "在主電源開關處關閉輸送帶。", "caption": "步驟一：隔離"},
    "lock": {"narration": "掛上你自己的鎖。鑰匙要隨身攜帶。", "caption": "步驟二：上鎖"}}}


def build(script: Path, out: Path, profile: Path, *args: str) -> dict[str, Any]:
    """`sopreel build` as a user runs it; the manifest it wrote."""
    from click.testing import CliRunner

    from flows.cli import main

    result = CliRunner().invoke(main, ["build", str(script), "--profile", str(profile),
                                       "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    script_id = yaml.safe_load(script.read_text(encoding="utf-8"))["id"]
    return json.loads((out / script_id / "manifest.json").read_text(encoding="utf-8"))


def make_photo(path: Path, size: tuple[int, int], colour=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def ffprobe(path: Path) -> dict[str, Any]:
    done = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                           "-show_streams", str(path)], capture_output=True, check=True)
    return json.loads(done.stdout)


def ebur128(path: Path) -> dict[str, float]:
    """Integrated loudness and true peak as ffmpeg's ebur128 meter reports them."""
    done = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vn", "-af",
                           "ebur128=peak=true", "-f", "null", "-"], capture_output=True,
                          text=True, check=True)
    summary = done.stderr.rpartition("Summary:")[2]
    values = {}
    for line in summary.splitlines():
        parts = line.split()
        if parts[:1] == ["I:"]:
            values["I"] = float(parts[1])
        if parts[:1] == ["Peak:"]:
            values["TP"] = float(parts[1])
    return values


def parse_srt(text: str) -> list[dict[str, Any]]:
    """Cues as the `srt` library reads them (strictly: anything it cannot parse fails), so the
    writer is never checked by a reader of the same hand."""
    import srt

    return [{"index": cue.index, "start": cue.start.total_seconds(),
             "end": cue.end.total_seconds(), "lines": cue.content.split("\n")}
            for cue in srt.parse(text, ignore_errors=False)]


def parse_vtt(text: str) -> list[dict[str, Any]]:
    """Cues as `webvtt-py` reads them, text unescaped as a player shows it."""
    import html

    import webvtt

    def seconds(stamp) -> float:
        return round(stamp.hours * 3600 + stamp.minutes * 60 + stamp.seconds
                     + stamp.milliseconds / 1000, 3)

    return [{"start": seconds(cue.start_time), "end": seconds(cue.end_time),
             "lines": [html.unescape(line) for line in cue.lines]}
            for cue in webvtt.from_string(text)]


def speak(path: Path, text: str, voice: str = "en-us") -> Path:
    """A real spoken recording (espeak-ng), standing in for a person at a microphone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return path


STATEMENT = ("I, Anna Chen, allow Acme Manufacturing to use recordings of my voice to make "
             "training videos in English and Chinese until the end of 2027.")


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recordings")
    return {
        "reference": speak(folder / "reference.wav", "Good morning. This is how I sound when I "
                           "explain a safety procedure to my team on the shop floor."),
        "consent": speak(folder / "consent.wav", STATEMENT),
        "other": speak(folder / "other.wav", "Somebody else entirely is talking here, with a "
                       "different voice and a different microphone.", voice="en+m3"),
    }


def enrol_anna(voices: Path, recordings: dict[str, Path], **overrides: Any):
    from stages.voices import Enrolment, enrol

    fields = {"voice_id": "anna", "name": "Anna Chen", "reference": recordings["reference"],
              "consent": recordings["consent"], "statement": STATEMENT,
              "languages": ["en", "zh-TW"], "uses": ["training"], "expires": "2099-12-31"}
    return enrol(voices, Enrolment(**{**fields, **overrides}))


@pytest.fixture(scope="session")
def tiny_coqui_models(tmp_path_factory, recordings) -> dict[str, Path]:
    """A tiny random-weight XTTS (clones) and VITS (a Thai route), built once per session."""
    from tiny_coqui import build_vits, build_xtts

    folder = tmp_path_factory.mktemp("coqui")
    return {"xtts": build_xtts(folder / "xtts", recordings["reference"]),
            "vits": build_vits(folder / "vits-th")}


@pytest.fixture(scope="session")
def tiny_omnivoice_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random-weight OmniVoice and WavLM speaker encoder, built once per session."""
    from tiny_omnivoice import build_omnivoice, build_speaker_encoder

    folder = tmp_path_factory.mktemp("omnivoice")
    return {"omnivoice": build_omnivoice(folder / "omnivoice"),
            "speaker_encoder": build_speaker_encoder(folder / "wavlm-sv")}
