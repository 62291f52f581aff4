"""The `sopreel` command line: a thin layer over stages and flows.

Every `SopreelError` becomes a clean message and a non-zero exit; anything else is a bug and
keeps its traceback. Inputs are validated before Prefect is even imported, so a bad script
fails in well under a second and writes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from flows.cli_common import _clean_errors, _split_langs
from stages.errors import SopreelError


def _output_folder(out: str) -> str:
    """The output folder, made now: one that cannot be made or written fails before any work."""
    folder = Path(out).absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SopreelError(f"--out {out}: cannot be used as the output folder "
                           f"({exc.strerror}).") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SopreelError(f"--out {out}: the output folder is not writable.")
    return str(folder)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sopreel")
def main() -> None:
    """sopreel turns a written SOP or safety briefing into a narrated, subtitled training video
    in every language your workforce reads."""


VOICES_DIR = click.option("--voices-dir", default=None, type=click.Path(file_okay=False),
                          help="Folder of enrolled voices (default: $SOPREEL_VOICES_DIR, else "
                               "the project's voices/).")
USE = click.option("--use", default="training", show_default=True,
                   help="What the video is for; a cloned voice's consent must cover this use. "
                        "Add 'commercial' (--use training,commercial, or just --use "
                        "commercial) to refuse models whose licence forbids commercial use.")
ALLOW_UNREVIEWED = click.option(
    "--allow-unreviewed", is_flag=True,
    help="Build machine translations nobody has approved yet (a preview; the manifest says so).")
PROFILE = click.option("--profile", default="draft", show_default=True,
                       help="Run profile: draft, studio, or a path to a profile YAML.")


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every building command shares, after its own."""
    for option in (click.option("--verbose", "-v", is_flag=True,
                                help="Show Prefect's run logs."),
                   ALLOW_UNREVIEWED, USE, VOICES_DIR):
        command = option(command)
    return command


def _check(script: Path, profile: str, languages: list[str] | None, voices_dir: str | None,
           use: str, allow_unreviewed: bool = False, out: str = "outputs",
           max_cost: float | None = None) -> tuple[Any, dict[str, Any]]:
    """Script, profile, consent and narrator checks, before Prefect is imported; the cost at
    hosted services shown (and refused past `max_cost` or the profile's budget)."""
    from stages.costs import priced
    from stages.plan import plan_build
    from stages.profile import load_profile
    from stages.script import load_script

    loaded = load_script(script, only_languages=languages, voices=voices_dir,
                         allow_unreviewed=allow_unreviewed)
    plan, estimate = priced(plan_build(loaded, load_profile(profile), Path(out).absolute(),
                                       use=use, voices_folder=voices_dir), max_cost)
    for line in estimate.describe():
        click.echo(line)
    return loaded, plan.voicing


MAX_COST = click.option("--max-cost", type=click.FloatRange(min=0), default=None,
                        help="Most the build may cost at hosted services, in USD "
                             "(templates/prices.yaml); refused before any request if the "
                             "estimate is higher.")


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default=None, help="Also check a profile: a name or a YAML path.")
@click.option("--lang", "langs", default=None, help="Check only these languages, e.g. en,th.")
@VOICES_DIR
@USE
@ALLOW_UNREVIEWED
@_clean_errors
def validate(script: Path, profile: str | None, langs: str | None,
             voices_dir: str | None, use: str, allow_unreviewed: bool) -> None:
    """Check a script (and optionally a profile) without building anything.

    A script that names an enrolled voice is also checked against that voice's consent."""
    loaded, voicing = _check(script, profile or "draft", _split_langs(langs), voices_dir, use,
                             allow_unreviewed)
    s = loaded.script
    click.echo(f"OK: {script} ({s.id}): {len(s.scenes)} scenes, languages "
               f"{', '.join(loaded.languages)}")
    if s.voice != "stock":
        for lang, plan in voicing.items():
            click.echo(f"  {lang}: voice '{s.voice}': {plan.note}")
    for warning in loaded.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@PROFILE
@click.option("--lang", "langs", default=None,
              help="Build only these languages (comma-separated), e.g. en,th.")
