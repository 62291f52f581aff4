"""Clips as long as the narration: chaining arithmetic, the ffmpeg join, and the `wan-i2v`
backend on a tiny random-weight Wan2.1 image-to-video pipeline loaded with `from_pretrained`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, ffprobe, make_photo, write_script
from pydantic import ValidationError
from tiny_diffusion import build_hunyuan_i2v, build_wan_i2v

from flows.cli import main
from stages.animate import BACKENDS, ClipRequest
from stages.animate.chain import join_segments, last_frame, needs_join, plan_coverage
from stages.animate.diffusers import size_bucket
from stages.errors import ProfileError, SopreelError
from stages.images import scene_seed
from stages.media import write_video
from stages.profile import load_profile

# ------------------------------------------------------------------------ the arithmetic


def test_a_short_scene_is_one_trimmed_segment():
    plan = plan_coverage(3.0, frames=81, fps=16, max_segments=3, max_slowdown=1.6)
    assert (plan.segments, plan.slowdown, plan.hold_s) == (1, 1.0, 0.0)
    assert plan.footage_s == 81 / 16 and plan.trim_s == pytest.approx(81 / 16 - 3.0)
    assert plan.method == "trimmed"


def test_a_long_scene_chains_segments_each_dropping_the_repeated_start_frame():
    # 81 + 80 + 80 frames at 16 fps: 5.0625, 10.0625, 15.0625 s.
    plan = plan_coverage(12.0, frames=81, fps=16, max_segments=5, max_slowdown=1.6)
    assert plan.segments == 3 and plan.footage_s == pytest.approx(241 / 16)
    assert plan.trim_s == pytest.approx(241 / 16 - 12) and plan.final_segment_start == 161
    assert plan.method == "chained 3 segments, trimmed"
    exact = plan_coverage(161 / 16, frames=81, fps=16, max_segments=5, max_slowdown=1.6)
    assert (exact.segments, exact.trim_s, exact.method) == (2, 0.0, "chained 2 segments, exact")


def test_past_the_segment_limit_the_final_segment_is_slowed_then_held():
    plan = plan_coverage(12.0, frames=81, fps=16, max_segments=2, max_slowdown=1.6)
    # Two segments give 161/16 s; the final segment (80 frames, 5 s) is slowed to cover the
    # missing 1.9375 s: 6.9375 / 5 = 1.3875 times slower, no hold needed.
    assert plan.segments == 2 and plan.slowdown == pytest.approx(1.3875)
    assert plan.hold_s == 0.0 and plan.method == "chained 2 segments, slowed"
    far = plan_coverage(20.0, frames=81, fps=16, max_segments=2, max_slowdown=1.6)
    assert far.slowdown == 1.6                                 # never slower than the limit
    assert far.hold_s == pytest.approx(20.0 - (161 / 16 + 5.0 * 0.6))
    held = plan_coverage(20.0, frames=81, fps=16, max_segments=2, max_slowdown=1.0)
    assert held.slowdown == 1.0 and held.hold_s == pytest.approx(20.0 - 161 / 16)
    assert held.method == "chained 2 segments, held"


def test_a_model_whose_segments_do_not_repeat_the_start_frame_chains_all_frames():
    plan = plan_coverage(10.0, frames=125, fps=24, max_segments=3, max_slowdown=1.6, overlap=0)
    assert plan.segments == 2 and plan.footage_s == pytest.approx(250 / 24)


def test_one_segment_at_the_compose_rate_goes_to_compose_as_it_is():
    one = plan_coverage(7.0, frames=192, fps=24, max_segments=1, max_slowdown=1.6)
    assert not needs_join(one, 24)          # compose slows and holds it the same way
    assert needs_join(one, 30)
    assert needs_join(plan_coverage(3.0, frames=81, fps=16, max_segments=3, max_slowdown=1.6),
                      24)


@pytest.mark.parametrize(("width", "height", "bucket"), [
    (1920, 1080, (832, 464)), (832, 480, (832, 480)), (1080, 1920, (464, 832)),
    (1000, 1000, (624, 624))])
def test_the_frame_keeps_the_stills_aspect_in_multiples_of_16(width, height, bucket):
    assert size_bucket(width, height, 832 * 480) == bucket
    w, h = size_bucket(width, height, 1280 * 720)
    assert w % 16 == h % 16 == 0 and abs(w / h - width / height) < 0.05


# --------------------------------------------------------------------------- the join

LEVELS = 9   # frames per test segment


def numbered_segments(folder: Path, count: int) -> list[Path]:
    """Segments whose frame n of the chain is grey level 20 + 9n; each segment opens on the
    previous one's last frame, as a chained model's does."""
    paths = []
    for index in range(count):
        numbers = range(index * (LEVELS - 1), index * (LEVELS - 1) + LEVELS)
        frames = np.stack([np.full((32, 32, 3), 20 + 9 * n, np.uint8) for n in numbers])
        paths.append(folder / f"segment{index}.mp4")
        write_video(frames, 16, paths[-1], crf=0)
    return paths


def frame_numbers(clip: Path) -> list[int]:
    """Which chain frame each frame of the clip shows (read back from its grey level)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    levels = np.frombuffer(raw, np.uint8).reshape(-1, 32 * 32).mean(axis=1)
    return [round((level - 20) / 9) for level in levels]


