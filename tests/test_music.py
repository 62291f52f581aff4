"""Background music: beds of any length (continued windows, loops, cuts), MusicGen through
transformers on tiny random-weight models, and the bed under the narration of a real video."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, ebur128, ffprobe, write_script
from pydantic import ValidationError
from tiny_musicgen import RATE, build_musicgen

from flows.cli import main
from stages.errors import ProfileError, SopreelError
from stages.images import scene_seed
from stages.media import SAMPLE_RATE, read_wav, write_wav
from stages.music import BACKENDS, BED_LUFS, MusicRequest, cut_tail, make_bed
from stages.music.bed import Piece, assemble, join_continued, loop_to, windows_needed
from stages.plan import BED_STEP_S
from stages.profile import load_profile

# ----------------------------------------------------------- joins, loops and cuts, exactly


def melody(seconds: float, rate: int = 8000) -> np.ndarray:
    """A deterministic stereo signal that never repeats: a gliding tone, slowly swelling."""
    t = np.arange(round(seconds * rate)) / rate
    left = np.sin(2 * np.pi * (220 * t + 15 * t**2)) * (0.5 + 0.3 * np.sin(t))
    return np.stack([left, np.roll(left, 7)], axis=1).astype(np.float32)


def test_how_many_windows_cover_a_video():
    assert windows_needed(20, 30, 10) == 1 and windows_needed(30, 30, 10) == 1
    assert windows_needed(31, 30, 10) == 2 and windows_needed(50, 30, 10) == 2
    assert windows_needed(50.5, 30, 10) == 3
    assert windows_needed(180, 30, 10) == 9            # 30 + 8 x 20 = 190 s


def test_windows_that_replay_their_context_join_into_the_original_sound():
    rate, window, context = 8000, 3 * 8000, 8000
    sound = melody(12, rate)
    pieces = [Piece(sound[:window])]
    start = window
    while start < len(sound):
        pieces.append(Piece(sound[start - context:start - context + window], context=context))
        start += window - context
    joined = join_continued(pieces, crossfade=4000)
    assert len(joined) == sum(len(p.samples) - p.context for p in pieces)
    np.testing.assert_allclose(joined, sound[:len(joined)], atol=1e-6)


def test_a_join_fades_linearly_and_ends_where_the_context_does():
    before = Piece(np.ones((100, 2), np.float32))
    after = Piece(np.zeros((60, 2), np.float32), context=20)
    joined = join_continued([before, after], crossfade=11)
    assert len(joined) == 100 + 40
    assert joined[88, 0] == 1.0                       # before the fade
    assert joined[94, 0] == pytest.approx(0.5)        # half way: linear, no swell
    assert joined[99, 0] == 0.0 and joined[100:].max() == 0.0


def test_a_loop_seams_at_quiet_points_with_an_equal_power_crossfade():
    rate = 8000
    noise = np.random.default_rng(1).normal(0, 0.2, (8 * rate, 2)).astype(np.float32)
    noise[round(1.0 * rate):round(1.2 * rate)] *= 0.01          # quiet near the start
    noise[round(6.5 * rate):round(6.7 * rate)] *= 0.01          # ... and near the end
    bed, facts = loop_to(Piece(noise), 30 * rate, crossfade=round(0.1 * rate), rate=rate)
    assert len(bed) == 30 * rate
    assert 1.0 <= facts["loop_in_s"] < 1.2 and 6.5 <= facts["loop_out_s"] < 6.7

    steady = np.random.default_rng(2).normal(0, 0.2, (5 * rate, 2)).astype(np.float32)
    bed, facts = loop_to(Piece(steady), 21 * rate, crossfade=round(0.5 * rate), rate=rate)
    frames = bed[: len(bed) // 800 * 800].reshape(-1, 800, 2)
    levels = 10 * np.log10(np.mean(frames**2, axis=(1, 2)) / np.mean(steady**2))
    # A linear crossfade of unrelated sound dips 3 dB mid-seam; equal power holds the level.
    assert np.abs(levels).max() < 1.0, levels.round(1)


def test_a_seamless_piece_repeats_as_it_is_and_a_long_one_is_cut():
    piece = melody(2)
    bed, facts = loop_to(Piece(piece, seamless=True), 5 * 8000, crossfade=800, rate=8000)
    np.testing.assert_array_equal(bed, np.tile(piece, (3, 1))[:5 * 8000])
    assert facts == {"loop_in_s": 0.0, "loop_out_s": 2.0}
    bed, facts = assemble([Piece(melody(10))], seconds=4.0, crossfade_s=1.0, rate=8000)
    np.testing.assert_array_equal(bed, melody(10)[:4 * 8000])
    assert facts == {"method": "one piece, trimmed", "trimmed_s": 6.0}


def test_every_bed_is_levelled_to_the_reference_loudness(tmp_path):
    t = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
    quiet = (0.01 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_wav(tmp_path / "quiet.wav", np.stack([quiet, quiet], axis=1))
    facts = make_bed([(tmp_path / "quiet.wav", {})], 30.0, 2.0, tmp_path / "bed.wav")
    assert ebur128(tmp_path / "bed.wav")["I"] == pytest.approx(BED_LUFS, abs=0.5)
    assert facts["seconds"] == 30.0 and facts["gain_db"] > 20 and "looped" in facts["method"]

    spiky = np.stack([quiet, quiet], axis=1) * 0.3
    spiky[::SAMPLE_RATE] = 0.5                      # quiet, with clicks: the peaks set the gain
    write_wav(tmp_path / "spiky.wav", spiky)
    facts = make_bed([(tmp_path / "spiky.wav", {})], 10.0, 2.0, tmp_path / "bed2.wav")
    samples, _ = read_wav(tmp_path / "bed2.wav", mono=False)
    assert 20 * np.log10(np.abs(samples).max()) == pytest.approx(-1.0, abs=0.1)
    assert facts["gain_db"] == pytest.approx(5.0, abs=0.1) and facts["loudness_lufs"] < -30


# ------------------------------------------------------------- MusicGen, tiny and random


@pytest.fixture(scope="module")
def tiny_musicgen(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("musicgen")
    return {kind: build_musicgen(root / kind, kind) for kind in ("mono", "stereo", "melody")}


def musicgen(folder: Path, **options):
    backend = BACKENDS.get("musicgen")(BACKENDS.get("musicgen").Options(
        model=str(folder), window_s=2.0, context_s=0.5, crossfade_s=0.2, **options))
    backend.load()
    return backend


def test_a_musicgen_window_is_48k_stereo_reproducible_per_seed(tiny_musicgen, tmp_path):
    backend = musicgen(tiny_musicgen["mono"])
    steps: list[float] = []
    facts = backend.generate(MusicRequest(prompt="calm piano, 80 bpm", seed=3),
                             tmp_path / "a.wav", steps.append)
    backend.generate(MusicRequest(prompt="calm piano, 80 bpm", seed=3), tmp_path / "b.wav")
    backend.generate(MusicRequest(prompt="calm piano, 80 bpm", seed=4), tmp_path / "c.wav")
    a, rate = read_wav(tmp_path / "a.wav", mono=False)
    b, _ = read_wav(tmp_path / "b.wav", mono=False)
    c, _ = read_wav(tmp_path / "c.wav", mono=False)
    assert rate == SAMPLE_RATE and a.shape == (2 * SAMPLE_RATE, 2)
    assert facts["seconds"] == 2.0 and facts["context_s"] == 0 and facts["seed"] == 3
    assert facts["pipeline"] == "MusicgenForConditionalGeneration" and facts["model_rate"] == RATE
    assert facts["model"] == str(tiny_musicgen["mono"]) and len(facts["sha256"]) == 64
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.2 * np.abs(a).mean()
    # Progress per step: 100 frames of codes, one step apart per codebook (4), all reported.
    assert len(steps) == 103 and steps == sorted(steps) and steps[-1] == 1.0


@pytest.mark.parametrize("kind", ["mono", "stereo", "melody"])
def test_a_continuation_opens_by_replaying_the_end_it_was_given(tiny_musicgen, tmp_path, kind):
    """The window's first context_s is its prompt, decoded again with what follows: here the
    codec's own round trip of the tail (a random codec is no autoencoder, a trained one is)."""
    import torch
    import torchaudio.functional

    backend = musicgen(tiny_musicgen[kind])
    backend.generate(MusicRequest(prompt="calm", seed=1), tmp_path / "w0.wav")
    cut_tail(tmp_path / "w0.wav", 0.5, tmp_path / "tail.wav")
    facts = backend.generate(MusicRequest(prompt="calm", seed=2,
                                          continue_from=tmp_path / "tail.wav"),
                             tmp_path / "w1.wav")
    assert facts["seconds"] == 2.0 and facts["context_s"] == 0.5
    window, _ = read_wav(tmp_path / "w1.wav", mono=False)

    model = backend._slot.model[0]
    tail, _ = read_wav(tmp_path / "tail.wav", mono=False)
    audio = torchaudio.functional.resample(torch.from_numpy(tail.T.copy()), SAMPLE_RATE, RATE)
    channels = 2 if kind == "stereo" else 1
    audio = audio[:channels] if channels == 2 else audio.mean(0, keepdim=True)
    with torch.inference_mode():
        replayed = [model.audio_encoder.decode(model.audio_encoder.encode(
            audio[None, c:c + 1]).audio_codes, [None]).audio_values[0, 0] for c in
                    range(channels)]
    expected = torchaudio.functional.resample(torch.stack(replayed), RATE, SAMPLE_RATE).numpy()
    inner = slice(2400, SAMPLE_RATE // 2 - 2400)    # away from the edges a codec sees alone
    for channel in range(2):
        got = window[inner, channel]
        want = expected[min(channel, channels - 1), inner]
        assert np.corrcoef(got, want)[0, 1] > 0.9
    if kind == "stereo":
        assert np.abs(window[:, 0] - window[:, 1]).mean() > 0.1 * np.abs(window).mean()


def test_musicgen_options_and_locations_are_checked(tiny_musicgen, tmp_path):
    options = BACKENDS.get("musicgen").Options
    with pytest.raises(ValidationError, match="at least 1 s of new music"):
        options(window_s=10, context_s=9.5)
    with pytest.raises(ValidationError, match="must fit inside context_s"):
        options(context_s=2, crossfade_s=3)
    with pytest.raises(ValidationError, match="less than or equal to 30"):
        options(window_s=45)
    with pytest.raises(SopreelError, match="neither a file or folder"):
        musicgen(tmp_path / "missing")
    from transformers import T5Config, T5EncoderModel

    T5EncoderModel(T5Config(vocab_size=32, d_model=8, d_ff=8, d_kv=4, num_layers=1,
                            num_heads=1)).save_pretrained(tmp_path / "t5")
    with pytest.raises(SopreelError, match="is a t5 model, not MusicGen"):
        musicgen(tmp_path / "t5").generate(MusicRequest(prompt="x", seed=1), tmp_path / "x.wav")

    pickled = tmp_path / "pickled"
    subprocess.run(["cp", "-r", str(tiny_musicgen["mono"]), str(pickled)], check=True)
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(SopreelError, match="Only safetensors weights are loaded"):
        musicgen(pickled).generate(MusicRequest(prompt="x", seed=1), tmp_path / "x.wav")
    facts = musicgen(pickled, allow_pickle=True).generate(MusicRequest(prompt="x", seed=1),
                                                          tmp_path / "x.wav")
    assert facts["seconds"] == 2.0

    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "music": {
        "backend": "musicgen", "model": str(tmp_path / "nowhere")}}), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"profile.yaml:\d+: music.model: .*nowhere"):
        load_profile(str(profile))


