"""The `import-sop` flow: a training team gives a document's path in the Prefect UI and gets
the draft script, shown as an artifact, and (for an LLM rewrite) its review form.

The import itself is stages.importer's; this flow only runs it as a task (its retries cover an
LLM server that is briefly busy), publishes the draft and, when an LLM rewrote it, pauses for
the reviewer exactly as `review-import` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.review import run_review
from stages.importer import ImportResult, import_document
from stages.importer.rewrite import ChatClient, Rewriter, api_key


@task(name="import-document", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def import_task(file: str, out: str | None, language: str | None, style: str,
                llm_url: str | None, llm_model: str | None, llm_timeout_s: float,
                overwrite: bool) -> ImportResult:
    logger = get_run_logger()
    rewriter = (Rewriter(ChatClient(llm_url, llm_model, api_key=api_key(),
                                    timeout_s=llm_timeout_s))
                if llm_url and llm_model else None)

    def progress(done: int, total: int) -> None:
        logger.info("rewritten %d of %d scenes", done, total)

    return import_document(file, out, language=language, style=style, rewriter=rewriter,
                           force=overwrite, on_progress=progress)


@flow(name="import-sop", log_prints=True)
def import_sop(file: str, out: str | None = None, language: str | None = None,
               style: str = "clean-industrial", llm_url: str | None = None,
               llm_model: str | None = None, llm_timeout_s: float = 120.0,
               overwrite: bool = False, review_timeout_s: int = 24 * 3600,
               poll_interval_s: int = 5) -> dict[str, Any]:
    """Import an SOP (Word, PowerPoint, PDF, Markdown, HTML) into a draft script; rewritten by
    an LLM, the run then waits here for a reviewer to approve it.

    Args:
        file: Path of the document on the machine that runs the import (.docx, .pptx, .pdf,
            .md, .html).
        out: The script to write; empty: beside the document, NAME.yaml (pictures in
            NAME.pictures/).
        language: The document's language, e.g. th or zh-TW; empty: recognised from its text.
        style: The script's style (templates/styles/NAME.yaml).
        llm_url: An OpenAI-compatible API base to rewrite the text as narration, e.g.
            http://127.0.0.1:11434/v1 (Ollama); its key from $SOPREEL_LLM_API_KEY or
            $OPENAI_API_KEY on this machine. Empty: no rewrite.
        llm_model: The LLM's model name, with llm_url.
        llm_timeout_s: Seconds to wait for each of the LLM's answers.
        overwrite: Replace an existing script (and its pictures).
        review_timeout_s: How long the run waits for the reviewer.
        poll_interval_s: How often the paused run checks for the reviewer's answer.
    """
    if bool(llm_url) != bool(llm_model):
        raise ValueError("llm_url and llm_model go together")
    result = import_task(file, out, language, style, llm_url, llm_model, llm_timeout_s,
                         overwrite)
    create_markdown_artifact(key="imported-script", markdown=_draft_markdown(result),
                             description=f"Draft script imported from {Path(file).name}")
    outcome: dict[str, Any] = {"script": str(result.script), "scenes": result.scenes,
                               "photos": result.photos, "language": result.language,
                               "warnings": result.warnings}
    if not result.rewritten:
        return outcome
    from stages.importer.review import ImportReview

    return {**outcome, **run_review(ImportReview(result.script), result.script.name,
                                    review_timeout_s, poll_interval_s)}


def _draft_markdown(result: ImportResult) -> str:
    from stages.script import load_script

    script = load_script(result.script, only_languages=[], allow_unreviewed=True).script
    lines = [f"# {script.title}", f"`{result.script}`: {result.scenes} scenes, "
             f"{result.photos} photos, language {result.language}", "",
             "| scene | caption | narration | from |", "|---|---|---|---|"]
    for scene in script.scenes:
        source = scene.source.model_dump(exclude_none=True, exclude={"file", "text"}) \
            if scene.source else {}
        where = ", ".join(f"{k} {v}" for k, v in source.items())
        cells = [scene.id, scene.caption or "", scene.narration, where]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if result.warnings:
        lines += ["", "**Warnings**", *(f"- {w}" for w in result.warnings)]
    if result.rewritten:
        lines += ["", "An LLM rewrote this draft: approve it in the form of this run (or "
                  f"`sopreel review {result.script} --approve --reviewer NAME`)."]
    return "\n".join(lines)