def test_joined_segments_show_every_frame_once(tmp_path):
    segments = numbered_segments(tmp_path, 3)
    plan = plan_coverage(25 / 16, frames=LEVELS, fps=16, max_segments=3, max_slowdown=1.6)
    assert plan.segments == 3 and plan.trim_s == 0
    out = tmp_path / "joined.mp4"
    info = join_segments(segments, plan, 16, "repeat", out)
    assert frame_numbers(out) == list(range(25))      # 9 + 8 + 8: no start frame twice
    assert info["frames"] == 25 and info["seconds"] == 25 / 16


def test_the_final_segment_is_slowed_then_held_and_the_rest_plays_at_speed(tmp_path):
    segments = numbered_segments(tmp_path, 2)
    plan = plan_coverage(1.5, frames=LEVELS, fps=16, max_segments=2, max_slowdown=1.6)
    assert plan.slowdown == 1.6 and plan.hold_s == pytest.approx(1.5 - (17 / 16 + 0.5 * 0.6))
    out = tmp_path / "joined.mp4"
    join_segments(segments, plan, 16, "repeat", out)
    shown = frame_numbers(out)
    assert len(shown) == 24                                   # 1.5 s at 16 fps
    assert shown[:9] == list(range(9))                        # the first segment at speed
    assert shown == sorted(shown) and set(shown) == set(range(17))
    slowed = [shown.count(n) for n in range(9, 16)]
    assert sum(slowed) == pytest.approx(7 * 1.6, abs=1)      # final segment 1.6x as long
    assert shown.count(16) >= round(plan.hold_s * 16)         # then the last frame held


@pytest.mark.parametrize("retime", ["interpolate", "blend", "repeat"])
def test_16_fps_segments_become_an_exact_24_fps_clip(tmp_path, retime):
    segments = numbered_segments(tmp_path, 2)
    plan = plan_coverage(1.2, frames=LEVELS, fps=16, max_segments=2, max_slowdown=1.6)
    out = tmp_path / "joined.mp4"
    join_segments(segments, plan, 24, retime, out)
    stream = ffprobe(out)["streams"][0]
    assert stream["r_frame_rate"] == "24/1" and int(stream["nb_frames"]) == round(1.2 * 24)
    shown = frame_numbers(out)
    assert shown[0] == 0 and shown == sorted(shown) and shown[-1] >= 15


def test_the_last_frame_is_the_next_segments_start(tmp_path):
    segment = numbered_segments(tmp_path, 1)[0]
    out = tmp_path / "last.png"
    last_frame(segment, LEVELS, out)
    from PIL import Image

    with Image.open(out) as image:
        assert round((np.asarray(image.convert("L")).mean() - 20) / 9) == LEVELS - 1


# ---------------------------------------------------------------- the tiny Wan pipeline


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory) -> Path:
    return build_wan_i2v(tmp_path_factory.mktemp("tiny-wan") / "wan2.1-i2v")


def wan(model: Path | str, **options):
    chosen = BACKENDS.get("wan-i2v")(BACKENDS.get("wan-i2v").Options(
        model=str(model), width=64, height=48, frames=9, steps=2, **options))
    chosen.load()
    return chosen


def decoded_md5(clip: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-f", "md5", "-"],
                          capture_output=True, check=True, text=True).stdout.strip()


