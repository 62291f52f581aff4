"""sopreel against a real Prefect server on loopback, as a team runs it.

One server for the module (`prefect server start`, its own database). `sopreel serve` serves
the deployments and a build is started through the API; a build is killed with SIGKILL
half-way and started again; a build fans out over a dask.distributed LocalCluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_PROFILE, base_script, ffprobe, write_script

from stages.assets import TEMP_PREFIX

SOPREEL = str(Path(sys.executable).with_name("sopreel"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A Prefect server on loopback, and the environment a sopreel process needs to use it."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_UI_ENABLED": "false"}
    log = (home / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                                "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    import httpx

    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, (home / "server.log").read_text()
        assert time.monotonic() < deadline, "the Prefect server did not start"
        time.sleep(0.5)
    yield env
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def api(env: dict[str, str]):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(env["PREFECT_API_URL"])


def tiny_profile(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    return path


def at_a_terminal() -> None:
    """In the child, before exec: Ctrl-C handled as at a terminal. A suite started in the
    background by a shell without job control (CI scripts, `cmd &`) ignores SIGINT, and an
    ignored signal stays ignored in every program it starts: `sopreel serve` would never hear
    the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(serving: subprocess.Popen, patience: float = 180) -> str:
    """Ctrl-C to `sopreel serve` and its output once it has stopped. A serve that has not
    stopped within `patience` seconds (a loaded machine shuts a server down slowly, never that
    slowly) is killed with everything it started, and the test fails saying so."""
    os.killpg(serving.pid, signal.SIGINT)
    try:
        return serving.communicate(timeout=patience)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(serving.pid, signal.SIGKILL)
        serving.communicate()
        raise AssertionError(f"sopreel serve did not stop within {patience:g} s of Ctrl-C") \
            from None


