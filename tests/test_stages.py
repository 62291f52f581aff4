"""Stage pieces on their own: camera moves, atomic files, the asset store, backend lifetimes."""

from __future__ import annotations

import os
import time

import pytest

from stages.animate.kenburns import choose_move
from stages.assets import AssetStore, atomic_path
from stages.errors import UnknownNameError
from stages.registry import Backend, BackendOptions, LoadedBackends, Registry


@pytest.mark.parametrize(("hint", "move"), [
    ("slow push-in", "push-in"), ("Zoom out to reveal the line", "pull-out"),
    ("camera pans left across the belt", "pan-left"), ("pan right", "pan-right"),
    ("tilt up the mast", "tilt-up"), ("static shot", "static"), (None, "push-in"),
    ("something poetic", "push-in")])
def test_motion_hints(hint, move):
    assert choose_move(hint) == move


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "video.mp4"
    with pytest.raises(RuntimeError), atomic_path(final) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as temp:
        assert temp.suffix == ".mp4" and temp.parent == tmp_path
        temp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [final]


def test_asset_store_keys_by_content_not_name(tmp_path):
    store = AssetStore(tmp_path / "assets")
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("same")
    second.write_text("same")
    calls = []

    def make(out):
        calls.append(out)
        out.write_text("made")
        return {"n": len(calls)}

    a = store.produce("images", {"input": first}, ".txt", make)
    b = store.produce("images", {"input": second}, ".txt", make)
    assert (a.cached, b.cached, len(calls)) == (False, True, 1)
    assert b.info == {"n": 1} and a.path == b.path
    second.write_text("different")
    assert store.produce("images", {"input": second}, ".txt", make).cached is False


def test_asset_store_sweeps_only_old_temporary_files(tmp_path):
    store = AssetStore(tmp_path)
    (tmp_path / "images").mkdir()
    old, fresh = tmp_path / "images" / ".tmp-1-x.png", tmp_path / "images" / ".tmp-2-y.png"
    old.write_text("x")
    fresh.write_text("y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.sweep() == 1 and not old.exists() and fresh.exists()


class _Counting(Backend):
    name = "counting"
    loads = 0
    closes = 0

    def load(self):
        type(self).loads += 1

    def close(self):
        type(self).closes += 1


def test_backends_load_once_and_release():
    registry: Registry[Backend] = Registry("images", Backend)
    registry.register("counting", _Counting)
    loaded = LoadedBackends()
    first = loaded.get(registry, "counting", BackendOptions())
    assert loaded.get(registry, "counting", BackendOptions()) is first
    assert _Counting.loads == 1
    loaded.release("images")
    assert _Counting.closes == 1
    with pytest.raises(UnknownNameError, match=r"Unknown images backend 'countng'\. Did you "
                                               r"mean 'counting'"):
        registry.get("countng")


def test_narration_upsampled_to_48_khz_leaves_no_image_above_the_source_band():
    """A 10 kHz tone at 22.05 kHz (a synthesiser's rate): interpolation would mirror it to
    12.05 kHz; the anti-imaging filter keeps everything above 12 kHz 60 dB below the tone."""
    import numpy as np

    from stages.media import SAMPLE_RATE
    from stages.narrate import resample

    rate = 22_050
    tone = (0.5 * np.sin(2 * np.pi * 10_000 * np.arange(2 * rate) / rate)).astype(np.float32)
    out = resample(tone, rate)
    assert len(out) == 2 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    freqs = np.fft.rfftfreq(len(out), 1 / SAMPLE_RATE)
    peak = spectrum.max()
    assert abs(freqs[spectrum.argmax()] - 10_000) < 2
    above = spectrum[freqs > 12_000].max()
    assert 20 * np.log10(above / peak) < -60


def test_ffmpeg_writing_a_flood_of_errors_finishes(tmp_path):
    """A damaged MP3 makes ffmpeg write about 260 kB of decoding errors: far more than a pipe
    holds. run_ffmpeg must keep reading them, or ffmpeg and the build wait on each other."""
    import random
    import subprocess
    import threading

    from stages.media import media_input, run_ffmpeg

    clean, damaged = tmp_path / "clean.mp3", tmp_path / "damaged.mp3"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=d=120", "-c:a", "libmp3lame", "-b:a", "32k", str(clean)], check=True)
    data, noise = bytearray(clean.read_bytes()), random.Random(0)
    for at in range(2000, len(data), 200):
        data[at:at + 40] = bytes(noise.randrange(256) for _ in range(40))
    damaged.write_bytes(bytes(data))
    outcome: list[BaseException | None] = []

    def decode() -> None:
        try:
            run_ffmpeg(["-i", media_input(damaged), "-f", "null", "-"], what="decoding",
                       duration_s=120, on_progress=lambda _: None)
            outcome.append(None)
        except BaseException as exc:   # reported below
            outcome.append(exc)

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    worker.join(timeout=120)
    if worker.is_alive():
        subprocess.run(["pkill", "-f", str(damaged)], check=False)
    assert outcome == [None], "ffmpeg and run_ffmpeg stopped, waiting on each other"
