"""The `package-video` flow: a built script's videos as a SCORM, xAPI or HTML zip for the LMS,
started from the Prefect UI (or after a build, by a deployment's automation).

The packaging itself is stages.package's; this flow runs it as a task and publishes what it
made (the zip, its languages and quiz, any warning) as a markdown artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from stages.package import Package, PackageOptions, package_script


@task(name="package", cache_policy=NO_CACHE)
def package_task(script: str, outputs: str, options: PackageOptions, out: str | None,
                 voices_dir: str | None) -> Package:
    return package_script(Path(script), Path(outputs), options, Path(out) if out else None,
                          voices_dir)


@flow(name="package-video", log_prints=True)
def package_video(script: str, format: Literal["scorm12", "scorm2004", "xapi", "html"] = "scorm12",
                  outputs: str = "outputs", out: str | None = None,
                  languages: list[str] | None = None, complete_at_percent: int = 95,
                  require_full_watch: bool = False, lrs: str | None = None,
                  activity_id: str | None = None,
                  voices_dir: str | None = None) -> dict[str, Any]:
    """Package a built script's videos for an LMS: SCORM 1.2, SCORM 2004, xAPI or HTML.

    Args:
        script: Path of the script YAML on the machine that runs the flow (built already).
        format: scorm12 or scorm2004 for an LMS, xapi for an LRS, html for the player alone.
        outputs: The build's output folder (build-video's `out`).
        out: The zip to write; empty: OUTPUTS/<script id>/<script id>-<format>.zip.
        languages: Only these built languages; empty: every one built.
        complete_at_percent: Percent of the video watched that completes the training.
        require_full_watch: No seeking past what the learner has not watched yet.
        lrs: xapi: the LRS endpoint when the launch gives none ($SOPREEL_LRS_AUTH: its
            Authorization header, written into the package).
        activity_id: xapi: the activity's IRI; empty: urn:sopreel:<script id>.
        voices_dir: Folder of enrolled voices; empty: $SOPREEL_VOICES_DIR, else voices/.
    """
    options = PackageOptions(format=format, complete_at=complete_at_percent / 100,
                             require_full_watch=require_full_watch, lrs_endpoint=lrs,
                             activity_id=activity_id, only=languages or None)
    made = package_task(script, outputs, options, out, voices_dir)
    logger = get_run_logger()
    for warning in made.warnings:
        logger.warning("%s", warning)
    lines = [f"# {made.format} package", "", f"`{made.path}` ({made.size_bytes / 1e6:.1f} MB)",
             "", f"Languages: {', '.join(made.languages)}; quiz questions: "
             f"{made.quiz_questions}; complete at {complete_at_percent}% watched"
             + (", no skipping ahead" if require_full_watch else "") + ".",
             *(["", "Warnings:", *[f"- {w}" for w in made.warnings]] if made.warnings else [])]
    create_markdown_artifact("\n".join(lines), key="package",
                             description=f"{made.format} package of {Path(script).name}")
    return {"package": str(made.path), "languages": made.languages, "format": made.format,
            "warnings": made.warnings}
