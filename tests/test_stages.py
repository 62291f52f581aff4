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