# --------------------------------------------------------------- as a user builds a video


def whole_steps(seconds: float) -> float:
    """A bed's length: the video's, in whole steps (an edit rarely makes it again)."""
    return math.ceil(seconds / BED_STEP_S) * BED_STEP_S


def speech_and_music_levels(video: Path, tone_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Per 50 ms of the video's audio: the level (dB) of the speech band, and of the music
    (a steady tone above anything espeak says)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-vn", "-ac", "1", "-ar",
                          str(SAMPLE_RATE), "-f", "f32le", "-"], capture_output=True,
                         check=True).stdout
    audio = np.frombuffer(raw, np.float32)
    size = SAMPLE_RATE // 20
    frames = audio[: len(audio) // size * size].reshape(-1, size) * np.hanning(size)
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    hz = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    speech = spectrum[:, (hz > 100) & (hz < 8000)].sum(axis=1)
    music = spectrum[:, np.abs(hz - tone_hz) < 60].sum(axis=1)
    return 10 * np.log10(speech + 1e-12), 10 * np.log10(music + 1e-12)


@pytest.mark.usefixtures("prefect_server")
def test_the_bed_ducks_at_least_12_db_under_the_narration_and_the_mix_meets_loudness(tmp_path):
    tone_hz = 12000.0
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    (tmp_path / "audio").mkdir()
    write_wav(tmp_path / "audio" / "tone.wav", np.stack([tone, tone], axis=1))
    profile = tmp_path / "loud-bed.yaml"       # the music as loud as the speech before ducking
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "compose": {
        **TINY_PROFILE["compose"], "music_db": -6.0, "pause_s": 2.0}}), encoding="utf-8")
    path = write_script(tmp_path, base_script(music="audio/tone.wav"))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(path), "--profile", str(profile),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    video = out / "test-sop" / "en" / "video.mp4"
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    video_s = manifest["outputs"]["en"]["duration_s"]
    assert manifest["music"]["info"]["seconds"] == whole_steps(video_s)

    speech, music = speech_and_music_levels(video, tone_hz)
    speaking = speech > speech.max() - 20
    quiet = np.convolve(speech > speech.max() - 45, np.ones(31), "same") == 0   # 0.75 s clear
    fade = round(min(3.0, len(speech) / 20 / 4) * 20) + 1      # compose's fades, in frames
    quiet[:fade] = quiet[-fade:] = False
    assert speaking.sum() > 40 and quiet.sum() > 5
    under_speech = np.median(music[speaking])
    assert np.median(speech[speaking]) - under_speech >= 12      # under the narration
    assert np.median(music[quiet]) - under_speech >= 10          # the duck itself

    loudness = ebur128(video)
    assert loudness["I"] == pytest.approx(-16.0, abs=1.0) and loudness["TP"] <= -1.0


