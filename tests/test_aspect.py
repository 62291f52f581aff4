"""Vertical 9:16 and square 1:1 video: text placed and sized for the frame, pictures filling it
without bars unless the profile asks for them, generated sizes at the frame's aspect."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import languages
from stages.compose import ComposeJob, Notice, SceneInput, segment_inputs
from stages.profile import ComposeOptions
from stages.style import load_style
from stages.subtitles import text_layout
from stages.timeline import SentenceTiming
from tests.conftest import TINY_PROFILE, base_script, build, ffprobe, write_script

ASPECTS = {"16:9": (960, 540), "9:16": (540, 960), "1:1": (720, 720)}
SENTENCE = "Switch off the main breaker and lock it with your own padlock before you start."


def render_text(width: int, height: int, at: float, folder: Path) -> np.ndarray:
    """The first scene's burned-in text (subtitle, caption, title, AI label) at `at` seconds
    into the scene, drawn by libass over black exactly as compose draws it."""
    scene = SceneInput(clip=None, clip_seconds=0.0, narration=Path("unused.wav"),
                       narration_seconds=4.0, sentences=[SentenceTiming(SENTENCE, 0.0, 4.0)],
                       caption="Step 1: Isolate the energy source")
    job = ComposeJob(language=languages.get("en"), title="Lockout before maintenance",
                     scenes=[scene], style=load_style("clean-industrial"),
                     options=ComposeOptions(width=width, height=height, fps=12),
                     notice=Notice("This video was made with AI.", min_seconds=2.0),
                     label="AI-generated")
    segment = segment_inputs(job, job.timeline())[1]
    (folder / "text.ass").write_text(segment.ass, encoding="utf-8")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=black:s={width}x{height}:r=12:d={segment.seconds:.3f}",
                    "-vf", "ass=text.ass", "-ss", f"{at:.3f}", "-frames:v", "1", "frame.png"],
                   cwd=folder, check=True)
    return np.asarray(Image.open(folder / "frame.png").convert("L")).astype(int)


def box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """left, top, right, bottom of the set pixels, or None."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])) if rows.size else None


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_text_is_placed_and_sized_for_the_frame(aspect, tmp_path):
    width, height = ASPECTS[aspect]
    layout = text_layout(width, height)
    ink = render_text(width, height, at=1.5, folder=tmp_path) > 60
    assert not (ink[0].any() or ink[-1].any() or ink[:, 0].any() or ink[:, -1].any()), \
        "no text runs off the frame"
    subtitle = box(ink[round(height * 0.8):])
    assert subtitle, "a subtitle at the bottom"
    left, top, right, bottom = subtitle
    assert left >= layout.side * 0.5 and right <= width - layout.side * 0.5
    assert abs((left + right) / 2 - width / 2) < width * 0.05, "centred"
    lines = (bottom - top) / layout.size
    assert 0.5 < lines < 2.8, f"one or two lines, not {lines:.1f}"
    # As large against the frame's shorter side in every aspect (the 16:9 size).
    assert layout.size == pytest.approx(min(width, height) * 0.052, abs=1)
    caption = box(ink[: round(height * 0.15), : round(width * 0.7)])
    assert caption and caption[0] >= layout.margin * 0.5, "the caption in the top left corner"
    label = box(ink[: round(height * 0.1), round(width * 0.7):])
    assert label and width * 0.7 + label[2] <= width - layout.margin * 0.25, \
        "the AI label in the top right corner"
    title = box(ink[round(height * 0.35): round(height * 0.8)])
    assert title, "the opening title above the subtitles"


def test_subtitle_lines_follow_the_frame_width():
    english = languages.get("en")
    from stages.subtitles import framed_language

    assert framed_language(english, 1920, 1080).line_chars == english.line_chars
    assert framed_language(english, 1080, 1920).line_chars == 24
    assert framed_language(languages.get("zh-TW"), 1080, 1920).line_chars == 9
    assert framed_language(english, 1080, 1080).line_chars == 24


def build_framed(folder: Path, frame: tuple[int, int], fit: str | None) -> tuple[dict, Path]:
    """A two-scene script (a generated still, then a 16:9 photo) built at `frame`."""
    photo = folder / "photos" / "wide.png"
    photo.parent.mkdir(parents=True)
    picture = np.zeros((180, 320, 3), dtype=np.uint8)
    picture[:, :160] = (40, 200, 60)     # green left half, blue right half
    picture[:, 160:] = (40, 60, 220)
    Image.fromarray(picture).save(photo)
    script = base_script()
    script["scenes"][1]["image"] = "photos/wide.png"
    path = write_script(folder, script)
    profile = json.loads(json.dumps(TINY_PROFILE))
    profile["compose"].update(width=frame[0], height=frame[1], **({"fit": fit} if fit else {}))
    (folder / "profile.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    return build(path, folder / "out", folder / "profile.yaml"), folder / "out" / "test-sop"


def frame_at(video: Path, seconds: float) -> np.ndarray:
    done = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(video),
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype=np.uint8)


@pytest.mark.parametrize(("frame", "fit"), [((180, 320), None), ((240, 240), "pad")],
                         ids=["9:16 auto", "1:1 pad"])
def test_vertical_and_square_builds_fill_the_frame(frame, fit, tmp_path):
    manifest, root = build_framed(tmp_path, frame, fit)
    width, height = frame
    video = root / "en" / "video.mp4"
    stream = next(s for s in ffprobe(video)["streams"] if s["codec_type"] == "video")
    assert (stream["width"], stream["height"]) == frame
    aspect = height / width
    for stage in ("images", "animate"):
        size = manifest["profile"][stage]["width"], manifest["profile"][stage]["height"]
        assert size[1] / size[0] == pytest.approx(aspect, rel=0.01), f"{stage} at the aspect"
    generated = Image.open(root / manifest["scenes"][0]["assets"][0]["path"])
    assert generated.size == (manifest["profile"]["images"]["width"],
                              manifest["profile"]["images"]["height"])
    # The photo scene, mid-way: the frame's top middle is the picture, never the style colour
    # (auto: the photo over its own blur) or exactly the style colour (pad: bars).
    photo_slot = manifest["outputs"]["en"]["duration_s"] - 1.0
    pixels = frame_at(video, photo_slot).reshape(height, width, 3).astype(int)
    band = pixels[round(height * 0.12): round(height * 0.2), width // 3: 2 * width // 3]
    top = band.reshape(-1, 3).mean(axis=0)
    background = np.array((0x1F, 0x29, 0x33))
    if fit == "pad":
        assert np.abs(top - background).max() < 12, "bars of the style colour, as asked"
    else:
        assert np.abs(top - background).max() > 25, "no bars: the photo's own blur"
        middle = pixels[height // 2, :, :]
        assert (middle[:, 1] > middle[:, 2] + 60).any() and (middle[:, 2] > middle[:, 1] + 60
                                                             ).any(), "the whole photo shown"