@click.option("--out", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Output folder; the video lands in OUT/<script id>/<lang>/video.mp4.")
@click.option("--multitrack", is_flag=True,
              help="Also one MP4 with every language: a shared picture, an audio and a "
                   "subtitle track per language (OUT/<script id>/multitrack.mp4).")
@MAX_COST
@_run_options
@_clean_errors
def build(script: Path, profile: str, langs: str | None, out: str, multitrack: bool,
          max_cost: float | None, voices_dir: str | None, use: str, allow_unreviewed: bool,
          verbose: bool) -> None:
    """Build the training video for SCRIPT, one per language."""
    languages = _split_langs(langs)
    _check(script, profile, languages, voices_dir, use, allow_unreviewed, out,
           max_cost)   # fail fast
    voices = str(Path(voices_dir).absolute()) if voices_dir else None
    folder = _output_folder(out)
    result = _run_with_progress(lambda: _build_flow()(
        script=str(script.absolute()), profile=profile, languages=languages,
        out=folder, voices_dir=voices, use=use,
        allow_unreviewed=allow_unreviewed, multitrack=multitrack, max_cost=max_cost), verbose)
    for lang, video in result["outputs"].items():
        click.echo(f"{lang}: {video}")
    if "multitrack" in result:
        click.echo(f"every language: {result['multitrack']}")
    click.echo(f"manifest: {result['manifest']}")


@main.command()
@click.argument("scripts", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lang", "langs", required=True, help="Languages to add, e.g. th,vi.")
@PROFILE
@click.option("--out", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Output folder, as for build.")
@MAX_COST
@_run_options
@_clean_errors
def dub(scripts: tuple[Path, ...], langs: str, profile: str, out: str, max_cost: float | None,
        voices_dir: str | None, use: str, allow_unreviewed: bool, verbose: bool) -> None:
    """Add languages to many scripts at once (the `dub-batch` flow).

    Images and clips come from the cache of earlier builds, so a new language costs only its
    narration and compositing. Every script is checked before any work."""
    from stages.errors import SopreelError

    languages = _split_langs(langs) or []
    problems = []
    for script in scripts:
        try:
            _check(script, profile, languages, voices_dir, use, allow_unreviewed, out, max_cost)
        except SopreelError as exc:
            problems.append(str(exc))
    if problems:
        raise SopreelError("\n".join(["Nothing was dubbed:", *problems]))
    voices = str(Path(voices_dir).absolute()) if voices_dir else None
    folder = _output_folder(out)

    def work() -> dict[str, Any]:
        from flows.build import dub_batch
        return dub_batch(scripts=[str(s.absolute()) for s in scripts], languages=languages,
                         profile=profile, out=folder, voices_dir=voices,
                         use=use, allow_unreviewed=allow_unreviewed, max_cost=max_cost)

    for script_id, result in _run_with_progress(work, verbose).items():
        for lang, video in result["outputs"].items():
            click.echo(f"{script_id} {lang}: {video}")
        click.echo(f"{script_id} manifest: {result['manifest']}")


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lang", "langs", required=True, help="Languages to draft, e.g. th,vi.")
@click.option("--profile", default="draft", show_default=True,
              help="Profile whose `translate` section picks the backend and model.")
@click.option("--model", default=None,
              help="Hugging Face id or local folder of an NLLB-200, M2M100 or MarianMT model "
                   "(overrides the profile).")
@_clean_errors
def translate(script: Path, langs: str, profile: str, model: str | None) -> None:
    """Draft missing translations of SCRIPT by machine, for a person to review.

    Drafts go to SCRIPT's sidecar (NAME.translations.yaml) marked unreviewed; only scenes that
    are new or changed since the last draft are translated again."""
    from stages import languages as language_table
    from stages import translate as translate_stage
    from stages.glossary import load_glossary
    from stages.profile import load_profile
    from stages.script import load_script
    from stages.translations import Translator, draft, read_sidecar, save_draft

    loaded = load_script(script, only_languages=[])
    source = loaded.script.language
    targets = _translation_targets(loaded, _split_langs(langs) or [])
    choice = load_profile(profile).translate
    options = choice.options.model_copy(update={"model": model}) if model else choice.options
    backend = translate_stage.BACKENDS.get(choice.backend)(options)
    click.echo(f"Loading {backend.model} ...", err=True)
    backend.load()
    found = read_sidecar(loaded.path)
    for language in targets:
        previous = found[0].languages.get(language) if found else None
        translator = Translator(backend, load_glossary(), source, language)
        with _bar(f"{source} -> {language}") as advance:
            new, redone = draft(loaded.script, language, translator, previous,
                                model=backend.model or "", license=backend.license,
                                on_progress=advance)
        path = save_draft(loaded.path, language, new)
        click.echo(f"{language_table.get(language).name}: drafted {len(redone)} scene(s) "
                   f"({new.status}) in {path}")
        for note in new.notes:
            click.secho(f"  glossary: {note}", fg="yellow")
    click.echo(f"Review and approve: sopreel review {script} --lang {','.join(targets)}")


def _translation_targets(loaded: Any, langs: list[str]) -> list[str]:
    from stages import languages as language_table
    from stages.errors import SopreelError

    targets = []
    for code in langs:
        language = language_table.get(code).code
        if language == loaded.script.language:
            raise SopreelError(f"{code} is the script's own language; nothing to translate.")
        if any(language_table.canonical(k) == language for k in loaded.script.translations):
            raise SopreelError(f"{loaded.path.name} already has a {language} translation written "
                               "by people (its translations block); edit that instead.")
        targets.append(language)
    return targets


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lang", "langs", default=None,
              help="Machine translations to review, e.g. th,vi. Without it: the LLM rewrite "
                   "of a script made by `sopreel import --llm`.")
@click.option("--approve", "approving", is_flag=True,
              help="Approve the text (as it is now in the file) for builds.")
@click.option("--reviewer", default="", help="Your name, recorded with the approval.")
@click.option("--accept-deviations", is_flag=True,
              help="Approve a translation even where it does not use the glossary's terms "
                   "(recorded).")
@click.option("--ui", is_flag=True,
              help="Review in the Prefect UI instead: run the review-translation (or "
                   "review-import) flow, which waits there with a form (needs a running "
                   "server, PREFECT_API_URL).")
@_clean_errors
def review(script: Path, langs: str | None, approving: bool, reviewer: str,
           accept_deviations: bool, ui: bool) -> None:
    """Show a machine's text beside its source, and approve it.

    Machine translations live in the sidecar file (NAME.translations.yaml); an LLM rewrite
    of an imported SOP is the script itself, each scene's `source.text` the document's words.
    Correct the text in the file first; approval checks the site glossary (and, for a
    rewrite, every number of the document) and records who approved and when. The same
    review can be done in the Prefect UI."""
    from stages.review import TranslationReview
    from stages.script import load_script

    loaded = load_script(script, only_languages=[], allow_unreviewed=True)
    wanted = _split_langs(langs) or []
    if not wanted or wanted == [loaded.script.language]:
        from stages.importer.review import ImportReview

        reviews: list[Any] = [ImportReview(loaded.path)]
        labels = [None]
    else:
        labels = _translation_targets(loaded, wanted)
        reviews = [TranslationReview(loaded.path, language) for language in labels]
    if ui:
        _review_in_ui(loaded.path, labels)
        return
    for item in reviews:
        if not approving:
            click.echo(item.summary() + "\n")
            continue
        line = item.approve(reviewer, accept_deviations)
        item.save()
        click.echo(line)


def _review_in_ui(script: Path, languages: list[str | None]) -> None:
    with _prefect_api(verbose=True) as api:
        if api is None:
            raise SopreelError("Reviewing in the Prefect UI needs a server that outlives this "
                               "command: unset SOPREEL_PREFECT_SERVER=temporary (sopreel then "
                               "starts one in the background) or set PREFECT_API_URL to your "
                               "`prefect server start` (http://127.0.0.1:4200/api).")
        from flows.review import review_import, review_translation

        for language in languages:
            flow_name = "review-translation" if language else "review-import"
            click.echo(f"{language or script.name}: waiting for a reviewer in the Prefect UI "
                       f"({api.removesuffix('/api')}/runs): open the paused {flow_name} run "
                       "and press Resume.")
            result = (review_translation(str(script), language) if language
                      else review_import(str(script)))
            click.echo(f"{language or script.name}: {result['status']}"
                       + (f" by {result['reviewer']}" if result.get("reviewer") else ""))


@main.command("import")
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The script to write (default: beside DOCUMENT, as NAME.yaml); pictures go "
                   "to NAME.pictures/ beside it.")
@click.option("--language", default=None,
              help="The document's language, e.g. th or zh-TW (default: recognised from its "
                   "characters; Latin text is taken as English).")
@click.option("--style", default="clean-industrial", show_default=True,
              help="The script's style (templates/styles/NAME.yaml).")
@click.option("--llm", "llm_url", default=None, metavar="URL",
              help="Rewrite the text as spoken narration with an LLM behind this "
                   "OpenAI-compatible API base, e.g. http://127.0.0.1:11434/v1 (Ollama). The "
                   "key, if it needs one: $SOPREEL_LLM_API_KEY or $OPENAI_API_KEY.")
@click.option("--model", default=None, help="The LLM's model name, with --llm.")
@click.option("--llm-timeout", default=120.0, show_default=True, type=click.FloatRange(1),
              help="Seconds to wait for each of the LLM's answers.")
@click.option("--force", is_flag=True, help="Replace an existing script and its pictures.")
@_clean_errors
def import_(document: Path, out: Path | None, language: str | None, style: str,
            llm_url: str | None, model: str | None, llm_timeout: float, force: bool) -> None:
    """Make a script from an SOP: Word (.docx), slides (.pptx), PDF, Markdown or HTML.

    Headings, numbered and bulleted steps, step tables and warnings become scenes, embedded
    pictures their photos, and each scene records where in the document it came from. With
    --llm the text is rewritten as spoken narration; that draft is built only after a person
    approves it (`sopreel review SCRIPT --approve`)."""
    from stages.importer import import_document

    rewriter = _rewriter(llm_url, model, llm_timeout)
    with _bar(f"rewriting with {model}") as advance:
        result = import_document(document, out, language=language, style=style,
                                 rewriter=rewriter, force=force,
                                 on_progress=advance if rewriter else None)
    photos = f", {result.photos} photo{'s' if result.photos != 1 else ''}"
    click.echo(f"Imported {document.name}: {result.scenes} scenes{photos}; language "
               f"{result.language} ({result.language_note})")
    click.echo(f"script: {result.script}")
    if result.pictures:
        click.echo(f"pictures: {result.pictures}")
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    for note in result.notes:
        click.secho(f"  review: {note}", fg="yellow")
    if result.rewritten:
        click.echo(f"Rewritten by {model}: check it against the document, then approve: "
                   f"sopreel review {result.script} --approve --reviewer NAME")
    else:
        click.echo(f"Next: sopreel build {result.script}")


@main.command("package")
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "kind", required=True,
              type=click.Choice(["scorm12", "scorm2004", "xapi", "html"]),
              help="scorm12 or scorm2004 (4th edition) for an LMS, xapi for an LRS, html for "
                   "the player alone.")
