"""`sopreel models pull | list | check | remove` through huggingface_hub's real download path,
against a local stand-in for the Hub (tests/fake_hub.py, named by HF_ENDPOINT) serving tiny
models: what is pulled and where, progress, a pinned revision, resume after a kill mid-file,
a checksum mismatch, a build that loads exactly what was pulled, and an unreachable Hub."""

from __future__ import annotations

import hashlib
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
from conftest import TINY_PROFILE, base_script, write_script
from fake_hub import FakeHub

from flows.cli import main

ROOT = Path(__file__).resolve().parent.parent
SD = "sopreel-test/tiny-sd"
MUSIC = "sopreel-test/tiny-musicgen"
LORA = "sopreel-test/brand-lora"
EXTRAS = {"README.md": b"# tiny sd\n", "sd-single-file.safetensors": b"s" * 4000,
          "unet/diffusion_pytorch_model.fp16.safetensors": b"h" * 3000}


@pytest.fixture(scope="module")
def tiny_repos(tmp_path_factory) -> dict[str, Path]:
    from tiny_diffusion import build_sd
    from tiny_musicgen import build_musicgen

    root = tmp_path_factory.mktemp("repos")
    return {SD: build_sd(root / "sd"), MUSIC: build_musicgen(root / "musicgen")}


@pytest.fixture
def fake(tiny_repos, tmp_path, monkeypatch):
    hub = FakeHub()
    hub.first = {SD: hub.push(SD, tiny_repos[SD], EXTRAS),
                 MUSIC: hub.push(MUSIC, tiny_repos[MUSIC],
                                 {"pytorch_model.bin": b"p" * 2000, "README.md": b"#"})}
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    hub.close()


def hub_profile(folder: Path, **images: Any) -> Path:
    profile = {**TINY_PROFILE,
               "images": {"backend": "diffusers", "model": SD, "steps": 2, "width": 64,
                          "height": 64, "license": "CreativeML Open RAIL-M", **images},
               "music": {"backend": "musicgen", "model": MUSIC, "license": "CC-BY-4.0",
                         "window_s": 2.0, "context_s": 0.5, "crossfade_s": 0.2,
                         "extend": "loop"}}
    path = folder / "hub.yaml"
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    return path