def wait_for(condition, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_runs_a_build_started_through_the_api(server, tmp_path):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.exceptions import ObjectNotFound

    library = tmp_path / "library"
    script = write_script(library, base_script())
    profile = tiny_profile(tmp_path)
    out = tmp_path / "out"
    serving = subprocess.Popen(
        [SOPREEL, "serve", "--cron", "30 1 * * 1-5", "--timezone", "Asia/Bangkok",
         "--scripts", str(library), "--profile", str(profile), "--out", str(out)],
        env=server, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=at_a_terminal)
    try:
        with api(server) as client:
            def deployment(name: str):
                try:
                    return client.read_deployment_by_name(name)
                except ObjectNotFound:
                    return None

            names = ["build-video/build", "dub-batch/dub", "build-all/nightly",
                     "review-translation/review", "import-sop/import", "review-import/review",
                     "package-video/package"]
            # serve registers them one after another
            wait_for(lambda: all(deployment(name) for name in names), 120, "the deployments")
            build = deployment(names[0])
            found = {name: deployment(name) for name in names[1:]}
            # Parameters are typed, so the UI renders them as a form.
            properties = build.parameter_openapi_schema["properties"]
            assert properties["script"]["type"] == "string"
            assert properties["profile"]["default"] == "draft"
            assert {"type": "array", "items": {"type": "string"}} in \
                properties["languages"]["anyOf"]
            assert properties["out"]["default"] == "outputs"
            assert "Path of the script YAML" in properties["script"]["description"]
            assert build.parameter_openapi_schema["required"] == ["script"]
            nightly = found["build-all/nightly"]
            assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == \
                [("30 1 * * 1-5", "Asia/Bangkok")]
            assert nightly.parameters == {"folder": str(library), "profile": str(profile),
                                          "out": str(out)}
            assert set(found["dub-batch/dub"].parameter_openapi_schema["required"]) == \
                {"scripts", "languages"}

            run = client.create_flow_run_from_deployment(build.id, parameters={
                "script": str(script), "profile": str(profile), "out": str(out)})
            final = wait_for(lambda: (r := client.read_flow_run(run.id)).state.is_final() and r,
                             240, "the build run")
            assert final.state.is_completed(), final.state.message
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    finally:
        output = interrupt(serving)
    keys = {artifact.key for artifact in artifacts}
    assert {"test-sop-summary", "test-sop-assets", "test-sop-en-video",
            "test-sop-manifest", "test-sop-images-progress"} <= keys
    video = out / "test-sop" / "en" / "video.mp4"
    assert float(ffprobe(video)["format"]["duration"]) > 3
    assert f"Prefect UI: {server['PREFECT_API_URL'].removesuffix('/api')}" in output


def long_script(folder: Path) -> Path:
    """Eight scenes in two languages: long enough to be killed half-way."""
    scenes = [{"id": f"step-{i}", "narration": f"Step {i}. Check the guard, then the "
               f"interlock, then sign the sheet number {i}.", "caption": f"Step {i}",
               "visual": f"a machine guard, view {i}", "motion": "push in"} for i in range(8)]
    vi = {f"step-{i}": {"narration": f"Bước {i}. Kiểm tra tấm chắn rồi khóa liên động.",
                        "caption": f"Bước {i}"} for i in range(8)}
    return write_script(folder, base_script(id="guards", scenes=scenes, languages=["en", "vi"],
                                            translations={"vi": {"title": "Che chắn",
                                                                 "scenes": vi}}))


def complete_assets(out: Path) -> dict[Path, int]:
    """Every asset that is complete (its metadata written), checked against its sha256, with
    its modification time."""
    found = {}
    for meta in out.rglob("assets/*/*.json"):
        if meta.name.startswith(TEMP_PREFIX):   # being written when the build was killed
            continue
        media = meta.with_name(meta.name.removesuffix(".json"))
        recorded = json.loads(meta.read_text(encoding="utf-8"))["sha256"]
        assert hashlib.sha256(media.read_bytes()).hexdigest() == recorded, media
        found[media] = media.stat().st_mtime_ns
    return found


def build_command(script: Path, profile: Path, out: Path) -> list[str]:
    return [SOPREEL, "build", str(script), "--profile", str(profile), "--out", str(out)]


def test_a_build_killed_half_way_resumes_without_redoing_anything(server, tmp_path):
    script, profile = long_script(tmp_path / "scripts"), tiny_profile(tmp_path)
    out = tmp_path / "out"
    build = subprocess.Popen(build_command(script, profile, out), env=server,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    # Kill it (and its ffmpeg) once the clips are being made: images and narration are done.
    wait_for(lambda: [p for p in out.glob("guards/assets/animate/*.json")
                      if not p.name.startswith(TEMP_PREFIX)], 240, "the first clip",
             interval=0.02)
    os.killpg(build.pid, signal.SIGKILL)
    build.wait()

    finished = complete_assets(out)
    stages = {path.parent.name for path in finished}
    assert {"images", "narrate", "animate"} <= stages
    assert len([p for p in finished if p.parent.name == "animate"]) < 8   # really half-way
    assert not (out / "guards" / "manifest.json").exists()
    assert not list(out.rglob("video.mp4"))
    # Whatever was being written sits under a temporary name, never at a final path.
    assert all(p.name.startswith(".tmp-") for p in out.rglob("*") if p.is_file()
               and p.suffix in (".png", ".wav", ".mp4") and p not in finished)

    done = subprocess.run(build_command(script, profile, out), env=server, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = complete_assets(out)
    assert {path: after[path] for path in finished} == finished   # nothing finished was redone
    manifest = json.loads((out / "guards" / "manifest.json").read_text(encoding="utf-8"))
    reused = {entry["path"] for scene in manifest["scenes"] for entry in scene["assets"]
              if entry["cached"]} | {entry["path"] for entry in manifest["notices"].values()
                                     if entry["cached"]}
    assert reused == {str(p.relative_to(out / "guards")) for p in finished
                      if p.parent.name != "music"}

    # The same build, never interrupted, makes byte-identical videos and subtitles.
    clean = tmp_path / "clean"
    done = subprocess.run(build_command(script, profile, clean), env=server,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for lang in ("en", "vi"):
        for name in ("video.mp4", "subtitles.srt", "subtitles.vtt"):
            resumed = (out / "guards" / lang / name).read_bytes()
            assert resumed == (clean / "guards" / lang / name).read_bytes(), (lang, name)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_diffusion import build_sd

    return build_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def test_a_build_fans_out_over_a_dask_cluster(server, tmp_path, tiny_sd):
    """Two worker processes, one with a GPU: scene tasks spread over both, and the model
    stage's tasks (images from a diffusers model) go to the worker with the GPU."""
    from distributed import LocalCluster
    from distributed.diagnostics.task_stream import TaskStreamPlugin

    profile = tmp_path / "sd.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": str(tiny_sd), "steps": 2, "width": 64, "height": 64,
        "license": "CreativeML Open RAIL-M"}}), encoding="utf-8")
    script = long_script(tmp_path / "scripts")
    out = tmp_path / "out"
    worker_env = {"PREFECT_API_URL": server["PREFECT_API_URL"],
                  "PREFECT_HOME": server["PREFECT_HOME"]}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, resources={"GPU": 1},
                      env=worker_env, dashboard_address=None) as cluster:
        # A second worker process like the first, but without a GPU.
        spec = next(iter(cluster.new_worker_spec().values()))
        spec["options"] = {k: v for k, v in spec["options"].items() if k != "resources"}
        cluster.worker_spec["cpu-only"] = spec
        cluster.sync(cluster._correct_state)
        cluster.wait_for_workers(2, timeout=120)
        gpu_workers = {address for address, worker in cluster.scheduler.workers.items()
                       if worker.resources.get("GPU")}
        stream = TaskStreamPlugin(cluster.scheduler)
        cluster.scheduler.add_plugin(stream)
        done = subprocess.run(build_command(script, profile, out), capture_output=True,
                              text=True, timeout=600, env={
                                  **server, "SOPREEL_DASK_ADDRESS": cluster.scheduler_address})
        records = list(stream.buffer)
    assert done.returncode == 0, done.stderr
    assert len(gpu_workers) == 1

    def workers_of(prefix: str) -> list[str]:
        return [record["worker"] for record in records if str(record["key"]).startswith(prefix)]

    images, narrations = workers_of("image_task"), workers_of("narrate_task")
    assert len(images) == 8 and len(narrations) == 16 + 2   # and each language's AI notice
    assert set(images) == gpu_workers                     # the model stage asked for a GPU
    assert len(set(narrations) | set(workers_of("compose_task"))) == 2   # the rest spread
    manifest = json.loads((out / "guards" / "manifest.json").read_text(encoding="utf-8"))
    assert {a["backend"] for s in manifest["scenes"] for a in s["assets"]
            if a["stage"] == "images"} == {"diffusers"}
    for lang in ("en", "vi"):
        assert float(ffprobe(out / "guards" / lang / "video.mp4")["format"]["duration"]) > 20


