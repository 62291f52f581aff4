"""Running builds under Prefect: artifacts, retries, time limits, the GPU lock, build-all.

Flows run under the session's `prefect_test_harness` server; operations settings come from a
test's own operations.yaml (SOPREEL_OPERATIONS), as a site would set them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_PROFILE, base_script, write_script

from flows.settings import load_operations
from stages.errors import DataFileError, SopreelError


def use_operations(monkeypatch, folder: Path, **settings: Any) -> Path:
    path = folder / "operations.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    monkeypatch.setenv("SOPREEL_OPERATIONS", str(path))
    return path


def artifacts_of(flow_run_id) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


def flow_run_of(flow_run_id) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def task_runs_of(flow_run_id) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))


def test_the_shipped_operations_file_is_valid_and_mistakes_name_their_line(tmp_path):
    shipped = load_operations()
    assert shipped.policy("images").retries == 2
    assert shipped.policy("images").task_options()["retry_delay_seconds"] == [30, 120]
    assert shipped.nightly.cron == "0 2 * * *" and shipped.gpu.slots == 1
    bad = tmp_path / "operations.yaml"
    bad.write_text("stages:\n  images: {retries: 2}\n  narate: {retries: 1}\n"
                   "gpu:\n  slots: many\n", encoding="utf-8")
    with pytest.raises(DataFileError) as caught:
        load_operations(bad)
    message = str(caught.value)
    assert f"{bad}:3: stages.narate: unknown key; did you mean 'narrate'?" in message
    assert f"{bad}:5: gpu.slots:" in message


def tiny_build(tmp_path: Path, **script: Any) -> tuple[Path, Path]:
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    return write_script(tmp_path / "scripts", base_script(**script)), profile


@pytest.mark.usefixtures("prefect_server")
def test_a_run_publishes_a_summary_an_asset_table_links_and_progress(tmp_path, monkeypatch):
    from flows.build import build_video

    use_operations(monkeypatch, tmp_path, outputs_url="https://files.example.com/sop")
    script, profile = tiny_build(tmp_path, languages=["en", "vi"], translations={"vi": {
        "scenes": {"isolate": {"narration": "Tắt băng tải ở cầu dao chính."},
                   "lock": {"narration": "Khóa bằng ổ khóa của bạn."}}}})
    out = tmp_path / "out"
    runs = []
    for _ in range(2):
        state = build_video(script=str(script), profile=str(profile), out=str(out),
                            return_state=True)
        assert state.is_completed(), state.message
        runs.append(artifacts_of(state.state_details.flow_run_id))

    first = {artifact.key: artifact for artifact in runs[0]}
    summary = first["test-sop-summary"].data
    en_row = "| en | [en/video.mp4](https://files.example.com/sop/test-sop/en/video.mp4) |"
    assert en_row in summary
    assert "| vi |" in summary and "LUFS" in summary
    assert "Voice `stock` for use `training`: not required" in summary
    assert "Disclosure" in summary and "Synthetic media" in summary

    table = first["test-sop-assets"]
    rows = yaml.safe_load(table.data) if isinstance(table.data, str) else table.data
    # 2 images + 2 clips + 2 scenes x 2 languages of narration + the music bed
    assert len(rows) == 9
    assert {row["state"] for row in rows} == {"new"}
    assert {row["stage"] for row in rows} == {"images", "animate", "narrate", "music"}

    # Prefect stores a link artifact as a markdown link.
    vi_link = "[test-sop vi video](https://files.example.com/sop/test-sop/vi/video.mp4)"
    manifest_link = "[test-sop manifest](https://files.example.com/sop/test-sop/manifest.json)"
    assert first["test-sop-vi-video"].data == vi_link
    assert first["test-sop-manifest"].data == manifest_link

    progress = {a.key: float(a.data) for a in runs[0] if a.type == "progress"}
    expected = {f"test-sop-{stage}-progress": 100.0
                for stage in ("images", "narrate", "animate", "music")}
    assert progress == expected

    again = {a.key: a for a in runs[1]}["test-sop-assets"]
    rows = yaml.safe_load(again.data) if isinstance(again.data, str) else again.data
    assert len(rows) == 9 and {row["state"] for row in rows} == {"reused"}


@pytest.mark.usefixtures("prefect_server")
def test_a_stage_over_its_time_limit_fails_the_build_by_name(tmp_path, monkeypatch):
    from flows.build import build_video

    settings = use_operations(monkeypatch, tmp_path,
                              stages={"compose": {"timeout_s": 0.3}})
    script, profile = tiny_build(tmp_path)
    out = tmp_path / "out"
    started = time.monotonic()
    with pytest.raises(SopreelError, match=r"compose: one item took longer than its limit of "
                                           rf"0\.3 s \(stages\.compose\.timeout_s in {settings}"):
        build_video(script=str(script), profile=str(profile), out=str(out))
    assert time.monotonic() - started < 60
    assert not (out / "test-sop" / "en" / "video.mp4").exists()
    assert not list(out.rglob("video.mp4")) and not list(out.rglob(".tmp-*"))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tiny_diffusion import build_sd

    return build_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def sd_profile(tmp_path: Path, model: Path, **images: Any) -> Path:
    path = tmp_path / "sd.yaml"
    path.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": str(model), "steps": 2, "width": 64, "height": 64,
        "license": "CreativeML Open RAIL-M", **images}}), encoding="utf-8")
    return path


def run_out_of_memory_once(monkeypatch, seen: list[str]) -> None:
    """The pipeline runs out of GPU memory whenever it is loaded without offloading."""
    import torch

    from stages.images.diffusers import DiffusersBackend

    real = DiffusersBackend._pipeline

    def pipeline(self):
        seen.append(self.options.offload)
        if self.options.offload == "none":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self)

    monkeypatch.setattr(DiffusersBackend, "_pipeline", pipeline)


@pytest.mark.usefixtures("prefect_server")
def test_out_of_gpu_memory_is_retried_with_offloading(tmp_path, monkeypatch, tiny_sd):
    from flows.build import build_video

    use_operations(monkeypatch, tmp_path, stages={"images": {"retries": 2,
                                                             "retry_delays_s": [0]}})
    script, _ = tiny_build(tmp_path, music=None)
    out = tmp_path / "out"
    seen: list[str] = []
    run_out_of_memory_once(monkeypatch, seen)
    state = build_video(script=str(script), profile=str(sd_profile(tmp_path, tiny_sd)),
                        out=str(out), return_state=True)
    assert state.is_completed(), state.message
    # The images that ran out of memory (one, or both if they ran side by side) were retried
    # once, all with the pipeline loaded again with model offload.
    failed = seen.count("none")
    assert 1 <= failed <= 2 and seen == ["none"] * failed + ["model"] * (len(seen) - failed)
    assert len(seen) > failed
    images = [t for t in task_runs_of(state.state_details.flow_run_id)
              if t.name.startswith("image")]
    assert len(images) == 2
    assert sorted(t.run_count for t in images) == sorted([1] * (2 - failed) + [2] * failed)

    # Offloading is not part of what an image is: a build without the fault reuses them.
    monkeypatch.undo()
    use_operations(monkeypatch, tmp_path, stages={})
    result = build_video(script=str(script), profile=str(sd_profile(tmp_path, tiny_sd)),
                         out=str(out))
    from stages.manifest import read_manifest

    manifest = read_manifest(Path(result["manifest"]))
    assert manifest is not None
    reused = [a.cached for s in manifest.scenes for a in s.assets if a.stage == "images"]
    assert len(reused) == 2 and all(reused)


@pytest.mark.usefixtures("prefect_server")
def test_out_of_memory_with_nothing_lighter_left_is_a_clear_error(tmp_path, monkeypatch,
                                                                   tiny_sd):
    from flows.build import build_video
    from stages.images.diffusers import DiffusersBackend

    use_operations(monkeypatch, tmp_path, stages={"images": {"retries": 2,
                                                             "retry_delays_s": [0]}})
    import torch

    calls = []

    def pipeline(self):
        calls.append(self.options.offload)
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(DiffusersBackend, "_pipeline", pipeline)
    script, _ = tiny_build(tmp_path, music=None)
    with pytest.raises(SopreelError, match="images ran out of GPU memory, with as much "
                                           "offloading as its backend has"):
        build_video(script=str(script), out=str(tmp_path / "out"),
                    profile=str(sd_profile(tmp_path, tiny_sd, offload="sequential")))
    assert set(calls) == {"sequential"}


@pytest.mark.usefixtures("prefect_server")
def test_a_model_stage_waits_for_the_gpu_lock(tmp_path, monkeypatch, tiny_sd):
    """While another run holds the machine's GPU slot, a model stage does not start: the
    API's timestamps show the build running before the slot was freed, and every image task
    starting only after."""
    from datetime import UTC, datetime, timedelta

    from prefect.concurrency.sync import concurrency

    from flows.build import build_video
    from flows.runners import ensure_limit

    use_operations(monkeypatch, tmp_path, gpu={"limit": "test-gpu-{host}", "slots": 1})
    gpu = load_operations().gpu
    ensure_limit(gpu)
    script, _ = tiny_build(tmp_path, music=None)
    out = tmp_path / "out"
    outcome: dict[str, Any] = {}

    def build() -> None:
        try:
            outcome["state"] = build_video(script=str(script), out=str(out),
                                           profile=str(sd_profile(tmp_path, tiny_sd)),
                                           return_state=True)
        except BaseException as exc:   # reported to the test below
            outcome["error"] = exc

    with concurrency(gpu.name, occupy=1, strict=True):
        worker = threading.Thread(target=build)
        worker.start()
        time.sleep(8)
        released = datetime.now(UTC)
    worker.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")
    state = outcome["state"]
    assert state.is_completed(), state
    flow_run = flow_run_of(state.state_details.flow_run_id)
    images = [run for run in task_runs_of(flow_run.id) if run.name.startswith("image-")]
    assert len(images) == 2
    assert flow_run.start_time < released - timedelta(seconds=3)   # it was running, waiting
    assert all(run.start_time >= released for run in images), [r.start_time for r in images]
    assert len(list((out / "test-sop" / "assets" / "images").glob("*.png"))) == 2


@pytest.mark.usefixtures("prefect_server")
def test_build_all_builds_every_script_and_lists_the_ones_it_could_not(tmp_path, monkeypatch):
    from flows.build import build_all

    use_operations(monkeypatch, tmp_path)
    folder = tmp_path / "library"
    write_script(folder / "warehouse", base_script(id="forklift"), "forklift.yaml")
    write_script(folder, base_script(id="lockout"), "lockout.yaml")
    write_script(folder, base_script(id="broken", voice="nobody"), "broken.yaml")
    (folder / "styles.yaml").write_text("colour: red\n", encoding="utf-8")   # not a script
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(TINY_PROFILE), encoding="utf-8")
    out = tmp_path / "out"

    for _ in range(2):
        state = build_all(folder=str(folder), profile=str(profile), out=str(out),
                          return_state=True)
        assert state.is_failed()
        with pytest.raises(SopreelError) as caught:
            state.result()
        message = str(caught.value)
        assert message.startswith(f"1 of 3 scripts under {folder} were not built:")
        assert "broken.yaml" in message and "nobody" in message
        problems = {a.key: a.data for a in artifacts_of(state.state_details.flow_run_id)}
        assert "broken.yaml" in problems["build-problems"]
    from stages.manifest import read_manifest

    for script_id in ("forklift", "lockout"):
        manifest = read_manifest(out / script_id / "manifest.json")
        assert manifest is not None and (out / script_id / "en" / "video.mp4").is_file()
        # The second night found everything in the cache.
        cached = [a.cached for s in manifest.scenes for a in s.assets]
        assert len(cached) == 6 and all(cached)
        assert manifest.outputs["en"].cached
    assert not (out / "broken").exists()


class _Fragile:
    """A camera-move backend that breaks, as a model library would, on a 'shatter' motion."""

    @staticmethod
    def make() -> type:
        from stages.animate.kenburns import KenBurnsBackend

        class Fragile(KenBurnsBackend):
            name = "fragile"

            def animate(self, request, out, on_progress=None):
                if request.motion == "shatter":
                    raise ValueError("tensor shapes do not match: (1, 16) and (1, 9)")
                return super().animate(request, out, on_progress)
        return Fragile


@pytest.mark.usefixtures("prefect_server")
def test_build_all_finishes_the_others_when_one_script_fails_inside_a_stage(
        tmp_path, monkeypatch):
    """A script whose clip fails half-way through the build (after its images and narration)
    is listed in the build-problems artifact; every other script is built to the end."""
    from flows.build import build_all
    from stages import animate

    monkeypatch.setitem(animate.BACKENDS._targets, "fragile", _Fragile.make())
    use_operations(monkeypatch, tmp_path)
    folder = tmp_path / "library"
    write_script(folder, base_script(id="forklift"), "forklift.yaml")
    broken = base_script(id="shatters")
    broken["scenes"][1]["motion"] = "shatter"
    write_script(folder, broken, "shatters.yaml")
    write_script(folder, base_script(id="lockout"), "lockout.yaml")
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "animate": {
        **TINY_PROFILE["animate"], "backend": "fragile"}}), encoding="utf-8")
    out = tmp_path / "out"

    state = build_all(folder=str(folder), profile=str(profile), out=str(out), return_state=True)
    assert state.is_failed()
    with pytest.raises(SopreelError) as caught:
        state.result()
    message = str(caught.value)
    assert message.startswith(f"1 of 3 scripts under {folder} were not built:")
    assert ("shatters: animate (scene 'lock', backend fragile) failed: ValueError raised in "
            "test_operations: tensor shapes do not match: (1, 16) and (1, 9)") in message
    problems = {a.key: a.data for a in artifacts_of(state.state_details.flow_run_id)}
    assert "shatters: animate (scene 'lock'" in problems["build-problems"]
    for script_id in ("forklift", "lockout"):
        assert (out / script_id / "en" / "video.mp4").is_file()
        assert (out / script_id / "manifest.json").is_file()
    assert not (out / "shatters" / "en").exists()
    assert not (out / "shatters" / "manifest.json").exists()
    assert list((out / "shatters" / "logs").glob("*-animate-lock.log"))
