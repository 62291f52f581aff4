"""The build flows: `build-video` (one script), `dub-batch` (many scripts, more languages)
and `build-all` (every script in a folder: the nightly deployment).

Stage-major: every scene's image, then every narration, then every clip (as long as the
scene's longest narration), then the music (as long as the longest video), then one compose
per language, so a stage's model is loaded once per build and released before the next
stage's. Caching is by content (`stages.assets`), not by Prefect: a task whose asset exists
returns it at once, whatever the run, server or machine, so a build killed half-way and
started again redoes only what was not finished.

Retries, time limits and the GPU lock come from templates/operations.yaml (`flows.settings`);
where tasks run (threads or Dask) from `flows.runners`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from flows import progress, runners
from flows.artifacts import ProgressArtifacts, publish_build, publish_problems
from flows.settings import Operations, load_operations, operations_file
from stages.assets import Asset
from stages.cloud import register_secret_source
from stages.compose import ComposeResult
from stages.costs import priced
from stages.errors import (
    NotCached,
    SopreelError,
    StageFailure,
    TransientError,
    first_line,
    out_of_memory,
)
from stages.manifest import write_manifest
from stages.multitrack import MultitrackResult
from stages.plan import (
    BuildPlan,
    ScenePlan,
    load_for_build,
    loads_model,
    make_clip,
    make_image,
    make_multitrack,
    make_music,
    make_narration,
    make_video,
    plan_build,
)
from stages.profile import load_profile
from stages.report import build_manifest, record_cloned_videos
from stages.script import find_scripts
from stages.voices import DEFAULT_USE

LONG_STAGES = ("images", "narrate", "animate", "music")   # progress artifacts in the UI

# Tasks reach the process's shared objects (runners.BACKENDS, progress.PROGRESS) through their
# modules: a task sent to a Dask worker is pickled, and those objects hold locks.


def _advancer(stage: str) -> Callable[[float], None]:
    """Progress through one item (0..1) of a stage whose bar counts items: a diffusion model
    reports every step."""
    done = 0.0

    def advance_to(fraction: float) -> None:
        nonlocal done
        if fraction > done:
            progress.PROGRESS.advance(stage, fraction - done)
            done = fraction
    return advance_to


@task(name="image", cache_policy=NO_CACHE, task_run_name="image-{scene.id}")
def image_task(plan: BuildPlan, scene: ScenePlan) -> Asset:
    advance_to = _advancer("images")
    asset = make_image(plan, scene, runners.BACKENDS, on_progress=advance_to)
    advance_to(1.0)
    return asset


@task(name="animate", cache_policy=NO_CACHE, task_run_name="animate-{scene.id}")
def animate_task(plan: BuildPlan, scene: ScenePlan, image: Asset,
                 narrations: list[Asset]) -> Asset:
    advance_to = _advancer("animate")
    asset = make_clip(plan, scene, image, narrations, runners.BACKENDS, on_progress=advance_to)
    advance_to(1.0)
    return asset


def _narration_name() -> str:
    from prefect.runtime import task_run

    scene, language = task_run.parameters["scene"], task_run.parameters["language"]
    return f"narrate-{scene.id if scene else 'ai-notice'}-{language}"


@task(name="narrate", cache_policy=NO_CACHE, task_run_name=_narration_name)
def narrate_task(plan: BuildPlan, scene: ScenePlan | None, language: str) -> Asset:
    """One scene's narration, or (no scene) the AI notice read aloud."""
    asset = make_narration(plan, scene, language, runners.BACKENDS)
    progress.PROGRESS.advance("narrate")
    return asset


@task(name="music", cache_policy=NO_CACHE)
def music_task(plan: BuildPlan, narrations: dict[str, list[Asset]],
               notices: dict[str, Asset | None]) -> Asset | None:
    advance_to = _advancer("music")
    bed = make_music(plan, narrations, runners.BACKENDS, on_progress=advance_to,
                     notices=notices)
    advance_to(1.0)
    return bed


