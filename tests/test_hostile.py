"""Hostile input: generated scripts, shell-, ffmpeg- and ASS-special names and text, media
that is not what it claims, a full disk, and model weights that are not the pinned ones.
Every refusal is a clean message naming the file (and line and field where there is one),
with no traceback and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, make_photo, parse_srt, write_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.cli import main
from stages.assets import TEMP_PREFIX, file_sha256
from stages.errors import ProfileError, SopreelError
from stages.profile import load_profile
from stages.subtitles import WORD_JOINER

TEMPLATE = Path(__file__).parents[1] / "templates" / "scripts" / "forklift-preshift.yaml"
NASTY = ["", " ", "en", "zh-TW", "th", "xx", "stock", "anna", "../../etc/passwd", "/etc/passwd",
         "C:\\x.jpg", "photo.jpg", "a.gif", "music.mp3", "{\\an8\\fs99}big", "\\N", "--> x",
         "$(touch pwned)", "`id`", "a'b:c,d[e];f", "-rf", "\x00", "\x1b[31m", "\u202eevil",
         "\ufeff", "🦺", "x" * 3000, "clean-industrial", "null", "~", "&x", "<i>", "1e400"]
KEYS = ["id", "title", "language", "languages", "voice", "music", "style", "scenes",
        "translations", "narration", "caption", "visual", "image", "motion", "notes"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.sampled_from(NASTY), st.text(max_size=30))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5)),
    max_leaves=25)
text_or_junk = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=60), anything)
scenes = st.lists(st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["isolate", "lock", "Bad Id", ""]), text_or_junk),
     "narration": text_or_junk},
    optional={"caption": text_or_junk, "visual": text_or_junk, "image": text_or_junk,
              "motion": text_or_junk, "extra": anything}), max_size=4)
scripts = st.fixed_dictionaries(
    {"id": st.one_of(st.just("test-sop"), text_or_junk), "title": text_or_junk,
     "language": st.one_of(st.sampled_from(["en", "zh-TW", "th", "vi", "xx"]), text_or_junk),
     "scenes": st.one_of(scenes, anything)},
    optional={"languages": st.one_of(st.lists(st.sampled_from(["en", "zh-TW", "th", "vi",
                                                                "xx"])), anything),
              "voice": text_or_junk, "music": text_or_junk, "style": text_or_junk,
              "translations": anything})

FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FOLDER = Path(tempfile.mkdtemp(prefix="sopreel-fuzz-"))
make_photo(FOLDER / "photo.jpg", (64, 48))


def validate_text(raw: bytes) -> None:
    """`sopreel validate` on a script file holding `raw`: it loads or it is refused cleanly."""
    path = FOLDER / "script.yaml"
    path.write_bytes(raw)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), (result.output, repr(result.exception), raw[:300])
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.output.startswith(f"Error: script {path}"), result.output
    assert sorted(p.name for p in FOLDER.iterdir()) == ["photo.jpg", "script.yaml"]


@FUZZ
@given(scripts)
def test_fuzz_script_shaped_yaml_never_crashes_the_loader(script):
    validate_text(yaml.safe_dump(script, allow_unicode=True).encode("utf-8", "surrogatepass"))


@FUZZ
@given(anything)
def test_fuzz_any_yaml_value_never_crashes_the_loader(value):
    validate_text(yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.integers(0, 10_000), st.integers(0, 200), st.one_of(st.binary(max_size=40),
                                                               st.sampled_from(NASTY).map(
                                                                   str.encode)))
def test_fuzz_damaged_real_scripts_never_crash_the_loader(at, cut, splice):
    raw = TEMPLATE.read_bytes()
    at %= len(raw)
    validate_text(raw[:at] + splice + raw[at + cut:])


def test_inputs_that_would_hang_or_overflow_the_loader_are_refused(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)                      # reading it would wait for a writer forever
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 3000 + "]" * 3000, encoding="utf-8")
    for path, expected in [(fifo, "is not a regular file"), (Path("/dev/zero"),
                                                                "is not a regular file"),
                           (deep, "is nested too deeply")]:
        result = CliRunner().invoke(main, ["validate", str(path)])
        assert result.exit_code == 2 and f"{path}: {expected}" in result.output, result.output
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    script = write_script(tmp_path / "sop", base_script())
    result = CliRunner().invoke(main, ["build", str(script), "--out", str(blocker / "out")])
    assert result.exit_code == 2
    assert "cannot be used as the output folder (Not a directory)" in result.output


# ------------------------------------------------------------------ names and text with teeth

@pytest.mark.usefixtures("prefect_server")
def test_special_characters_in_names_and_text_are_just_names_and_text(tmp_path, tiny_profile):
    folder = tmp_path / "we'ird $(touch PWNED) dir;x:y,z[1]"
    photo = "photos/a'b:c,d[e];f $(touch PWNED) -x.jpg"
    make_photo(folder / photo, (120, 90))
    music = folder / "-m;x'b:c.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=330:d=3",
                    str(music)], check=True)
    said = "{\\an8\\fs80}Look up --> now \\N and <b>stay</b> & \"safe\"."
    script = base_script(title="Title {\\b1} <i>x</i> & 'q'", music=music.name)
    script["scenes"][0].update(narration=said, caption="{\\c&H0000FF&}Step $(id)")
    script["scenes"][1].update(visual=None, image=photo)
    del script["scenes"][1]["visual"]
    path = write_script(folder, script, "my script's; $(touch PWNED).yaml")
    out = tmp_path / "out 'x:y,z' $(touch PWNED)"
    result = CliRunner().invoke(main, ["build", str(path), "--profile", str(tiny_profile),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    root = out / "test-sop" / "en"
    cues = parse_srt((root / "subtitles.srt").read_text(encoding="utf-8"))
    first = " ".join(line for cue in cues[:2] for line in cue["lines"])
    assert first.startswith(said.replace("-->", "--" + WORD_JOINER + ">")[:40])
    vtt = (root / "subtitles.vtt").read_text(encoding="utf-8")
    assert "--&gt; now" in vtt and "&lt;b&gt;stay&lt;/b&gt;" in vtt
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["scenes"][1]["assets"][0]["backend"] == "file"
    assert manifest["music"]["backend"] == "file"


# --------------------------------------------------------------- supplied media, allowlisted

def refusal(path: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["validate", str(path), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


def test_supplied_media_is_checked_against_the_allowlist_before_any_decode(tmp_path):
    folder = tmp_path / "sop"
    (folder / "photos").mkdir(parents=True)
    playlist = folder / "evil.mp3"        # an HLS playlist posing as music: never opened as one
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n"
                        "#EXT-X-ENDLIST\n", encoding="utf-8")
    path = write_script(folder, base_script(music="evil.mp3"))
    assert f"{path}:5: music: evil.mp3 is not a WAV, MP3, OGG, FLAC or M4A audio file" in \
        refusal(path)
    clip = folder / "clip.m4a"            # a video file named like audio
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=d=2:s=64x48",
                    "-f", "lavfi", "-i", "sine=d=2", "-shortest", "-f", "mp4", str(clip)],
                   check=True)
    path = write_script(folder, base_script(music="clip.m4a"))
    assert "music: clip.m4a must hold one audio stream and nothing else" in refusal(path)

    def photo_problem(name: str) -> str:
        script = base_script(music=None)
        script["scenes"][0]["image"] = f"photos/{name}"
        return refusal(write_script(folder, script))

    from PIL import Image
    Image.new("RGB", (40, 40)).save(folder / "photos" / "anim.jpg", format="GIF")
    assert "scenes[0].image: anim.jpg is not a JPEG, PNG or WEBP photo" in \
        photo_problem("anim.jpg")
    Image.new("L", (17000, 16)).save(folder / "photos" / "strip.png")
    assert "strip.png is 17000x16 pixels; the limit is 16384 pixels a side" in \
        photo_problem("strip.png")
    with (folder / "photos" / "huge.jpg").open("wb") as handle:
        handle.truncate(60 << 20)         # sparse: 60 MB on paper
    assert "huge.jpg is 63 MB; the limit for photo is 52 MB" in photo_problem("huge.jpg")

    voices = tmp_path / "voices"
    result = CliRunner().invoke(main, [
        "voices", "add", "anna", "--name", "Anna Chen", "--reference", str(playlist),
        "--consent", str(playlist), "--statement", "I, Anna Chen, agree.", "--languages", "en",
        "--expires", "2099-01-01", "--voices-dir", str(voices)])
    assert result.exit_code == 2 and "evil.mp3 is not a WAV, MP3, OGG, FLAC or M4A recording" \
        in result.output
    assert not (voices / "anna").exists()


# -------------------------------------------------------------------------------- full disk

@pytest.mark.usefixtures("prefect_server")
def test_a_full_disk_is_reported_as_such_and_leaves_no_corrupt_output(tmp_path, tiny_profile):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    try:
        script = write_script(tmp_path / "sop", base_script())
        result = CliRunner().invoke(main, ["build", str(script), "--profile", str(tiny_profile),
                                           "--out", str(small)])
        assert result.exit_code == 2, result.output
        assert "the disk is full" in result.output and "Traceback" not in result.output
        assert "build again: finished assets are reused" in result.output
        left = [p for p in small.rglob("*") if p.is_file()]
        assert not [p for p in left if p.name.startswith(TEMP_PREFIX)]
        assert not [p for p in left if p.name in ("video.mp4", "manifest.json")]
        # Every asset recorded as complete is whole: its bytes match the recorded sha256.
        records = [p for p in left if p.name.endswith(".json") and p.parent.parent.name ==
                   "assets"]
        assert records
        for record in records:
            media = record.with_name(record.name.removesuffix(".json"))
            assert file_sha256(media) == json.loads(record.read_text("utf-8"))["sha256"]
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ------------------------------------------------------------------------- weights, pinned

def test_model_weights_are_safetensors_only_and_can_be_pinned_by_sha256(tmp_path):
    from safetensors.numpy import save_file

    from stages.images import BACKENDS

    weights = tmp_path / "model.safetensors"
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(weights))
    backend = BACKENDS.get("diffusers")
    pinned = backend(backend.Options(model=str(weights), sha256=file_sha256(weights)))
    pinned.load()     # pins without reading the weights
    wrong = backend(backend.Options(model=str(weights), sha256="0" * 64))
    with pytest.raises(SopreelError, match=r"is not the pinned one: its sha256 is "
                                           + file_sha256(weights)):
        wrong.load()
    pickle = tmp_path / "model.ckpt"
    shutil.copy(weights, pickle)
    with pytest.raises(SopreelError, match=r"loaded with Python's pickle and can run code"):
        backend(backend.Options(model=str(pickle))).load()
    profile = tmp_path / "hub.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": "black-forest-labs/FLUX.1-schnell",
        "sha256": "a" * 64}}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"hub\.yaml:\d+: images\.model: `sha256` pins local "
                                           r"files and folders; pin the Hub model"):
        load_profile(profile)
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": str(weights), "sha256": "not-hex"}}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"images\.sha256"):
        load_profile(profile)


def test_a_coqui_model_folder_can_be_pinned(tiny_coqui_models):
    from stages.models import ModelSource, fingerprint
    from stages.narrate import BACKENDS

    folder = tiny_coqui_models["vits"]
    digest = fingerprint(ModelSource("folder", str(folder)))["sha256"]
    coqui = BACKENDS.get("coqui")
    with pytest.raises(SopreelError, match=f"not the pinned one: its sha256 is {digest}"):
        coqui(coqui.Options(model=str(folder), sha256="0" * 64))._model(str(folder))
    loaded = coqui(coqui.Options(model=str(folder), sha256=digest))._model(str(folder))
    assert loaded.synthesizer is not None