def test_serve_without_a_server_starts_one_with_the_deployments_and_stops_it(tmp_path):
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    serving = subprocess.Popen([SOPREEL, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=at_a_terminal)
    url = f"http://127.0.0.1:{port}/api"

    def served() -> list[str]:
        try:
            found = httpx.post(f"{url}/deployments/filter", json={}, timeout=2).json()
        except httpx.HTTPError:
            return []
        return sorted(deployment["name"] for deployment in found)

    try:
        assert wait_for(lambda: len(served()) == 7 and served(), 180, "the deployments") == \
            ["build", "dub", "import", "nightly", "package", "review", "review"]
    finally:
        output = interrupt(serving)
    assert f"Prefect UI: http://127.0.0.1:{port}" in output
    assert "temporary server" not in output
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_the_cli_starts_one_prefect_server_in_the_background_and_reuses_it(tmp_path):
    """No PREFECT_API_URL: the first build starts a local server, detached, in PREFECT_HOME;
    the next build reuses it (no second start, the same process), both runs are in its API
    for the UI, and `sopreel server stop` ends it."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), SOPREEL_SERVER_PORT=str(port))
    script = write_script(tmp_path / "sop", base_script(music=None))
    command = build_command(script, tiny_profile(tmp_path), tmp_path / "out")

    def sopreel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SOPREEL, *args], env=env, capture_output=True, text=True)

    try:
        first = subprocess.run(command, env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        assert "Starting a Prefect server in the background" in first.stderr
        status = sopreel("server", "status")
        assert status.returncode == 0 and f"http://127.0.0.1:{port}/api" in status.stdout
        pid = int(status.stdout.split("(pid ")[1].split(")")[0])

        second = subprocess.run(command, env=env, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert "Starting a Prefect server" not in second.stderr
        assert f"(pid {pid})" in sopreel("server", "status").stdout
        runs = SyncPrefectClient(f"http://127.0.0.1:{port}/api").read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["build-video"])))
        assert len(runs) == 2 and all(run.state.is_completed() for run in runs)
    finally:
        stopped = sopreel("server", "stop")
    assert stopped.returncode == 0 and f"(pid {pid})" in stopped.stdout
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, "the server to end")
    assert sopreel("server", "status").returncode == 1
