"""The `build-video` flow: a script becomes a finished video per language.

Stage-major: every scene's image, then every narration, then every clip (as long as the
scene's longest narration), then the music (as long as the longest video), then one compose
per language, so a stage's model is loaded once per build and released before the next
stage's. Caching is by content (`stages.assets`), not by Prefect: a task whose asset exists
returns it at once, whatever the run, server or machine.
"""

from __future__ import annotations

import time
from collections import defaultdict
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
from stages.errors import SopreelError
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


def _advancer(stage: str) -> Callable[[float], None]:
    """Progress through one item (0..1) of a stage whose bar counts items: a diffusion model
    reports every step."""
    done = 0.0

    def advance_to(fraction: float) -> None:
        nonlocal done
        if fraction > done:
            PROGRESS.advance(stage, fraction - done)
            done = fraction
    return advance_to


@task(name="image", cache_policy=NO_CACHE, task_run_name="image-{scene.id}")
def image_task(plan: BuildPlan, scene: ScenePlan) -> Asset:
    advance_to = _advancer("images")
    asset = make_image(plan, scene, BACKENDS, on_progress=advance_to)
    advance_to(1.0)
    return asset


@task(name="animate", cache_policy=NO_CACHE, task_run_name="animate-{scene.id}")
def animate_task(plan: BuildPlan, scene: ScenePlan, image: Asset,
                 narrations: list[Asset]) -> Asset:
    advance_to = _advancer("animate")
    asset = make_clip(plan, scene, image, narrations, BACKENDS, on_progress=advance_to)
    advance_to(1.0)
    return asset


@task(name="narrate", cache_policy=NO_CACHE, task_run_name="narrate-{scene.id}-{language}")
def narrate_task(plan: BuildPlan, scene: ScenePlan, language: str) -> Asset:
    asset = make_narration(plan, scene, language, BACKENDS)
    PROGRESS.advance("narrate")
    return asset


@task(name="music", cache_policy=NO_CACHE)
def music_task(plan: BuildPlan, narrations: dict[str, list[Asset]]) -> Asset | None:
    advance_to = _advancer("music")
    bed = make_music(plan, narrations, BACKENDS, on_progress=advance_to)
    advance_to(1.0)
    return bed


@task(name="compose", cache_policy=NO_CACHE, task_run_name="compose-{language}")
def compose_task(plan: BuildPlan, language: str, clips: list[Asset], narrations: list[Asset],
                 bed: Asset | None) -> ComposeResult:
    key = f"compose {plan.loaded.script.id} {language}"   # a dub batch composes many scripts
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


