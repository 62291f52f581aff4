"""The one error family a user can cause; the CLI turns any of them into a clean message.

Anything that is not a `SopreelError` is a bug in sopreel and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class SopreelError(Exception):
    """A problem the user can fix: the message says what, where and how."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong at one place in one input file."""

    line: int | None
    field: str
    message: str
    file: Path | None = None    # when not the file the error is about (a script's sidecar)

    def render(self, source: Path | str) -> str:
        source = self.file or source
        where = f"{source}:{self.line}" if self.line else f"{source}"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"


class InputFileError(SopreelError):
    """An input file (script, profile, style, voice) with one or more problems."""

    kind = "file"

    def __init__(self, source: Path | str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        count = len(problems)
        head = f"{self.kind} {source} has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *("  " + p.render(source) for p in problems)]))


class ScriptError(InputFileError):
    kind = "script"


class ProfileError(InputFileError):
    kind = "profile"


class StyleError(InputFileError):
    kind = "style"


class VoiceFileError(InputFileError):
    kind = "voice record"


class DataFileError(InputFileError):
    """One of sopreel's own data files (templates/languages.yaml) is broken."""

    kind = "data file"


class UnknownNameError(SopreelError):
    """A name looked up in a registry (backend, profile, style, language) that does not exist."""

    def __init__(self, what: str, name: str, available: list[str]):
        from difflib import get_close_matches

        self.what, self.name, self.available = what, name, available
        close = get_close_matches(name, available, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(available) if available else "none"
        super().__init__(f"Unknown {what} '{name}'.{hint} Available: {listing}.")


class TransientError(SopreelError):
    """A failure that may pass by itself (a server restarting or overloaded): worth a retry."""


class AboutTheWork(SopreelError):
    """An error about one item's own content (a service refusing a scene's prompt): `reported`
    says which scene, language and backend it was."""


class NotCached(Exception):
    """Raised by a build step looking only in the cache (`BuildPlan.peek`) when the asset is
    not there yet, so the flow runs the step as a task."""


def out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error (CUDA, MPS), recognised without importing torch."""
    return isinstance(exc, RuntimeError) and (
        type(exc).__name__ == "OutOfMemoryError" or " out of memory" in str(exc))


class MediaError(SopreelError):
    """A media tool (ffmpeg, espeak-ng) failed or a media file is unusable."""


class ConsentError(SopreelError):
    """A cloned voice may not speak: enrolment was refused, or consent does not cover a use."""


class MissingToolError(SopreelError):
    """A system program sopreel needs is not installed."""

    def __init__(self, program: str, package: str):
        super().__init__(
            f"'{program}' is not installed. Install it with: apt-get install {package} "
            "(or run `make setup`)."
        )


# A full disk, or one this user may not write: the CLI says so plainly (flows.cli).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS})


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


@dataclass(frozen=True)
class Work:
    """One item of a stage's work, for naming it when it fails."""

    stage: str
    backend: str
    scene: str | None = None        # None: the whole build (music), or the AI notice
    language: str | None = None
    logs: Path | None = None        # where the full traceback is written

    def describe(self) -> str:
        parts = [f"scene '{self.scene}'" if self.scene else "",
                 f"language {self.language}" if self.language else "",
                 f"backend {self.backend}"]
        return f"{self.stage} ({', '.join(p for p in parts if p)})"


class StageFailure(SopreelError):
    """A library (a model, a decoder) raised inside a stage's work.

    The message is one line: the stage, scene, language and backend, and the library's own
    words; the traceback, which a user does not need but a bug report does, is written to
    `log` (and kept in `details` for the Prefect run log)."""

    def __init__(self, message: str, details: str, log: str | None = None):
        super().__init__(message)
        self.details, self.log = details, log

    def __reduce__(self):   # crosses processes (Dask workers) with its details
        return type(self), (str(self), self.details, self.log)


def _raised_in(exc: BaseException) -> str:
    """The module whose code raised `exc`, and the installed distribution it belongs to."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "?") if tb else "?"
    from importlib.metadata import packages_distributions

    package = packages_distributions().get(module.split(".")[0], [])
    return f"{package[0]} ({module})" if package else module


@contextlib.contextmanager
def reported(work: Work) -> Iterator[None]:
    """Turn an exception from inside a library into a `StageFailure` naming `work`.

    Errors a user can fix (`SopreelError`, a full or read-only disk), time limits and
    out-of-memory errors (which the flows retry with more offloading) pass through unchanged."""
    try:
        yield
    except AboutTheWork as exc:
        raise type(exc)(f"{work.describe()}: {exc}") from None
    except (SopreelError, TimeoutError, NotCached):
        raise
    except Exception as exc:
        if out_of_memory(exc) or (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS):
            raise
        details = "".join(traceback.format_exception(exc))
        log = _write_log(work, details)
        where = f" Full traceback: {log}" if log else ""
        raise StageFailure(f"{work.describe()} failed: {type(exc).__name__} raised in "
                           f"{_raised_in(exc)}: {first_line(exc)}.{where}", details,
                           str(log) if log else None) from exc


def _write_log(work: Work, details: str) -> Path | None:
    if work.logs is None:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = "-".join(p for p in (stamp, work.stage, work.scene, work.language) if p)
    path = work.logs / f"{name}.log"
    try:
        work.logs.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{work.describe()}\n\n{details}", encoding="utf-8")
    except OSError:   # a full or read-only disk: the one-line message still stands
        return None
    return path
