"""The `sopreel` command line: a thin layer over stages and flows.

Every `SopreelError` becomes a clean message and a non-zero exit; anything else is a bug and
keeps its traceback. Inputs are validated before Prefect is even imported, so a bad script
fails in well under a second and writes nothing.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from stages.errors import SopreelError

EXIT_INVALID = 2


def _clean_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SopreelError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(EXIT_INVALID)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                message = (f"the disk is full ({exc.filename or 'while writing'}); free some "
                           "space and build again: finished assets are reused.")
            elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                message = f"cannot write {exc.filename or 'the output'}: {exc.strerror}."
            else:
                raise
            click.secho(f"Error: {message}", fg="red", err=True)
            sys.exit(EXIT_INVALID)
        except KeyboardInterrupt:
            click.secho("Interrupted. Finished assets are kept; the next build reuses them.",
                        fg="yellow", err=True)
            sys.exit(130)
    return wrapper


def _split_langs(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sopreel")
def main() -> None:
    """sopreel turns a written SOP or safety briefing into a narrated, subtitled training video
    in every language your workforce reads."""


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default=None, help="Also check a profile: a name or a YAML path.")
@click.option("--lang", "langs", default=None, help="Check only these languages, e.g. en,th.")
@click.option("--voices-dir", default=None, help="Folder of enrolled voices (default voices/).")
@_clean_errors
def validate(script: Path, profile: str | None, langs: str | None,
             voices_dir: str | None) -> None:
    """Check a script (and optionally a profile) without building anything."""
    from stages.profile import load_profile
    from stages.script import load_script

    loaded = load_script(script, only_languages=_split_langs(langs), voices=voices_dir)
    if profile:
        load_profile(profile)
    s = loaded.script
    click.echo(f"OK: {script} ({s.id}): {len(s.scenes)} scenes, languages "
               f"{', '.join(loaded.languages)}")
    for warning in loaded.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default="draft", show_default=True,
              help="Run profile: draft, studio, or a path to a profile YAML.")
@click.option("--lang", "langs", default=None,
              help="Build only these languages (comma-separated), e.g. en,th.")
@click.option("--out", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Output folder; the video lands in OUT/<script id>/<lang>/video.mp4.")
@click.option("--voices-dir", default=None, help="Folder of enrolled voices (default voices/).")
@click.option("--verbose", "-v", is_flag=True, help="Show Prefect's run logs.")
@_clean_errors
def build(script: Path, profile: str, langs: str | None, out: str, voices_dir: str | None,
          verbose: bool) -> None:
    """Build the training video for SCRIPT, one per language."""
    from stages.profile import load_profile
    from stages.script import load_script

    languages = _split_langs(langs)
    load_script(script, only_languages=languages, voices=voices_dir)   # fail fast, write nothing
    load_profile(profile)
    result = _run_with_progress(lambda: _build_flow()(
        script=str(script.absolute()), profile=profile, languages=languages,
        out=str(Path(out).absolute()), voices_dir=voices_dir), verbose)
    for lang, video in result["outputs"].items():
        click.echo(f"{lang}: {video}")
    click.echo(f"manifest: {result['manifest']}")


def _build_flow() -> Callable[..., dict[str, Any]]:
    from flows.build import build_video  # imports Prefect: after _prefect_environment
    return build_video


def _prefect_environment(verbose: bool = False) -> None:
    """Prefect settings for a command-line build (the user's own settings always win)."""
    if not verbose:   # keep the terminal for progress; run logs still reach the Prefect API
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    if not os.environ.get("PREFECT_API_URL"):
        # The temporary server lives only as long as this command: no UI to serve. Its first
        # start on a new machine migrates a database, which can take over a minute.
        os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")


def _run_with_progress(work: Callable[[], dict[str, Any]], verbose: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from flows.progress import PROGRESS, StageProgress

    _prefect_environment(verbose)
    bars = Progress(TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), transient=False, disable=not sys.stderr.isatty())
    ids: dict[str, Any] = {}

    def show(stage: StageProgress) -> None:
        if stage.key not in ids:
            ids[stage.key] = bars.add_task(stage.label, total=stage.total)
        bars.update(ids[stage.key], completed=stage.completed, total=stage.total)

    finished: set[str] = set()

    def log(stage: StageProgress) -> None:   # no terminal (CI, a pipe): one line per stage
        if stage.completed >= stage.total and stage.key not in finished:
            finished.add(stage.key)
            click.echo(f"{stage.label}: done", err=True)

    stop = PROGRESS.listen(show if sys.stderr.isatty() else log)
    click.echo("Starting the build (Prefect starts a temporary server unless PREFECT_API_URL "
               "is set)...", err=True)
    try:
        with bars:
            return work()
    finally:
        stop()


if __name__ == "__main__":
    main()