@click.option("--outputs", default="outputs", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The build's output folder (what `sopreel build --out` was given).")
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The zip to write (default: OUTPUTS/<script id>/<script id>-<format>.zip).")
@click.option("--lang", "langs", default=None,
              help="Only these built languages (comma-separated); default: every one built.")
@click.option("--complete-at", default=95, show_default=True, type=click.IntRange(1, 100),
              help="Percent of the video watched that completes the training.")
@click.option("--require-full-watch", is_flag=True,
              help="No seeking past what the learner has not watched yet.")
@click.option("--lrs", default=None, metavar="URL",
              help="xapi: the LRS endpoint statements go to when the launch gives none "
                   "(its Authorization header: $SOPREEL_LRS_AUTH, written into the package).")
@click.option("--activity-id", default=None, metavar="IRI",
              help="xapi: the activity's id (default urn:sopreel:<script id>).")
@VOICES_DIR
@_clean_errors
def package_(script: Path, kind: str, outputs: Path, out: Path | None, langs: str | None,
             complete_at: int, require_full_watch: bool, lrs: str | None,
             activity_id: str | None, voices_dir: str | None) -> None:
    """Package a built video for an LMS: SCORM 1.2, SCORM 2004, xAPI or plain HTML.

    One zip with every built language's video and subtitles, a language picker, the AI
    notice, and the script's quiz; the LMS records completion once --complete-at percent is
    watched, and the quiz's score and pass or fail."""
    from stages.package import PackageOptions, package_script

    options = PackageOptions(format=kind, complete_at=complete_at / 100,  # type: ignore[arg-type]
                             require_full_watch=require_full_watch, lrs_endpoint=lrs,
                             activity_id=activity_id, only=_split_langs(langs))
    made = package_script(script, outputs, options, out, voices_dir)
    quiz = f", a quiz of {made.quiz_questions}" if made.quiz_questions else ""
    click.echo(f"{made.format}: {made.path} ({made.size_bytes / 1e6:.1f} MB; "
               f"{', '.join(made.languages)}{quiz})")
    for warning in made.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _rewriter(url: str | None, model: str | None, timeout_s: float) -> Any:
    if bool(url) != bool(model):
        raise SopreelError("--llm and --model go together: the server's API base and the "
                           "model to ask, e.g. --llm http://127.0.0.1:11434/v1 --model "
                           "llama3.1:8b")
    if not url:
        return None
    from stages.importer.rewrite import ChatClient, Rewriter, api_key

    return Rewriter(ChatClient(url, model or "", api_key=api_key(), timeout_s=timeout_s))


class _bar:
    """A progress bar on a terminal (nothing otherwise); yields an `advance(done, total)`."""

    def __init__(self, label: str):
        from rich.progress import Progress

        self.progress = Progress(disable=not sys.stderr.isatty(), transient=True)
        self.task = self.progress.add_task(label, total=None)

    def __enter__(self) -> Callable[[int, int], None]:
        self.progress.start()
        return lambda done, total: self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@main.command()
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust", "anchors", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PEM file of CA certificates to trust (repeatable; default: the files in "
                   "$SOPREEL_C2PA_TRUST, separated by ':').")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@_clean_errors