def run(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(tmp_path: Path, repo: str, commit: str) -> Path:
    return tmp_path / "hf-cache" / f"models--{repo.replace('/', '--')}" / "snapshots" / commit


def listed(profile: Path) -> dict[str, dict[str, Any]]:
    result = run("models", "list", profile, "--json")
    assert result.exit_code == 0, result.output
    return {row["model"]: row for row in json.loads(result.output)}


def test_pull_fetches_what_the_libraries_read_and_a_build_loads_that_commit_offline(
        fake, tmp_path, prefect_server):
    profile = hub_profile(tmp_path)
    before = listed(profile)
    assert {name: row["present"] for name, row in before.items()} == {SD: False, MUSIC: False}
    missing = run("models", "check", profile)
    assert missing.exit_code == 1
    assert f"missing: images: {SD}" in missing.output and f"music: {MUSIC}" in missing.output

    pulled = run("models", "pull", profile)
    assert pulled.exit_code == 0, pulled.output
    first = fake.first[SD]
    assert f"{SD} @ {first[:12]} (main): 10 files" in pulled.output
    assert "  [10/10] vae/diffusion_pytorch_model.safetensors" in pulled.output   # the total
    assert "licence: CreativeML Open RAIL-M (commercial use allowed)" in pulled.output
    # diffusers' components only: no single-file checkpoint, README or fp16 variant; the
    # files keep their names in the standard cache layout (refs/main names the commit).
    files = {p.relative_to(snapshot(tmp_path, SD, first)).as_posix()
             for p in snapshot(tmp_path, SD, first).rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.safetensors" in files and "model_index.json" in files
    assert not files & set(EXTRAS)
    music = {p.name for p in snapshot(tmp_path, MUSIC, fake.first[MUSIC]).rglob("*")}
    assert "model.safetensors" in music and "pytorch_model.bin" not in music
    assert (tmp_path / "hf-cache" / "models--sopreel-test--tiny-sd" / "refs" / "main"
            ).read_text() == first

    after = listed(profile)
    assert after[SD]["present"] and after[SD]["revision"] == first and after[SD]["size"] > 0
    assert after[MUSIC]["commercial"] is True and after[SD]["license"] == "CreativeML Open RAIL-M"
    assert run("models", "check", profile).exit_code == 0

    # The Hub moves on; the build still loads the pulled commit, and never asks the Hub.
    fake.push(SD, snapshot(tmp_path, SD, first), {"README.md": b"# new\n"})
    asked = len(fake.requests)
    script = write_script(tmp_path, base_script(music="calm, 90 bpm"))
    built = run("build", script, "--profile", profile, "--out", tmp_path / "out")
    assert built.exit_code == 0, built.output
    assert fake.requests[asked:] == []
    manifest = json.loads((tmp_path / "out" / "test-sop" / "manifest.json").read_text())
    still = manifest["scenes"][0]["assets"][0]
    assert still["model"] == SD and still["info"]["revision"] == first
    assert manifest["music"]["info"]["revision"] == fake.first[MUSIC]


def test_a_pinned_revision_is_pulled_and_loaded_as_pinned(fake, tmp_path):
    first = fake.first[SD]
    newer = fake.push(SD, fake_snapshot_source(fake, SD, first), {"extra.json": b"{}"})
    profile = hub_profile(tmp_path, revision=first)
    pulled = run("models", "pull", profile, "--lang", "en")
    assert pulled.exit_code == 0, pulled.output
    assert f"{SD} @ {first[:12]} ({first})" in pulled.output
    assert snapshot(tmp_path, SD, first).is_dir() and not snapshot(tmp_path, SD, newer).exists()
    assert listed(profile)[SD]["revision"] == first

    from stages.images import BACKENDS

    backend = BACKENDS.get("diffusers")(BACKENDS.get("diffusers").Options(
        model=SD, revision=first, license="CreativeML Open RAIL-M"))
    backend.load()
    assert backend._slot.source.load_from == str(snapshot(tmp_path, SD, first))


def fake_snapshot_source(fake: FakeHub, repo: str, commit: str) -> Path:
    """A folder holding one commit's files, to push them again as a new commit."""
    folder = Path(os.environ["XDG_CACHE_HOME"]) / "source" / commit
    for name, data in fake.repos[repo]["commits"][commit].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_a_pull_killed_mid_file_resumes_where_it_stopped(fake, tmp_path):
    """kill -9 while a LoRA downloads; the next pull asks for the rest with a Range request."""
    weights = os.urandom(3 * 1024 * 1024)
    lora_folder = tmp_path / "lora-src"
    lora_folder.mkdir()
    (lora_folder / "brand.safetensors").write_bytes(weights)
    fake.push(LORA, lora_folder)
    fake.slow["brand.safetensors"] = 0.05   # 64 KiB a chunk: about 2.4 s for the file
    profile = tmp_path / "lora.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": str(tmp_path / "no-such-sd-needed"),
        "license": "CreativeML Open RAIL-M"}}), encoding="utf-8")
    # The LoRA alone: a local base model is not pulled, so give the base as a local folder.
    (tmp_path / "no-such-sd-needed").mkdir()
    (tmp_path / "no-such-sd-needed" / "model_index.json").write_text("{}")
    data = yaml.safe_load(profile.read_text())
    data["images"]["lora"] = {"model": LORA, "weight_name": "brand.safetensors",
                              "license": "Apache-2.0"}
    profile.write_text(yaml.safe_dump(data), encoding="utf-8")

    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "models", "pull", str(profile)],
                              cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    blobs = tmp_path / "hf-cache" / "models--sopreel-test--brand-lora" / "blobs"
    deadline, kept = time.monotonic() + 60, 0
    while time.monotonic() < deadline and kept < 256 * 1024 and worker.poll() is None:
        kept = max((p.stat().st_size for p in blobs.glob("*.incomplete")), default=0) \
            if blobs.is_dir() else 0
        time.sleep(0.05)
    assert kept, worker.communicate()[0]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    kept = max(p.stat().st_size for p in blobs.glob("*.incomplete"))
    assert 0 < kept < len(weights)

    fake.slow.clear()
    resumed = run("models", "pull", profile)
    assert resumed.exit_code == 0, resumed.output
    ranges = [r["range"] for r in fake.requests
              if r["method"] == "GET" and r["path"].endswith("/brand.safetensors")]
    assert ranges[0] is None and ranges[-1] == f"bytes={kept}-"
    commit = fake.repos[LORA]["refs"]["main"]
    got = (snapshot(tmp_path, LORA, commit) / "brand.safetensors").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(weights).digest()
    assert "not from the Hub" in resumed.output   # the local base model is named, not pulled


