"""What every `sopreel` command shares: clean errors instead of tracebacks, and parsing
`--lang` lists. Kept apart from flows/cli.py so command groups in other modules use them
without importing the command line itself."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from stages.errors import DISK_ERRNOS, SopreelError

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
            elif exc.errno in DISK_ERRNOS:
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