def test_wan_animates_a_still_from_its_folder_reproducibly(tiny_wan, tmp_path):
    still = make_photo(tmp_path / "still.png", (400, 300))
    chosen = wan(tiny_wan)
    seen: list[float] = []
    request = ClipRequest(image=still, prompt="a forklift backs out slowly",
                          negative_prompt="static", seed=7)
    facts = chosen.animate(request, tmp_path / "a.mp4", seen.append)
    stream = ffprobe(tmp_path / "a.mp4")["streams"][0]
    assert (stream["width"], stream["height"]) == (64, 48)    # 4:3 within 64x48, by 16s
    assert stream["r_frame_rate"] == "16/1" and int(stream["nb_frames"]) == 9
    assert facts["frames"] == 9 and facts["seconds"] == 9 / 16 and facts["seed"] == 7
    assert facts["pipeline"] == "WanImageToVideoPipeline" and len(facts["sha256"]) == 64
    assert facts["starts_with_image"] is True and seen[-1] == 1.0 and len(seen) == 2
    chosen.animate(request, tmp_path / "b.mp4")
    assert decoded_md5(tmp_path / "a.mp4") == decoded_md5(tmp_path / "b.mp4")
    other = request.model_copy(update={"seed": 8})
    chosen.animate(other, tmp_path / "c.mp4")
    assert decoded_md5(tmp_path / "a.mp4") != decoded_md5(tmp_path / "c.mp4")
    portrait = make_photo(tmp_path / "portrait.png", (300, 400))
    chosen.animate(request.model_copy(update={"image": portrait}), tmp_path / "d.mp4")
    stream = ffprobe(tmp_path / "d.mp4")["streams"][0]
    assert (stream["width"], stream["height"]) == (48, 64)
    chosen.close()


def test_hunyuan_animates_a_still_behind_the_same_interface(tmp_path_factory, tmp_path):
    model = build_hunyuan_i2v(tmp_path_factory.mktemp("tiny-hunyuan") / "hunyuan-i2v")
    chosen = BACKENDS.get("hunyuan-i2v")(BACKENDS.get("hunyuan-i2v").Options(
        model=str(model), width=64, height=48, frames=9, steps=2, true_cfg=2.0))
    chosen.load()
    still = make_photo(tmp_path / "still.png", (640, 480))
    request = ClipRequest(image=still, prompt="a forklift backs out slowly",
                          negative_prompt="static", seed=3)
    facts = chosen.animate(request, tmp_path / "a.mp4")
    stream = ffprobe(tmp_path / "a.mp4")["streams"][0]
    assert (stream["width"], stream["height"]) == (64, 48) and stream["r_frame_rate"] == "24/1"
    # The latent-concat model drops its first four frames: the segment does not open on the
    # still, so chaining keeps every frame of the next segment.
    assert facts["frames"] == int(stream["nb_frames"]) == 5
    assert facts["starts_with_image"] is False
    assert facts["pipeline"] == "HunyuanVideoImageToVideoPipeline"
    chosen.animate(request, tmp_path / "b.mp4")
    assert decoded_md5(tmp_path / "a.mp4") == decoded_md5(tmp_path / "b.mp4")


def test_wan_options_and_locations_are_checked(tiny_wan, tmp_path):
    with pytest.raises(ValidationError, match="4k\\+1"):
        BACKENDS.get("wan-i2v").Options(frames=80)
    with pytest.raises(ValidationError, match="multiple of 16"):
        BACKENDS.get("wan-i2v").Options(width=840)
    with pytest.raises(ValidationError, match="flash"):
        BACKENDS.get("wan-i2v").Options(attention="flash_hub")   # downloads kernels
    empty = tmp_path / "not-a-pipeline"
    empty.mkdir()
    with pytest.raises(SopreelError, match=r"no model_index\.json"):
        wan(empty)
    single = tmp_path / "wan.safetensors"
    single.write_bytes(b"{}")
    with pytest.raises(SopreelError, match="must be a diffusers pipeline folder or a Hugging"):
        wan(single)
    with pytest.raises(SopreelError, match="neither a file or folder"):
        wan("./missing-folder")


def test_well_known_weights_have_their_licence_without_a_profile_saying():
    from stages.licenses import allows_commercial, license_of

    assert BACKENDS.get("wan-i2v")(BACKENDS.get("wan-i2v").Options()).license == "Apache-2.0"
    assert allows_commercial(license_of("black-forest-labs/FLUX.1-dev")) is False
    local = BACKENDS.get("wan-i2v").Options(model="./my-finetune")
    assert BACKENDS.get("wan-i2v")(local).license.startswith("unknown: set `license`")


