"""The one error family a user can cause; the CLI turns any of them into a clean message.

Anything that is not a `SopreelError` is a bug in sopreel and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
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
