"""The `review-translation` flow: a person approves a machine translation in the Prefect UI.

The flow pauses with a form holding the draft (title, every scene's narration and caption) next
to the source text; the reviewer corrects it, gives their name and approves. A draft that misses
a glossary term is shown again with the misses listed, until it is corrected or the reviewer
accepts the deviations. The result is written to the script's translations file, exactly as
`sopreel review --approve` would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from stages.errors import SopreelError
from stages.glossary import load_glossary
from stages.script import Script, load_script
from stages.translations import (
    Draft,
    approve,
    check_fresh,
    edited,
    load_draft,
    review_text,
    save_draft,
)

ROUNDS = 5


def review_form(script: Script, current: Draft) -> type[RunInput]:
    """A form with one field per text to review; scene fields are numbered (ids may have '-')."""
    fields: dict[str, Any] = {
        "title": (str, Field(current.title or "", title="Title", description=script.title))}
    for index, scene in enumerate(script.scenes):
        draft = current.scenes[scene.id]
        fields[f"narration_{index}"] = (str, Field(draft.narration, title=f"{scene.id}: narration",
                                                   description=scene.narration))
        if scene.caption:
            fields[f"caption_{index}"] = (str, Field(draft.caption or "",
                                                     title=f"{scene.id}: caption",
                                                     description=scene.caption))
    fields["reviewer"] = (str, Field("", title="Your name (recorded as the reviewer)"))
    fields["approve"] = (bool, Field(False, title="Approve this translation for builds"))
    fields["accept_deviations"] = (bool, Field(False, title="Accept the glossary deviations "
                                               "listed above (recorded)"))
    return create_model("TranslationReview", __base__=RunInput, **fields)


def _answer_texts(script: Script, answer: RunInput) -> dict[str, tuple[str, str | None]]:
    values = answer.model_dump()
    return {scene.id: (values[f"narration_{i}"], values.get(f"caption_{i}"))
            for i, scene in enumerate(script.scenes)}


@flow(name="review-translation", log_prints=True)
def review_translation(script: str, language: str, timeout_s: int = 24 * 3600,
                       poll_interval_s: int = 5) -> dict[str, Any]:
    """Pause for a reviewer to correct and approve the machine translation of `script` into
    `language`; returns the new status."""
    logger = get_run_logger()
    path = Path(script)
    loaded = load_script(path, only_languages=[])
    current = load_draft(path, language)
    check_fresh(current, loaded.script, language)   # nothing to review until re-drafted
    message = ""
    for round_ in range(ROUNDS):
        form = review_form(loaded.script, current)
        description = review_text(loaded.script, language, current) + message
        answer = pause_flow_run(wait_for_input=form.with_initial_data(description=description),
                                timeout=timeout_s, poll_interval=poll_interval_s,
                                key=f"review-{round_}")
        values = answer.model_dump()
        current = edited(current, values["title"], _answer_texts(loaded.script, answer))
        if not values["approve"]:
            save_draft(path, language, current)
            logger.info("%s: corrections saved, not approved", language)
            return {"language": language, "status": current.status}
        try:
            current = approve(loaded.script, language, current, load_glossary(),
                              reviewer=values["reviewer"],
                              accept_deviations=values["accept_deviations"])
        except SopreelError as exc:
            message = f"\n\n**Not approved yet:** {exc}"
            save_draft(path, language, current)
            continue
        save_draft(path, language, current)
        logger.info("%s: approved by %s", language, current.reviewer)
        return {"language": language, "status": "reviewed", "reviewer": current.reviewer}
    return {"language": language, "status": current.status}