def test_a_profile_typo_in_the_animate_stage_names_its_line(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        "backend": "wan-i2v", "model": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "frames": 80}}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"p\.yaml:\d+.*frames.*4k\+1"):
        load_profile(profile)
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        "backend": "wan-i2v", "model": "./models/wan-i2v-480p"}}), encoding="utf-8")
    # A model folder that is not there stops the build before any scene is drawn.
    with pytest.raises(ProfileError, match=r"p\.yaml:\d+: animate\.model: The video model "
                                           r"'\./models/wan-i2v-480p' is neither"):
        load_profile(profile)


def test_a_photo_a_model_animates_counts_as_a_generated_picture_in_the_notice(tiny_wan,
                                                                            tmp_path):
    from stages.plan import plan_build
    from stages.script import load_script

    make_photo(tmp_path / "photos" / "a.jpg", (320, 180))
    script = base_script(music=None)
    for scene in script["scenes"]:
        scene["image"] = "photos/a.jpg"
    loaded = load_script(write_script(tmp_path, script))
    profile = tmp_path / "wan.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        "backend": "wan-i2v", "model": str(tiny_wan), "license": "Apache-2.0"}}),
        encoding="utf-8")
    assert plan_build(loaded, load_profile(profile), tmp_path).pictures == "generated"
    profile.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")   # a camera move
    assert plan_build(loaded, load_profile(profile), tmp_path).pictures == "photos"


@pytest.mark.usefixtures("prefect_server")
def test_a_profile_naming_a_local_wan_folder_builds_clips_that_fit_the_narration(tiny_wan,
                                                                                 tmp_path):
    """As a new user would: a profile file naming the model folder, `sopreel build`, then the
    manifest, the video, and a longer chain that only adds segments."""
    profile = tmp_path / "my-studio.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        "backend": "wan-i2v", "model": str(tiny_wan), "width": 64, "height": 48, "frames": 9,
        "steps": 2, "max_segments": 4, "retime": "blend", "license": "Apache-2.0"}}),
        encoding="utf-8")
    path = write_script(tmp_path, base_script(music=None))
    out = tmp_path / "out"
    args = ["build", str(path), "--profile", str(profile), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output

    root = out / "test-sop"
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    clips = [scene["assets"][1] for scene in manifest["scenes"]]
    for scene, clip in zip(("isolate", "lock"), clips, strict=True):
        info, coverage = clip["info"], clip["info"]["coverage"]
        assert clip["backend"] == "wan-i2v" and clip["model"] == str(tiny_wan)
        assert info["pipeline"] == "WanImageToVideoPipeline" and len(info["sha256"]) == 64
        # Tiny segments (9 frames, 0.56 s) cannot cover a scene in 4: slowed, then held.
        assert coverage["segments"] == 4 and coverage["method"].startswith("chained 4")
        assert [s["seed"] for s in info["segments"]] == [scene_seed("test-sop", scene) + k
                                                          for k in range(4)]
        assert info["fps"] == 12 and info["retime"] == "blend"   # the compose rate
        stream = ffprobe(root / clip["path"])["streams"][0]
        assert stream["r_frame_rate"] == "12/1"
        assert float(stream["duration"]) == pytest.approx(coverage["target_s"], abs=1 / 12)
    assert {"backend": "wan-i2v", "model": str(tiny_wan), "license": "Apache-2.0",
            "commercial": True} in manifest["licenses"]
    video = ffprobe(root / "en" / "video.mp4")
    assert float(video["format"]["duration"]) == pytest.approx(
        manifest["outputs"]["en"]["duration_s"], abs=0.1)

    # Allowed more segments, the scenes chain further: the four made already are reused (a
    # segment's key is its start image, prompt and seed, not the chain around it).
    segments_before = {p: p.stat().st_mtime_ns for p in (root / "assets" / "animate").glob(
        "*.mp4")}
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        "backend": "wan-i2v", "model": str(tiny_wan), "width": 64, "height": 48, "frames": 9,
        "steps": 2, "max_segments": 8, "retime": "blend", "license": "Apache-2.0"}}),
        encoding="utf-8")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    for clip in (scene["assets"][1] for scene in manifest["scenes"]):
        assert clip["info"]["coverage"]["segments"] > 4
        assert clip["info"]["coverage"]["slowdown"] <= 1.6
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in segments_before.items())