def test_a_file_that_does_not_match_the_hubs_checksum_is_refused_and_not_kept(fake, tmp_path):
    fake.corrupt.add("unet/diffusion_pytorch_model.safetensors")
    profile = hub_profile(tmp_path)
    refused = run("models", "pull", profile)
    assert refused.exit_code == 2
    assert "unet/diffusion_pytorch_model.safetensors" in refused.output
    assert "sha256" in refused.output and "removed from the cache" in refused.output
    assert not (snapshot(tmp_path, SD, fake.first[SD]) /
                "unet/diffusion_pytorch_model.safetensors").exists()
    assert run("models", "check", profile).exit_code == 1


def test_an_unreachable_hub_is_said_in_one_line_within_seconds(fake, tmp_path, monkeypatch,
                                                               prefect_server):
    unknown = run("models", "pull", hub_profile(tmp_path, model="sopreel-test/no-such-model"))
    assert unknown.exit_code == 2
    assert "The Hub refused 'sopreel-test/no-such-model' at revision main" in unknown.output
    assert "Check the model id" in unknown.output

    profile = hub_profile(tmp_path)
    script = write_script(tmp_path, base_script(music=None))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # nothing listens there
    started = time.monotonic()
    built = run("build", script, "--profile", profile, "--out", tmp_path / "out")
    assert built.exit_code == 2
    error = next(line for line in built.output.splitlines() if line.startswith("Error:"))
    assert f"The image model '{SD}' is not on this machine" in error
    assert "Hugging Face Hub (127.0.0.1:9) cannot be reached" in error
    assert "sopreel models pull" in error and "point `model:` at a local folder" in error
    assert time.monotonic() - started < 30   # a Prefect flow run included; no retry loop

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pulled = run("models", "pull", profile)
    assert pulled.exit_code == 2 and "is not asked (HF_HUB_OFFLINE is set)" in pulled.output
    assert "Traceback" not in pulled.output


def test_remove_frees_the_space_but_not_while_a_build_holds_the_model(fake, tmp_path):
    profile = hub_profile(tmp_path)
    assert run("models", "pull", profile).exit_code == 0

    # A model a build has loaded is marked in use until the stage lets it go.
    from stages import hub
    from stages.images import BACKENDS

    backend = BACKENDS.get("diffusers")(BACKENDS.get("diffusers").Options(
        model=SD, license="CreativeML Open RAIL-M"))
    backend.load()
    backend._slot.get(lambda source: object())
    assert hub.users_of(SD) == [os.getpid()]
    backend.close()
    assert hub.users_of(SD) == []

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom stages import hub\n"
         f"with hub.in_use(['{SD}']):\n    print('holding', flush=True)\n    time.sleep(60)\n"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        refused = run("models", "remove", SD)
        assert refused.exit_code == 2
        assert f"in use by a running build (process {holder.pid})" in refused.output
    finally:
        holder.kill()
        holder.wait()
    removed = run("models", "remove", SD)
    assert removed.exit_code == 0, removed.output
    assert "KB freed" in removed.output
    assert not (tmp_path / "hf-cache" / "models--sopreel-test--tiny-sd").exists()
    assert listed(profile)[SD]["present"] is False
