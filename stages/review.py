"""What a person reviews before a machine's words reach workers: a machine translation
(`sopreel translate`) or an LLM's rewrite of an imported SOP (`sopreel import --llm`).

Both are reviewed the same way, on the command line (`sopreel review`) and as a form in the
Prefect UI (flows/review.py): the machine's text beside the text it came from, corrected in
place, then approved under the reviewer's name, or refused with what still has to be fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from stages.errors import SopreelError
from stages.glossary import load_glossary
from stages.script import load_script
from stages.translations import approve, check_fresh, edited, load_draft, review_text, save_draft


@dataclass(frozen=True)
class ReviewField:
    """One text a reviewer may correct, with the text it was made from."""

    key: str          # a form field name: letters, digits and '_'
    title: str
    value: str
    source: str


class Review(Protocol):
    """A machine's text under review."""

    def status(self) -> str: ...

    def summary(self) -> str:
        """The machine's text beside its source, as Markdown."""

    def fields(self) -> list[ReviewField]: ...

    def correct(self, values: dict[str, str]) -> None:
        """Take the reviewer's corrections (by field key); still unreviewed."""

    def approve(self, reviewer: str, accept_deviations: bool = False) -> str:
        """Mark it reviewed, or raise `SopreelError` saying what is still wrong; returns a line
        for the reviewer."""

    def save(self) -> Path: ...


def require_reviewer(reviewer: str) -> str:
    if not reviewer.strip():
        raise SopreelError("Approving needs the reviewer's name (--reviewer).")
    return reviewer.strip()


class TranslationReview:
    """A machine translation of a script into one language, kept in its sidecar file."""

    def __init__(self, script: Path, language: str):
        self.path = script
        self.language = language
        self.script = load_script(script, only_languages=[]).script
        self.draft = load_draft(script, language)
        check_fresh(self.draft, self.script, language)   # nothing to review until re-drafted

    def status(self) -> str:
        return self.draft.status

    def summary(self) -> str:
        return review_text(self.script, self.language, self.draft)

    def fields(self) -> list[ReviewField]:
        found = [ReviewField("title", "Title", self.draft.title or "", self.script.title)]
        for index, scene in enumerate(self.script.scenes):
            text = self.draft.scenes[scene.id]
            found.append(ReviewField(f"narration_{index}", f"{scene.id}: narration",
                                     text.narration, scene.narration))
            if scene.caption:
                found.append(ReviewField(f"caption_{index}", f"{scene.id}: caption",
                                         text.caption or "", scene.caption))
        return found

    def correct(self, values: dict[str, str]) -> None:
        texts = {scene.id: (values.get(f"narration_{i}", ""), values.get(f"caption_{i}"))
                 for i, scene in enumerate(self.script.scenes)}
        self.draft = edited(self.draft, values.get("title"), texts)

    def approve(self, reviewer: str, accept_deviations: bool = False) -> str:
        self.draft = approve(self.script, self.language, self.draft, load_glossary(),
                             reviewer=require_reviewer(reviewer),
                             accept_deviations=accept_deviations)
        extra = (f" with {len(self.draft.accepted_deviations)} accepted glossary deviation(s)"
                 if self.draft.accepted_deviations else "")
        return (f"{self.language}: approved by {self.draft.reviewer} on {self.draft.reviewed}"
                f"{extra}.")

    def save(self) -> Path:
        return save_draft(self.path, self.language, self.draft)
