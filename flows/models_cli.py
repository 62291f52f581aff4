"""`sopreel models`: the weights a profile needs, pulled once, listed, checked, removed.

Like `ollama pull`: `pull` fetches every Hub model a profile names into the Hugging Face cache
(shared with diffusers and transformers, resumable, checked file by file) and records the
commit; `list` and `check` read the cache without the network; `remove` frees the space.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from flows.cli_common import _clean_errors, _split_langs

EXIT_MISSING = 1
LANGS = click.option("--lang", "langs", default=None,
                     help="Comma-separated languages to narrate (default: English and every "
                          "language the profile routes to a narrator of its own).")
TRANSLATE = click.option("--translate", is_flag=True,
                         help="Also the profile's translation model (for `sopreel translate`).")


@click.group()
def models() -> None:
    """Pull, list, check and remove the model weights a profile needs (the HF cache)."""


def _needs(profile: str, langs: str | None, translate: bool) -> list[Any]:
    from stages.model_store import profile_needs
    from stages.profile import load_profile

    return profile_needs(load_profile(profile), _split_langs(langs), translate)


@models.command("pull")
@click.argument("profile")
@LANGS
@TRANSLATE
@_clean_errors
def models_pull(profile: str, langs: str | None, translate: bool) -> None:
    """Download every Hub model PROFILE needs into the Hugging Face cache.

    An interrupted pull resumes where it stopped; each file is checked against the Hub's
    checksum; the commit pulled is what later builds load, without asking the Hub."""
    from stages import hub
    from stages.licenses import allows_commercial

    needs = _needs(profile, langs, translate)
    pulled = []
    for need in needs:
        if need.hub is None:
            where = need.local or "its library downloads it on first use"
            click.echo(f"{need.stage}: {need.name}: not from the Hub ({where})")
            continue
        done = hub.pull(need.hub, report=click.echo)
        commercial = "allowed" if allows_commercial(need.license) else "NOT allowed"
        click.echo(f"  licence: {need.license} (commercial use {commercial}); "
                   f"{hub.human_size(done.downloaded)} downloaded")
        pulled.append(done)
    total = sum(sum(f.size for f in p.files) for p in pulled)
    click.echo(f"Pulled {len(pulled)} models ({hub.human_size(total)}) into {hub.cache_dir()}.")


@models.command("list")
@click.argument("profile", required=False)
@LANGS
@TRANSLATE
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_clean_errors
def models_list(profile: str | None, langs: str | None, translate: bool,
                as_json: bool) -> None:
    """Every model PROFILE names (every bundled profile when none is given): whether it is
    here, its size on disk, revision, licence and commercial use. No network."""
    from stages.errors import SopreelError
    from stages.profile import available_profiles

    rows = []
    for name in [profile] if profile else available_profiles():
        try:
            needs = _needs(name, langs, translate)
        except SopreelError as exc:   # e.g. a hosted-service profile without its keys
            if profile:
                raise
            click.echo(f"{name}: skipped ({str(exc).splitlines()[0]})", err=True)
            continue
        rows += [{"profile": name, **need.describe()} for need in needs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from stages.hub import human_size

    header = ("profile", "stage", "model", "here", "size", "revision", "licence", "commercial")
    lines = [header] + [(
        r["profile"], r["stage"], r["model"], "yes" if r["present"] else "no",
        human_size(r["size"]) if r["size"] else "-",
        (r["revision"] or "-")[:12], r["license"], "yes" if r["commercial"] else "no")
        for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths,
                                                                          strict=True)).rstrip())


@models.command("check")
@click.argument("profile")
@LANGS
@TRANSLATE
@_clean_errors
def models_check(profile: str, langs: str | None, translate: bool) -> None:
    """Exit non-zero, naming what is missing, unless every model PROFILE needs is here (run it
    before a render: it reads only the local cache)."""
    needs = _needs(profile, langs, translate)
    missing = [need for need in needs if not need.describe()["present"]]
    for need in missing:
        click.echo(f"missing: {need.stage}: {need.name} ({need.source})", err=True)
    if missing:
        click.echo(f"{len(missing)} of {len(needs)} models are not here: sopreel models pull "
                   f"{profile}" + (f" --lang {langs}" if langs else ""), err=True)
        sys.exit(EXIT_MISSING)
    click.echo(f"All {len(needs)} models {profile} needs are here.")


@models.command("remove")
@click.argument("model_id", metavar="ID")
@_clean_errors
def models_remove(model_id: str) -> None:
    """Delete a Hub model (a repo id such as black-forest-labs/FLUX.1-schnell) from the
    Hugging Face cache; refused while a running build uses it."""
    from stages import hub

    freed = hub.remove(model_id)
    click.echo(f"Removed {model_id} from {hub.cache_dir()} ({hub.human_size(freed)} freed).")
