"""Review flows: a person corrects and approves a machine's text in the Prefect UI.

`review-translation` takes a machine translation, `review-import` an LLM's rewrite of an
imported SOP (stages/review.py has both). The flow pauses with a form holding the machine's
text, each field described by the text it came from; the reviewer corrects it, gives their
name and approves. A draft that cannot be approved yet (a glossary term or a number missing)
is shown again with the reasons, until it is corrected (or, for glossary deviations in a
translation, the reviewer accepts them). The result is written exactly as `sopreel review
--approve` would write it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from stages.errors import SopreelError
from stages.review import Review, TranslationReview

ROUNDS = 5


def review_form(review: Review) -> type[RunInput]:
    """A form with one field per text to review, then the reviewer's name and decision."""
    fields: dict[str, Any] = {
        item.key: (str, Field(item.value, title=item.title, description=item.source or None))
        for item in review.fields()}
    fields["reviewer"] = (str, Field("", title="Your name (recorded as the reviewer)"))
    fields["approve"] = (bool, Field(False, title="Approve for builds"))
    fields["accept_deviations"] = (bool, Field(False, title="Accept the glossary deviations "
                                               "listed above (recorded; translations only)"))
    return create_model("Review", __base__=RunInput, **fields)


def run_review(review: Review, label: str, timeout_s: int, poll_interval_s: int
               ) -> dict[str, Any]:
    """Pause for the reviewer until approved, saved unapproved, or out of rounds."""
    logger = get_run_logger()
    message = ""
    for round_ in range(ROUNDS):
        form = review_form(review)
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=review.summary() + message),
            timeout=timeout_s, poll_interval=poll_interval_s, key=f"review-{round_}")
        values = answer.model_dump()
        review.correct({k: v for k, v in values.items() if isinstance(v, str)})
        if not values["approve"]:
            review.save()
            logger.info("%s: corrections saved, not approved", label)
            return {"status": review.status()}
        try:
            line = review.approve(values["reviewer"], values["accept_deviations"])
        except SopreelError as exc:
            message = f"\n\n**Not approved yet:** {exc}"
            review.save()
            continue
        review.save()
        logger.info(line)
        return {"status": "reviewed", "reviewer": values["reviewer"].strip()}
    return {"status": review.status()}


@flow(name="review-translation", log_prints=True)
def review_translation(script: str, language: str, timeout_s: int = 24 * 3600,
                       poll_interval_s: int = 5) -> dict[str, Any]:
    """Pause for a reviewer to correct and approve the machine translation of `script` into
    `language`; returns the new status."""
    review = TranslationReview(Path(script), language)
    return {"language": language, **run_review(review, language, timeout_s, poll_interval_s)}


@flow(name="review-import", log_prints=True)
def review_import(script: str, timeout_s: int = 24 * 3600,
                  poll_interval_s: int = 5) -> dict[str, Any]:
    """Pause for a reviewer to check an imported script's LLM rewrite against the document
    and approve it; returns the new status."""
    from stages.importer.review import ImportReview

    review = ImportReview(Path(script))
    return {"script": script, **run_review(review, Path(script).name, timeout_s,
                                           poll_interval_s)}