def _grouped(keys: list[Any], results: list[Any]) -> dict[Any, list[Any]]:
    """Results collected per key, in submission order (a stage's results for each script)."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for key, result in zip(keys, results, strict=True):
        groups[key].append(result)
    return groups


def _plan(script: str, profile: str, languages: list[str] | None, out: str,
          voices_dir: str | None, use: str, allow_unreviewed: bool) -> BuildPlan:
    loaded = load_script(script, only_languages=languages, voices=voices_dir,
                         allow_unreviewed=allow_unreviewed)
    return plan_build(loaded, load_profile(profile), Path(out).absolute(), use=use,
                      voices_folder=voices_dir)


def build_plans(plans: list[BuildPlan]) -> dict[str, dict[str, Any]]:
    """Every plan's images, then narrations, clips, music beds and videos: stage-major across
    scripts, so each model loads once for the whole batch. Returns per script id its manifest
    path and videos."""
    for plan in plans:
        plan.store.sweep()
    shots = [(i, scene) for i, plan in enumerate(plans) for scene in plan.scenes]
    voiced = [(i, lang, scene) for i, plan in enumerate(plans) for lang in plan.languages
              for scene in plan.scenes]
    cuts = [(i, lang) for i, plan in enumerate(plans) for lang in plan.languages]

    stills = _stage("images", lambda: [image_task.submit(plans[i], scene)
                                       for i, scene in shots], len(shots))
    spoken = _stage("narrate", lambda: [narrate_task.submit(plans[i], scene, lang)
                                        for i, lang, scene in voiced], len(voiced))
    # A clip covers the scene's longest narration, so narration comes first.
    heard = _grouped([(i, scene.id) for i, _, scene in voiced], spoken)
    clips = _stage("animate", lambda: [
        animate_task.submit(plans[i], scene, still, heard[(i, scene.id)])
        for (i, scene), still in zip(shots, stills, strict=True)], len(shots))
    narrations = _grouped([(i, lang) for i, lang, _ in voiced], spoken)
    # The bed lasts as long as the plan's longest video.
    beds = _stage("music", lambda: [
        music_task.submit(plan, {lang: narrations[(i, lang)] for lang in plan.languages})
        for i, plan in enumerate(plans)], len(plans))
    stills_of = _grouped([i for i, _ in shots], stills)
    clips_of = _grouped([i for i, _ in shots], clips)
    videos = dict(zip(cuts, _stage("compose", lambda: [
        compose_task.submit(plans[i], lang, clips_of[i], narrations[(i, lang)], beds[i])
        for i, lang in cuts]), strict=True))

    results = {}
    for i, plan in enumerate(plans):
        made = {lang: videos[(i, lang)] for lang in plan.languages}
        manifest = build_manifest(plan, stills_of[i], clips_of[i],
                                  {lang: narrations[(i, lang)] for lang in plan.languages},
                                  beds[i], made)
        write_manifest(manifest, plan.out_dir / "manifest.json")
        for lang, result in made.items():
            get_run_logger().info("%s %s: %s (%.1f s)", plan.loaded.script.id, lang,
                                  result.video, result.duration_s)
        results[plan.loaded.script.id] = {
            "manifest": str(plan.out_dir / "manifest.json"),
            "outputs": {lang: str(result.video) for lang, result in made.items()}}
    return results


@flow(name="build-video", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def build_video(script: str, profile: str = "draft", languages: list[str] | None = None,
                out: str = "outputs", voices_dir: str | None = None,
                use: str = DEFAULT_USE, allow_unreviewed: bool = False) -> dict[str, Any]:
    """Build a training video per language from a sopreel script (see DESIGN.md).

    `use` is what the video is for; a cloned voice's consent must cover it. Machine
    translations nobody approved are refused unless `allow_unreviewed`.
    """
    plan = _plan(script, profile, languages, out, voices_dir, use, allow_unreviewed)
    get_run_logger().info("Building %s: %d scenes in %s with the %s profile",
                          plan.loaded.script.id, len(plan.scenes), ", ".join(plan.languages),
                          plan.profile.name)
    return build_plans([plan])[plan.loaded.script.id]


@flow(name="dub-batch", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def dub_batch(scripts: list[str], languages: list[str], profile: str = "draft",
              out: str = "outputs", voices_dir: str | None = None, use: str = DEFAULT_USE,
              allow_unreviewed: bool = False) -> dict[str, Any]:
    """Add languages to many scripts at once: narration and compositing per script x language,
    every image and clip reused from the cache (made once if a script was never built).

    Every script is checked before any work; one bad script stops the batch with all the
    problems listed."""
    plans, problems = [], []
    for script in scripts:
        try:
            plans.append(_plan(script, profile, languages, out, voices_dir, use,
                               allow_unreviewed))
        except SopreelError as exc:
            problems.append(str(exc))
    ids = [plan.loaded.script.id for plan in plans]
    problems += [f"two scripts have the id '{i}'; each needs its own" for i in set(ids)
                 if ids.count(i) > 1]
    if problems:
        raise SopreelError("\n".join(["Nothing was dubbed:", *problems]))
    get_run_logger().info("Dubbing %d scripts into %s", len(plans), ", ".join(languages))
    return build_plans(plans)