@task(name="compose", cache_policy=NO_CACHE, task_run_name="compose-{language}")
def compose_task(plan: BuildPlan, language: str, stills: list[Asset], clips: list[Asset],
                 narrations: list[Asset], bed: Asset | None,
                 notice: Asset | None) -> ComposeResult:
    key = f"compose {plan.loaded.script.id} {language}"   # a dub batch composes many scripts
    progress.PROGRESS.begin(key, f"compose {language}", 1.0)
    result = make_video(plan, language, stills, clips, narrations, bed, notice,
                        on_progress=lambda done: progress.PROGRESS.fraction(key, done))
    progress.PROGRESS.fraction(key, 1.0)
    if result.segments:   # what an edit cost: the segments encoded again, and the sound
        get_run_logger().info("%s: %d segments made, %d reused; sound %s", key,
                              result.segments["made"], result.segments["reused"],
                              result.segments["sound"])
    return result


@task(name="multitrack", cache_policy=NO_CACHE, task_run_name="multitrack-{plan.loaded.script.id}")
def multitrack_task(plan: BuildPlan, stills: list[Asset], clips: list[Asset],
                    narrations: dict[str, list[Asset]], bed: Asset | None,
                    notices: dict[str, Asset | None]) -> MultitrackResult:
    key = f"multitrack {plan.loaded.script.id}"
    progress.PROGRESS.begin(key, "all languages", 1.0)
    result = make_multitrack(plan, stills, clips, narrations, bed, notices,
                             on_progress=lambda done: progress.PROGRESS.fraction(key, done))
    progress.PROGRESS.fraction(key, 1.0)
    return result


@dataclass
class _Run:
    """What every stage of one flow run shares."""

    plans: list[BuildPlan]
    ops: Operations
    artifacts: ProgressArtifacts
    failed: dict[int, Exception] = field(default_factory=dict)   # plan index: its failure

    def fail(self, index: int, stage: str, exc: Exception) -> None:
        """Stop building one plan (the others go on); the first failure is the one reported."""
        if index in self.failed:
            return
        self.failed[index] = exc
        logger = get_run_logger()
        logger.error("%s: %s failed: %s", self.plans[index].loaded.script.id, stage, exc)
        if isinstance(exc, StageFailure):
            logger.error("%s", exc.details)


Call = tuple[int, tuple[Any, ...]]   # the index of the plan an item belongs to, and its arguments


def _stage(run: _Run, name: str, task: Task[..., Any], calls: list[Call]) -> list[Any]:
    """Run one stage: first take from the cache what is already made, in this process and
    without a task run, a model or the GPU (`BuildPlan.peeking`); then run the rest as tasks
    with the site's retries and time limit, and free the stage's models before the next
    stage. A stage that loads models holds the GPU lock from its first task to that release.

    Items of a plan that failed earlier are not run; an item that fails stops its own plan
    only. Results line up with `calls`, None where nothing was made."""
    results: list[Any] = [None] * len(calls)
    live = [n for n, (index, _) in enumerate(calls) if index not in run.failed]
    if not live:
        return results
    if name in LONG_STAGES:
        progress.PROGRESS.begin(name, name, len(live))
        run.artifacts.track(name)
    started = time.perf_counter()
    pending = []
    for n in live:
        index, args = calls[n]
        try:
            results[n] = task.fn(run.plans[index].peeking(), *args[1:])   # args[0]: the plan
        except NotCached:
            pending.append(n)
        except Exception as exc:
            run.fail(index, name, exc)
    if pending:
        _run_tasks(run, name, task, calls, pending, results)
    if name in LONG_STAGES:
        run.artifacts.finish(name)
    get_run_logger().info("%s: %d from the cache, %d made in %.1f s", name,
                          len(live) - len(pending), len(pending), time.perf_counter() - started)
    return results


def _run_tasks(run: _Run, name: str, task: Task[..., Any], calls: list[Call],
               pending: list[int], results: list[Any]) -> None:
    """The stage's items the cache did not hold, as task runs; results filled in place."""
    policy = run.ops.policy(name)
    configured = task.with_options(**policy.task_options(),
                                   retry_condition_fn=_retry_if_transient(name))
    holds_model = any(loads_model(run.plans[calls[n][0]], name) for n in pending)
    with runners.gpu_lock(holds_model, run.ops.gpu):
        try:
            futures = runners.submit_all(configured, [calls[n][1] for n in pending],
                                         needs_gpu=holds_model)
            for n, future in zip(pending, futures, strict=True):
                try:
                    results[n] = _result(future, name, run.ops)
                except Exception as exc:
                    run.fail(calls[n][0], name, exc)
                if runners.remote():   # tasks on Dask workers report progress there
                    progress.PROGRESS.advance(name)
        finally:
            runners.release_stage(name)