def verify(video: Path, anchors: tuple[Path, ...], as_json: bool) -> None:
    """Check a video's Content Credentials (C2PA): whether the signature and content hash
    hold, who signed it, whether the signer is trusted, and what it claims.

    Exits 0 when the credentials are valid, 1 when they are invalid or missing."""
    from stages import provenance

    if not video.is_file():
        raise SopreelError(f"{video}: no such file.")
    trusted = list(anchors) or [Path(p) for p in
                                os.environ.get(provenance.ENV_TRUST, "").split(":") if p]
    found = provenance.verify(video, trusted)
    click.echo(provenance.as_json(found) if as_json else "\n".join(provenance.report(found)))
    sys.exit(0 if found.valid else 1)


@main.group()
def voices() -> None:
    """Enrol, inspect, amend, revoke, audit and erase consented voices (voices/<id>/), each
    change signed into the consent ledger (voices/ledger.jsonl)."""


@voices.command("init-key")
@click.option("--organisation", default=None, help="Who the key signs for, for the record.")
@click.option("--new-ledger", is_flag=True,
              help="The old key is lost: retire the folder's ledger and start a new one (every "
                   "voice must then be enrolled again).")
@VOICES_DIR
@_clean_errors
def voices_init_key(organisation: str | None, new_ledger: bool, voices_dir: str | None) -> None:
    """Create the organisation's signing key (if there is none) and the folder's ledger.

    The key is kept outside voices/: at $SOPREEL_CONSENT_KEY (a file path, or
    prefect-secret:NAME), else ~/.config/sopreel/consent-key.pem. voices/trust.yaml pins its
    public half: commit it."""
    from stages import ledger, paths

    folder = paths.voices_dir(voices_dir)
    if new_ledger:
        retired = ledger.retire(folder)
        click.echo(f"Retired the old ledger as {', '.join(p.name for p in retired)}.")
    source = ledger.key_source()
    existed = source.load() is not None
    if ledger.read_trust(folder) is None:
        key = ledger.signing_key(folder, create=True)
        ledger.start_ledger(folder, key, organisation)
    else:
        ledger.open_ledger(folder)
        key = ledger.signing_key(folder)
    trust = ledger.read_trust(folder)
    assert trust is not None
    click.echo(f"Organisation key: {source.description} "
               f"({'existing' if existed else 'created, mode 0600'}), "
               f"{ledger.fingerprint(key.public_key())}")
    click.echo(f"Consent ledger:   {folder / ledger.LEDGER_FILE} (id {trust.ledger_id}), pinned "
               f"in {folder / ledger.TRUST_FILE}: commit both; back the key up somewhere safe.")