@pytest.mark.usefixtures("prefect_server")
def test_a_musicgen_bed_lasts_the_video_and_a_longer_video_only_adds_windows(tiny_musicgen,
                                                                             tmp_path):
    def build(pause_s: float) -> dict:
        profile = tmp_path / "musicgen.yaml"
        profile.write_text(yaml.safe_dump({
            **TINY_PROFILE, "compose": {**TINY_PROFILE["compose"], "pause_s": pause_s},
            "music": {"backend": "musicgen", "model": str(tiny_musicgen["mono"]),
                      "window_s": 3.0, "context_s": 1.0, "crossfade_s": 0.5,
                      "license": "CC-BY-NC-4.0"}}), encoding="utf-8")
        result = CliRunner().invoke(main, ["build", str(script), "--profile", str(profile),
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        return json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))

    script = write_script(tmp_path, base_script(music="calm corporate ambient, soft piano"))
    out = tmp_path / "out"
    manifest = build(pause_s=0.5)
    bed = manifest["music"]
    seconds = manifest["outputs"]["en"]["duration_s"]
    seed = scene_seed("test-sop", "music")
    assert bed["backend"] == "musicgen" and bed["model"] == str(tiny_musicgen["mono"])
    assert bed["license"] == "CC-BY-NC-4.0" and bed["seed"] == seed
    assert bed["info"]["prompt"] == "calm corporate ambient, soft piano"
    windows = bed["info"]["pieces"]
    assert len(windows) == windows_needed(seconds, 3.0, 1.0) >= 3
    assert [w["seed"] for w in windows] == [seed + k for k in range(len(windows))]
    assert bed["info"]["method"].startswith(f"{len(windows)} windows continued, ")
    assert bed["info"]["seconds"] == whole_steps(seconds)   # compose cuts it at the end
    samples, rate = read_wav(out / "test-sop" / bed["path"], mono=False)
    assert rate == SAMPLE_RATE and samples.shape[1] == 2
    video = ffprobe(out / "test-sop" / "en" / "video.mp4")
    assert float(video["format"]["duration"]) == pytest.approx(seconds, abs=0.1)

    made = {w["path"]: (out / "test-sop" / w["path"]).stat().st_mtime_ns for w in windows}
    longer = build(pause_s=3.0)["music"]["info"]
    assert len(longer["pieces"]) > len(windows)
    assert [w["path"] for w in longer["pieces"][:len(windows)]] == list(made)
    assert {p: (out / "test-sop" / p).stat().st_mtime_ns for p in made} == made
    shorter = build(pause_s=0.5)["music"]
    assert shorter["cached"] and shorter["info"]["pieces"] == windows