def _retry_if_transient(stage: str) -> Callable[..., bool]:
    """Prefect's retry condition: retry a server that is down or overloaded, and a model out
    of GPU memory once it can be loaded with more offloading; never a mistake in the input."""
    def retry(_task: Any, _task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except TransientError as exc:
            get_run_logger().warning("%s: %s Retrying.", stage, first_line(exc))
            return True
        except Exception as exc:
            if not out_of_memory(exc):
                return False
            lighter = runners.BACKENDS.lighten(stage)
            if lighter:
                get_run_logger().warning("%s ran out of GPU memory; retrying with %s.", stage,
                                         lighter)
            return lighter is not None
        return False
    return retry


def _result(future: PrefectFuture[Any], stage: str, ops: Operations) -> Any:
    """A task's result; a time limit or exhausted GPU memory becomes a clear error."""
    try:
        return future.result()
    except TimeoutError:
        raise SopreelError(
            f"{stage}: one item took longer than its limit of {ops.policy(stage).timeout_s:g} s "
            f"(stages.{stage}.timeout_s in {operations_file()}).") from None
    except RuntimeError as exc:
        if out_of_memory(exc):
            raise SopreelError(
                f"{stage} ran out of GPU memory, with as much offloading as its backend has. "
                "Lower width, height or frames in the profile, or use a GPU with more "
                "memory.") from None
        raise


def _grouped(keys: list[Any], results: list[Any]) -> dict[Any, list[Any]]:
    """Results collected per key, in submission order (a stage's results for each script)."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for key, result in zip(keys, results, strict=True):
        groups[key].append(result)
    return groups


def _prefect_secret(name: str) -> str:
    """A hosted service's key kept in a Prefect Secret block (`key_secret:` in a profile)."""
    from prefect.blocks.system import Secret

    return Secret.load(name).get()


register_secret_source(_prefect_secret)


def _plan(script: str, profile: str, languages: list[str] | None, out: str,
          voices_dir: str | None, use: str, allow_unreviewed: bool,
          multitrack: bool = False, max_cost: float | None = None) -> BuildPlan:
    """The build's plan, priced: refused past `max_cost` or the profile's budget before any
    request to a hosted service."""
    out_root = Path(out).absolute()
    loaded = load_for_build(script, languages, out_root, voices_dir, allow_unreviewed)
    chosen = load_profile(profile)
    if multitrack:   # `--multitrack` on the command line: as if the profile said so
        chosen = dataclasses.replace(chosen, multitrack=True)
    plan, estimate = priced(plan_build(loaded, chosen, out_root, use=use,
                                       voices_folder=voices_dir), max_cost)
    for line in estimate.describe():
        get_run_logger().info("%s: %s", loaded.script.id, line.strip())
    return plan


def _plans(scripts: list[str], languages: list[str] | None, profile: str, out: str,
           voices_dir: str | None, use: str, allow_unreviewed: bool,
           multitrack: bool = False,
           max_cost: float | None = None) -> tuple[list[BuildPlan], list[str]]:
    """A plan for every script that can be built, and what is wrong with the others."""
    plans, problems = [], []
    for script in scripts:
        try:
            plans.append(_plan(script, profile, languages, out, voices_dir, use,
                               allow_unreviewed, multitrack, max_cost))
        except SopreelError as exc:
            problems.append(str(exc))
    ids = [plan.loaded.script.id for plan in plans]
    problems += [f"two scripts have the id '{i}'; each needs its own" for i in sorted(set(ids))
                 if ids.count(i) > 1]
    return plans, problems


@dataclass(frozen=True)
class Built:
    """What a flow run made: per script id its manifest and videos, and the scripts that
    failed with what stopped them."""

    results: dict[str, dict[str, Any]]
    failures: dict[str, Exception]

    def problems(self) -> list[str]:
        return [f"{script_id}: {exc}" for script_id, exc in self.failures.items()]


def build_plans(plans: list[BuildPlan], label: str) -> Built:
    """Every plan's images, then narrations, clips, music beds and videos: stage-major across
    scripts, so each model loads once for the whole batch. A script whose item fails stops
    there; the others are finished. Publishes each finished build's summary, asset table and
    links."""
    ops = load_operations()
    run = _Run(plans, ops, ProgressArtifacts(label))
    try:
        results = _build(run)
    finally:
        run.artifacts.close()
    return Built(results, {plans[i].loaded.script.id: exc for i, exc in run.failed.items()})


def _build(run: _Run) -> dict[str, dict[str, Any]]:
    plans = run.plans
    for plan in plans:
        plan.sweep()
    scene_of = [(i, scene) for i, plan in enumerate(plans) for scene in plan.scenes]
    voiced = [(i, lang, scene) for i, plan in enumerate(plans) for lang in plan.languages
              for scene in plan.scenes]
    cuts = [(i, lang) for i, plan in enumerate(plans) for lang in plan.languages]
    notices = [(i, lang) for i, lang in cuts if plans[i].speaks_notice]   # the spoken AI notice

    stills = _stage(run, "images", image_task, [(i, (plans[i], scene)) for i, scene in scene_of])
    said = _stage(run, "narrate", narrate_task,
                  [(i, (plans[i], scene, lang)) for i, lang, scene in voiced]
                  + [(i, (plans[i], None, lang)) for i, lang in notices])
    spoken, notice_of = said[:len(voiced)], dict(zip(notices, said[len(voiced):], strict=True))
    # A clip covers the scene's longest narration, so narration comes first.
    heard = _grouped([(i, scene.id) for i, _, scene in voiced], spoken)
    clips = _stage(run, "animate", animate_task, [
        (i, (plans[i], scene, still, heard[(i, scene.id)]))
        for (i, scene), still in zip(scene_of, stills, strict=True)])
    narrations = _grouped([(i, lang) for i, lang, _ in voiced], spoken)
    # The bed lasts as long as the plan's longest video.
    beds = _stage(run, "music", music_task, [
        (i, (plan, {lang: narrations[(i, lang)] for lang in plan.languages},
             {lang: notice_of.get((i, lang)) for lang in plan.languages}))
        for i, plan in enumerate(plans)])
    stills_of = _grouped([i for i, _ in scene_of], stills)
    clips_of = _grouped([i for i, _ in scene_of], clips)
    videos = dict(zip(cuts, _stage(run, "compose", compose_task, [
        (i, (plans[i], lang, stills_of[i], clips_of[i], narrations[(i, lang)], beds[i],
             notice_of.get((i, lang)))) for i, lang in cuts]),
        strict=True))
    together = [i for i, plan in enumerate(plans) if plan.profile.multitrack]
    multitracks = dict(zip(together, _stage(run, "multitrack", multitrack_task, [
        (i, (plans[i], stills_of[i], clips_of[i],
             {lang: narrations[(i, lang)] for lang in plans[i].languages}, beds[i],
             {lang: notice_of.get((i, lang)) for lang in plans[i].languages}))
        for i in together]), strict=True))

    logger = get_run_logger()
    results = {}
    for i, plan in enumerate(plans):
        if i in run.failed:
            continue
        made = {lang: videos[(i, lang)] for lang in plan.languages}
        spoken = {lang: narrations[(i, lang)] for lang in plan.languages}
        record_cloned_videos(plan, spoken, made, multitracks.get(i))
        manifest = build_manifest(plan, stills_of[i], clips_of[i], spoken, beds[i], made,
                                  {lang: notice_of.get((i, lang)) for lang in plan.languages},
                                  multitracks.get(i))
        write_manifest(manifest, plan.out_dir / "manifest.json")
        publish_build(manifest, plan.out_dir, run.ops.outputs_link_base)
        script_id = plan.loaded.script.id
        for lang, result in made.items():
            logger.info("%s %s: %s (%.1f s)", script_id, lang, result.video, result.duration_s)
        for warning in manifest.warnings:
            logger.warning("%s: %s", script_id, warning)
        results[script_id] = {"manifest": str(plan.out_dir / "manifest.json"),
                              "outputs": {lang: str(result.video) for lang, result in made.items()}}
        if i in multitracks:
            results[script_id]["multitrack"] = str(multitracks[i].video)
    return results


@flow(name="build-video", task_runner=runners.task_runner(), log_prints=True)
def build_video(script: str, profile: str = "draft", languages: list[str] | None = None,
                out: str = "outputs", voices_dir: str | None = None,
                use: str = DEFAULT_USE, allow_unreviewed: bool = False,
                multitrack: bool = False, max_cost: float | None = None) -> dict[str, Any]:
    """Build a training video per language from a sopreel script.

    Args:
        script: Path of the script YAML on the machine that runs the build.
        profile: draft (no model weights), studio, or the path of a profile YAML.
        languages: Languages to build, e.g. ["en", "th"]; empty: every language of the script.
        out: Output folder; videos land in OUT/<script id>/<lang>/video.mp4.
        voices_dir: Folder of enrolled voices; empty: $SOPREEL_VOICES_DIR, else voices/.
        use: What the video is for; a cloned voice's consent must cover it.
        allow_unreviewed: Build machine translations nobody has approved yet (a preview).
        multitrack: Also one MP4 with every language (OUT/<script id>/multitrack.mp4).
        max_cost: Most the build may cost at hosted services, in USD (templates/prices.yaml);
            refused before any request when the estimate is higher. Empty: the profile's
            budget, if any.
    """
    plan = _plan(script, profile, languages or None, out, voices_dir, use, allow_unreviewed,
                 multitrack, max_cost)
    get_run_logger().info("Building %s: %d scenes in %s with the %s profile",
                          plan.loaded.script.id, len(plan.scenes), ", ".join(plan.languages),
                          plan.profile.name)
    built = build_plans([plan], plan.loaded.script.id)
    if built.failures:
        raise next(iter(built.failures.values()))
    return built.results[plan.loaded.script.id]


@flow(name="dub-batch", task_runner=runners.task_runner(), log_prints=True)
def dub_batch(scripts: list[str], languages: list[str], profile: str = "draft",
              out: str = "outputs", voices_dir: str | None = None, use: str = DEFAULT_USE,
              allow_unreviewed: bool = False, multitrack: bool = False,
              max_cost: float | None = None) -> dict[str, Any]:
    """Add languages to many scripts at once: only narration and compositing are new.

    Images and clips come from the cache (made once if a script was never built). Every
    script is checked before any work; one bad script stops the batch with all the problems
    listed.

    Args:
        scripts: Paths of the script YAMLs on the machine that runs the batch.
        languages: Languages to add, e.g. ["th", "vi"].
        profile: draft (no model weights), studio, or the path of a profile YAML.
        out: Output folder, as for build-video.
        voices_dir: Folder of enrolled voices; empty: $SOPREEL_VOICES_DIR, else voices/.
        use: What the videos are for; a cloned voice's consent must cover it.
        allow_unreviewed: Build machine translations nobody has approved yet (a preview).
        multitrack: Also one MP4 per script with every language built (multitrack.mp4).
        max_cost: Most each script may cost at hosted services, in USD, as for build-video.
    """
    plans, problems = _plans(scripts, languages, profile, out, voices_dir, use,
                             allow_unreviewed, multitrack, max_cost)
    if problems:
        raise SopreelError("\n".join(["Nothing was dubbed:", *problems]))
    get_run_logger().info("Dubbing %d scripts into %s", len(plans), ", ".join(languages))
    built = build_plans(plans, "dub-batch")
    if built.failures:
        publish_problems(built.problems())
        raise SopreelError("\n".join([f"{len(built.failures)} of {len(plans)} scripts were not "
                                       "dubbed:", *built.problems()]))
    return built.results


@flow(name="build-all", task_runner=runners.task_runner(), log_prints=True)
def build_all(folder: str = "templates", profile: str = "draft", out: str = "outputs",
              voices_dir: str | None = None, use: str = DEFAULT_USE,
              max_cost: float | None = None) -> dict[str, Any]:
    """Build every script under a folder, each in all its languages (the nightly build).

    Unchanged scripts cost nothing: every asset and video comes from the cache. A script
    that cannot be built is listed (and fails the run) without stopping the others.

    Args:
        folder: Folder searched (with its subfolders) for scripts: YAML files with scenes.
        profile: draft (no model weights), studio, or the path of a profile YAML.
        out: Output folder, as for build-video.
        voices_dir: Folder of enrolled voices; empty: $SOPREEL_VOICES_DIR, else voices/.
        use: What the videos are for; a cloned voice's consent must cover it.
        max_cost: Most each script may cost at hosted services, in USD, as for build-video.
    """
    scripts = [str(path) for path in find_scripts(Path(folder))]
    plans, problems = _plans(scripts, None, profile, out, voices_dir, use, False,
                             max_cost=max_cost)
    get_run_logger().info("Building %d of %d scripts under %s", len(plans), len(scripts), folder)
    built = build_plans(plans, "build-all") if plans else Built({}, {})
    problems += built.problems()
    if problems:
        publish_problems(problems)
        raise SopreelError("\n".join([f"{len(problems)} of {len(scripts)} scripts under "
                                       f"{folder} were not built:", *problems]))
    return built.results
