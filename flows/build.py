"""The `build-video` flow: a script becomes a finished video per language.

Stage-major: every scene's image, then every clip, then every narration, then the music, then
one compose per language, so a stage's model is loaded once per build and released before the
next stage's. Caching is by content (`stages.assets`), not by Prefect: a task whose asset exists
returns it at once, whatever the run, server or machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from flows.progress import PROGRESS
from stages.assets import Asset
from stages.compose import ComposeResult
from stages.manifest import write_manifest
from stages.plan import (
    BuildPlan,
    ScenePlan,
    make_clip,
    make_image,
    make_music,
    make_narration,
    make_video,
    plan_build,
)
from stages.profile import load_profile
from stages.registry import LoadedBackends
from stages.report import build_manifest
from stages.script import load_script
from stages.voices import DEFAULT_USE

BACKENDS = LoadedBackends()   # models loaded once per process, shared by a stage's tasks


@task(name="image", cache_policy=NO_CACHE, task_run_name="image-{scene.id}")
def image_task(plan: BuildPlan, scene: ScenePlan) -> Asset:
    asset = make_image(plan, scene, BACKENDS)
    PROGRESS.advance("images")
    return asset


@task(name="animate", cache_policy=NO_CACHE, task_run_name="animate-{scene.id}")
def animate_task(plan: BuildPlan, scene: ScenePlan, image: Asset) -> Asset:
    asset = make_clip(plan, scene, image, BACKENDS)
    PROGRESS.advance("animate")
    return asset


@task(name="narrate", cache_policy=NO_CACHE, task_run_name="narrate-{scene.id}-{language}")
def narrate_task(plan: BuildPlan, scene: ScenePlan, language: str) -> Asset:
    asset = make_narration(plan, scene, language, BACKENDS)
    PROGRESS.advance("narrate")
    return asset


@task(name="music", cache_policy=NO_CACHE)
def music_task(plan: BuildPlan) -> Asset | None:
    return make_music(plan, BACKENDS)


@task(name="compose", cache_policy=NO_CACHE, task_run_name="compose-{language}")
def compose_task(plan: BuildPlan, language: str, clips: list[Asset], narrations: list[Asset],
                 bed: Asset | None) -> ComposeResult:
    key = f"compose {language}"
    PROGRESS.begin(key, f"compose {language}", 1.0)
    result = make_video(plan, language, clips, narrations, bed,
                        on_progress=lambda done: PROGRESS.fraction(key, done))
    PROGRESS.fraction(key, 1.0)
    return result


def _stage(name: str, submit: Callable[[], list[PrefectFuture]],
           total: int | None = None) -> list[Any]:
    """Run a stage's tasks, wait for them, then free the stage's backends before the next.

    `total` starts the stage's progress bar, which its tasks advance.
    """
    if total is not None:
        PROGRESS.begin(name, name, total)
    started = time.perf_counter()
    results = [future.result() for future in submit()]
    BACKENDS.release(name)
    reused = sum(bool(getattr(result, "cached", False)) for result in results)
    get_run_logger().info("%s: %d done (%d reused) in %.1f s", name, len(results), reused,
                          time.perf_counter() - started)
    return results


@flow(name="build-video", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def build_video(script: str, profile: str = "draft", languages: list[str] | None = None,
                out: str = "outputs", voices_dir: str | None = None,
                use: str = DEFAULT_USE) -> dict[str, Any]:
    """Build a training video per language from a sopreel script (see DESIGN.md).

    `use` is what the video is for; a cloned voice's recorded consent must cover it.
    """
    logger = get_run_logger()
    loaded = load_script(script, only_languages=languages, voices=voices_dir)
    plan = plan_build(loaded, load_profile(profile), Path(out).absolute(), use=use,
                      voices_folder=voices_dir)
    plan.store.sweep()
    scenes = plan.scenes
    logger.info("Building %s: %d scenes in %s with the %s profile", loaded.script.id,
                len(scenes), ", ".join(plan.languages), plan.profile.name)

    stills = _stage("images", lambda: [image_task.submit(plan, s) for s in scenes], len(scenes))
    clips = _stage("animate", lambda: [animate_task.submit(plan, s, still)
                                       for s, still in zip(scenes, stills, strict=True)],
                   len(scenes))
    voices = _stage("narrate", lambda: [narrate_task.submit(plan, s, lang)
                                        for lang in plan.languages for s in scenes],
                    len(scenes) * len(plan.languages))
    narrations = {lang: voices[i * len(scenes):(i + 1) * len(scenes)]
                  for i, lang in enumerate(plan.languages)}
    bed = _stage("music", lambda: [music_task.submit(plan)])[0]
    videos = dict(zip(plan.languages, _stage("compose", lambda: [
        compose_task.submit(plan, lang, clips, narrations[lang], bed) for lang in plan.languages
    ]), strict=True))

    manifest = build_manifest(plan, stills, clips, narrations, bed, videos)
    write_manifest(manifest, plan.out_dir / "manifest.json")
    for lang, result in videos.items():
        logger.info("%s: %s (%.1f s)", lang, result.video, result.duration_s)
    return {"manifest": str(plan.out_dir / "manifest.json"),
            "outputs": {lang: str(result.video) for lang, result in videos.items()}}