@voices.command("add")
@click.argument("voice_id", metavar="ID")
@click.option("--name", required=True, help="The speaker's full name, as the statement says it.")
@click.option("--reference", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A clean recording of the speaker, 3 s to 5 minutes.")
@click.option("--consent", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The speaker reading their consent statement aloud.")
@click.option("--statement", required=True,
              help="The words of the consent statement; must name the speaker.")
@click.option("--languages", "langs", required=True, help="Languages consented to, e.g. en,zh-TW.")
@click.option("--uses", default="training", show_default=True,
              help="Uses consented to, e.g. training,marketing.")
@click.option("--expires", required=True, help="Last day of consent, YYYY-MM-DD.")
@click.option("--organisation", default=None,
              help="The organisation the consent is given to; the statement must name it too.")
@click.option("--reference-text", default=None,
              help="The words spoken in the reference recording (OmniVoice clones from both).")
@VOICES_DIR
@_clean_errors
def voices_add(voice_id: str, name: str, reference: Path, consent: Path, statement: str,
               langs: str, uses: str, expires: str, organisation: str | None,
               reference_text: str | None, voices_dir: str | None) -> None:
    """Enrol a person's voice with their recorded consent."""
    from stages import paths
    from stages.voices import Enrolment, enrol

    folder = paths.voices_dir(voices_dir)
    record = enrol(folder, Enrolment(
        voice_id=voice_id, name=name, reference=reference, consent=consent,
        statement=statement, languages=_split_langs(langs) or [],
        uses=_split_langs(uses) or [], expires=expires, organisation=organisation,
        reference_text=reference_text))
    c = record.consent
    click.echo(f"Enrolled '{record.id}' ({record.name}) in {folder / record.id}: "
               f"{', '.join(c.languages)}; uses {', '.join(c.uses)}; until {c.expires}.")


@voices.command("transcript")
@click.argument("voice_id", metavar="ID")
@click.option("--text", required=True, help="The words spoken in the reference recording.")
@VOICES_DIR
@_clean_errors
def voices_transcript(voice_id: str, text: str, voices_dir: str | None) -> None:
    """Record what is said in a voice's reference recording (signed into the ledger)."""
    from stages import paths
    from stages.voices import set_transcript

    record = set_transcript(paths.voices_dir(voices_dir), voice_id, text)
    click.echo(f"Recorded the transcript of '{record.id}'s reference (ledger entry "
               f"#{record.ledger.latest.entry}).")


@voices.command("link")
@click.argument("voice_id", metavar="ID")
@click.option("--service", type=click.Choice(["elevenlabs"]), default="elevenlabs",
              show_default=True, help="The service that keeps the clone.")
@click.option("--voice-id", "service_voice", default=None,
              help="The clone's voice id at the service (ElevenLabs > Voices > the voice > ID).")
@click.option("--unlink", is_flag=True, help="Remove the link instead.")
@VOICES_DIR
@_clean_errors
def voices_link(voice_id: str, service: str, service_voice: str | None, unlink: bool,
                voices_dir: str | None) -> None:
    """Link the clone of this person a service keeps (an ElevenLabs voice) to their enrolment.

    The service's narrator then speaks in it only while this voice's consent covers the
    language and use, checked before every request; revoking the consent stops it."""
    from stages import paths
    from stages.errors import SopreelError
    from stages.voices import link_service_voice

    if unlink == (service_voice is not None):
        raise SopreelError("Give --voice-id to link a voice, or --unlink to remove the link.")
    record = link_service_voice(paths.voices_dir(voices_dir), voice_id, service,
                                None if unlink else service_voice)
    done = (f"Linked {service} voice {service_voice} to" if service_voice
            else f"Unlinked the {service} voice of")
    click.echo(f"{done} '{record.id}' (ledger entry #{record.ledger.latest.entry}).")


@voices.command("list")
@VOICES_DIR
@_clean_errors
def voices_list(voices_dir: str | None) -> None:
    """List enrolled voices and whether their consent is in force today."""
    from stages import paths
    from stages import voices as voice_records

    folder = paths.voices_dir(voices_dir)
    ids = voice_records.list_voice_ids(folder)
    if not ids:
        click.echo(f"No voices enrolled in {folder}.")
    for voice_id in ids:
        record = voice_records.load_voice(folder, voice_id)
        reasons = voice_records.refusals(record, folder)
        c = record.consent
        status = "in force" if not reasons else "; ".join(reasons)
        click.echo(f"{voice_id:<16} {record.name:<24} {','.join(c.languages):<14} "
                   f"{','.join(c.uses):<12} until {c.expires}  {status}")


@voices.command("show")
@click.argument("voice_id", metavar="ID")
@VOICES_DIR
@_clean_errors
def voices_show(voice_id: str, voices_dir: str | None) -> None:
    """Show a voice's consent record and check its recordings."""
    from stages import paths
    from stages import voices as voice_records

    folder = paths.voices_dir(voices_dir)
    record = voice_records.load_voice(folder, voice_id)
    c = record.consent
    reasons = voice_records.refusals(record, folder)
    for label, value in [
            ("id", record.id), ("name", record.name), ("folder", folder / record.id),
            ("reference", f"{record.reference.file} ({record.reference.seconds} s, sha256 "
                          f"{record.reference.sha256[:16]}...)"),
            ("transcript", voice_records.reference_text(folder, record) or "none recorded"),
            ("services", ", ".join(f"{k} voice {v}" for k, v in record.services.items())
                         or "none linked"),
            ("consent", f"{c.recording.file} ({c.recording.seconds} s, sha256 "
                        f"{c.recording.sha256[:16]}...)"),
            ("statement", c.statement), ("organisation", c.organisation or "-"),
            ("languages", ", ".join(c.languages)), ("uses", ", ".join(c.uses)),
            ("granted", c.granted), ("expires", c.expires),
            ("revoked", f"{c.revoked} {c.revoked_reason or ''}".strip() if c.revoked else "no"),
            ("ledger", f"consent at entry #{record.ledger.consent.entry}, latest entry "
                       f"#{record.ledger.latest.entry} (signatures and chain verified)"),
            ("status", "in force" if not reasons else "; ".join(reasons))]:
        click.echo(f"{label + ':':<14}{value}")


@voices.command("revoke")
@click.argument("voice_id", metavar="ID")
@click.option("--reason", default=None, help="Why, for the record.")
@click.option("--out", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Output folder to search for builds that used the voice.")
@VOICES_DIR
@_clean_errors
def voices_revoke(voice_id: str, reason: str | None, out: str, voices_dir: str | None) -> None:
    """Revoke a voice's consent: every later build in this voice is refused."""
    from stages import paths
    from stages import voices as voice_records

    folder = paths.voices_dir(voices_dir)
    record = voice_records.revoke(folder, voice_id, reason)
    click.echo(f"Revoked '{voice_id}' on {record.consent.revoked}; builds in this voice now "
               "stop before any synthesis, cached narration included.")
    used = voice_records.builds_using(voice_id, Path(out))
    if used:
        click.echo(f"Builds under {out} that used this voice (withdraw or rebuild them):")
        for manifest in used:
            click.echo(f"  {manifest.parent}  ({manifest})")
    else:
        click.echo(f"No builds under {out} used this voice.")


@voices.command("amend")
@click.argument("voice_id", metavar="ID")
@click.option("--languages", "langs", default=None, help="The new languages, e.g. en.")
@click.option("--uses", default=None, help="The new uses, e.g. training.")
@click.option("--expires", default=None, help="The new last day of consent, YYYY-MM-DD.")
@click.option("--consent", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The speaker reading the new statement aloud (needed to widen the terms).")
@click.option("--statement", default=None, help="The words of the new consent statement.")
@VOICES_DIR
@_clean_errors
def voices_amend(voice_id: str, langs: str | None, uses: str | None, expires: str | None,
                 consent: Path | None, statement: str | None, voices_dir: str | None) -> None:
    """Change a voice's terms: narrowing is recorded at once, widening needs new recorded
    consent."""
    from stages import paths
    from stages.voices import Amendment, amend

    record = amend(paths.voices_dir(voices_dir), Amendment(
        voice_id=voice_id, languages=_split_langs(langs), uses=_split_langs(uses),
        expires=expires, consent=consent, statement=statement))
    c = record.consent
    click.echo(f"Amended '{record.id}' (ledger entry #{record.ledger.latest.entry}): "
               f"{', '.join(c.languages)}; uses {', '.join(c.uses)}; until {c.expires}.")


@voices.command("audit")
@click.argument("voice_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
@VOICES_DIR
@_clean_errors
def voices_audit(voice_id: str | None, as_json: bool, voices_dir: str | None) -> None:
    """Verify the consent ledger and print each voice's history, its syntheses and every video
    it went into. Exits 2, naming the fault, when the ledger does not verify."""
    from stages import paths
    from stages.voices import audit

    report = audit(paths.voices_dir(voices_dir), voice_id)
    if as_json:
        click.echo(json.dumps(report, indent=1, ensure_ascii=False))
        return
    book = report["ledger"]
    click.echo(f"{book['file']}: {book['entries']} entries, signatures and chain verified "
               f"(key {book['key']}, ledger {book['id']})")
    for each, voice in report["voices"].items():
        click.echo(f"\n{each}: {voice['status']}")
        for event in voice["history"]:
            click.echo(f"  #{event['entry']:<5} {event['at']}  {event['event']:<8} "
                       f"{_audit_detail(event)}")
        by_language: dict[str, int] = {}
        for event in voice["syntheses"]:
            by_language[event["language"]] = by_language.get(event["language"], 0) + 1
        click.echo(f"  syntheses: {len(voice['syntheses'])}"
                   + (f" ({', '.join(f'{k} {v}' for k, v in sorted(by_language.items()))})"
                      if by_language else ""))
        for event in voice["videos"]:
            click.echo(f"  video #{event['entry']:<5} {event['on']}  {event['language']:<6} "
                       f"{event['script']}  {event['video']}")


def _audit_detail(event: dict) -> str:
    if event["event"] in ("consent", "terms"):
        new = " new recording," if "recording" in event else ""
        return (f"{new} {', '.join(event['languages'])}; {', '.join(event['uses'])}; "
                f"{event['granted']} to {event['expires']}").strip()
    if event["event"] == "revoke":
        return f"on {event['on']}" + (f" ({event['reason']})" if event.get("reason") else "")
    if event["event"] == "erase":
        return (f"on {event['on']}: {len(event['recordings'])} recordings and "
                f"{event['deleted']} cached files deleted, {len(event['videos'])} videos left")
    return f"by {event['by']}"


@voices.command("erase")
@click.argument("voice_id", metavar="ID")
@click.option("--outputs", "outputs", multiple=True, default=["outputs"], show_default=True,
              type=click.Path(file_okay=False),
              help="Output folder whose cached narrations in the voice are deleted (repeat for "
                   "more).")
@VOICES_DIR
@_clean_errors
def voices_erase(voice_id: str, outputs: tuple[str, ...], voices_dir: str | None) -> None:
    """Erase a voice (a data-subject request): revoke it, delete its recordings and every
    cached narration in it, list the videos that still hold it, and record the erasure."""
    from stages import paths
    from stages.voices import erase

    done = erase(paths.voices_dir(voices_dir), voice_id, [Path(o) for o in outputs])
    click.echo(f"Erased '{voice_id}' (ledger entry #{done.entry.seq}): {len(done.recordings)} "
               f"recordings and {len(done.narrations)} cached narration files deleted; the "
               "ledger keeps their sha256, never audio.")
    if done.videos:
        click.echo("Videos that still hold the voice (rebuild them with another voice, or "
                   "withdraw them):")
        for video in done.videos:
            click.echo(f"  {video}")
    else:
        click.echo("No video on record still holds the voice.")


@main.command()
@click.option("--cron", default=None,
              help="Schedule of build-all/nightly (default: nightly.cron in operations.yaml, "
                   "02:00 every day).")
@click.option("--timezone", default=None, help="Time zone of the schedule, e.g. Asia/Bangkok.")
@click.option("--scripts", "folder", default=None, type=click.Path(file_okay=False),
              help="Folder the nightly build searches for scripts (default: templates).")
@click.option("--profile", default=None, help="Profile of the nightly build (default: draft).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder of the nightly build (default: outputs).")
@click.option("--limit", default=None, type=click.IntRange(1),
              help="At most this many runs at once on this machine.")
@click.option("--port", default=4200, show_default=True, type=click.IntRange(1, 65535),
              help="Port of the local Prefect server started when PREFECT_API_URL is not set.")
@_clean_errors
def serve(cron: str | None, timezone: str | None, folder: str | None, profile: str | None,
          out: str | None, limit: int | None, port: int) -> None:
    """Serve sopreel's Prefect deployments and run what they start, until Ctrl-C.

    build-video/build, dub-batch/dub, build-all/nightly (scheduled) and
    review-translation/review, against PREFECT_API_URL; when it is not set, a local Prefect
    server with its UI is started on --port (and stopped on exit)."""
    from flows.settings import load_operations

    nightly = load_operations().nightly
    chosen = {"cron": cron, "timezone": timezone, "folder": folder, "profile": profile,
              "out": out}
    nightly = nightly.model_copy(update={k: v for k, v in chosen.items() if v is not None})
    _check_schedule(nightly.cron, nightly.timezone)
    from stages.profile import load_profile

    load_profile(nightly.profile)   # a typo fails now, not at 02:00
    from flows import serve as serving

    server = None
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        click.echo(f"Starting a Prefect server on 127.0.0.1:{port} ...", err=True)
        server = serving.start_local_server("127.0.0.1", port)
        api = server.url
    click.echo(f"Prefect UI: {api.removesuffix('/api')}  (deployments: build-video/build, "
               f"dub-batch/dub, build-all/nightly at '{nightly.cron}' {nightly.timezone}, "
               "review-translation/review)", err=True)
    try:
        serving.serve(nightly, api, limit=limit)
    finally:
        if server is not None:
            server.stop()


def _check_schedule(cron: str, timezone: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    from stages.errors import SopreelError

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        raise SopreelError(f"Schedule '{cron}' in time zone '{timezone}': "
                           f"{exc.errors()[0]['msg']} (a cron schedule has five fields: minute "
                           "hour day-of-month month day-of-week, e.g. '0 2 * * *').") from None


def _build_flow() -> Callable[..., dict[str, Any]]:
    from flows.build import build_video  # imports Prefect: after _prefect_api
    return build_video


def _prefect_api(verbose: bool = False) -> contextlib.AbstractContextManager[str | None]:
    """Prefect settings for a command that runs flows (the user's own settings always win),
    and the API it uses: PREFECT_API_URL, else the local background server (`flows.server`),
    else, with SOPREEL_PREFECT_SERVER=temporary, Prefect's per-command temporary server."""
    if not verbose:   # keep the terminal for progress; run logs still reach the Prefect API
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from flows import server  # imports Prefect: after the settings above

    if server.temporary_server_chosen() and not os.environ.get("PREFECT_API_URL"):
        # Lives only as long as this command: no UI to serve. Its first start on a new machine
        # migrates a database, which can take over a minute.
        os.environ.setdefault("PREFECT_SERVER_UI_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    return server.api_for_commands(lambda line: click.echo(line, err=True))


def _run_with_progress(work: Callable[[], dict[str, Any]], verbose: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from flows.progress import PROGRESS, StageProgress

    with _prefect_api(verbose) as api:
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
        click.echo(f"Building (Prefect: {api or 'a temporary server for this command'})...",
                   err=True)
        try:
            with bars:
                return work()
        finally:
            stop()


@main.group()
def server() -> None:
    """The local Prefect server builds use when PREFECT_API_URL is not set: started in the
    background by the first build, reused by every later command, its runs in its UI."""


@server.command("start")
@_clean_errors
def server_start() -> None:
    """Start the local Prefect server now (builds start it when they first need it)."""
    from flows import server as local

    found = local.ensure_running(lambda line: click.echo(line, err=True))
    click.echo(f"Running: {found.url}  UI: {found.ui}")


@server.command("status")
def server_status() -> None:
    """Say whether the local Prefect server is running, where, and its UI.

    Exits 0 when it answers, 1 when it does not."""
    from flows import server as local

    found = local.recorded()
    if found is None or not found.alive():
        click.echo(f"No local Prefect server is running (PREFECT_HOME {local.prefect_home()}); "
                   "the next build starts one.")
        sys.exit(1)
    started = f"pid {found.pid}" if found.pid else "not started by sopreel"
    click.echo(f"Running: {found.url} ({started})\nUI:      {found.ui}\n"
               f"home:    {found.home}\nlog:     {found.log}")


@server.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server sopreel started (its run history stays in PREFECT_HOME)."""
    from flows import server as local

    stopped = local.stop()
    click.echo(f"Stopped the Prefect server at {stopped.url} (pid {stopped.pid})." if stopped
               else "No Prefect server started by sopreel was running.")


def _add_commands() -> None:
    """Command groups kept in modules of their own."""
    from flows.models_cli import models

    main.add_command(models)


_add_commands()

if __name__ == "__main__":
    main()
