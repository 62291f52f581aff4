"""Reviewing an LLM's rewrite of an imported SOP: the script itself is the draft.

Each scene's `source.text` keeps the document's own words; the reviewer compares, corrects the
narration, caption and visual prompt (in the script file, or in the Prefect UI's form) and
approves. Approval is refused while a scene's narration and caption lack a number or glossary
term its source has: the rewrite may say it differently, never leave it out.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stages.assets import write_text_atomic
from stages.errors import ScriptError, SopreelError
from stages.glossary import load_glossary
from stages.importer import render_script
from stages.importer.facts import missing_facts
from stages.review import ReviewField, require_reviewer
from stages.script import Script, load_script
from stages.yamlfile import LocatedYaml, problems_from


class ImportReview:
    """The LLM rewrite in an imported script, read from (and written back to) the file."""

    def __init__(self, script: Path):
        self.path = script
        loaded = load_script(script, only_languages=[], allow_unreviewed=True)
        if loaded.script.imported is None or loaded.script.imported.rewrite is None:
            raise SopreelError(f"{script.name} has no LLM rewrite to review (it was not imported "
                               "with --llm); to review a machine translation give --lang.")
        self.data: dict[str, Any] = yaml.safe_load(script.read_text(encoding="utf-8"))
        self.language = loaded.script.language

    @property
    def rewrite(self) -> dict[str, Any]:
        return self.data["imported"]["rewrite"]

    def status(self) -> str:
        return self.rewrite.get("status", "unreviewed")

    def problems(self) -> list[str]:
        """A line per scene whose narration and caption lack a fact of its source."""
        glossary = load_glossary()
        found = []
        for scene in self.data["scenes"]:
            source = (scene.get("source") or {}).get("text")
            if not source:
                continue
            said = f"{scene.get('narration', '')} {scene.get('caption') or ''}"
            missing = missing_facts(source, said, self.language, glossary)
            if missing:
                found.append(f"scene {scene['id']}: leaves out {', '.join(missing)}")
        return found

    def summary(self) -> str:
        rewrite, imported = self.rewrite, self.data["imported"]
        lines = [f"## {self.data['id']}: LLM rewrite of {imported['file']} ({self.status()})",
                 f"Rewritten {imported['date']} by `{rewrite['model']}` ({rewrite['server']})"
                 + (f"; reviewed by {rewrite['reviewer']} on {rewrite['reviewed']}"
                    if rewrite.get("reviewer") else ""), ""]
        for scene in self.data["scenes"]:
            source = scene.get("source") or {}
            where = ", ".join(f"{k} {v}" for k, v in source.items() if k not in ("file", "text"))
            lines.append(f"**{scene['id']}** ({where}): {source.get('text', '')}  \n"
                         f"→ {scene['narration']}")
            if scene.get("caption"):
                lines.append(f"*caption*: {scene['caption']}")
            lines.append("")
        problems = self.problems()
        if problems:
            lines += ["**Numbers and glossary terms the rewrite leaves out** (approval waits "
                      "for them):", *(f"- {p}" for p in problems)]
        return "\n".join(lines)

    def fields(self) -> list[ReviewField]:
        found = [ReviewField("title", "Title", self.data["title"], self.data["title"])]
        for index, scene in enumerate(self.data["scenes"]):
            source = (scene.get("source") or {}).get("text", "")
            found.append(ReviewField(f"narration_{index}", f"{scene['id']}: narration",
                                     scene["narration"], source))
            found.append(ReviewField(f"caption_{index}", f"{scene['id']}: caption",
                                     scene.get("caption") or "", ""))
            if "visual" in scene:
                found.append(ReviewField(f"visual_{index}", f"{scene['id']}: visual prompt",
                                         scene["visual"], ""))
        return found

    def correct(self, values: dict[str, str]) -> None:
        """The reviewer's corrections; an emptied narration or title keeps the old text."""
        if " ".join(values.get("title", "").split()):
            self.data["title"] = " ".join(values["title"].split())
        for index, scene in enumerate(self.data["scenes"]):
            for name in ("narration", "caption", "visual"):
                key = f"{name}_{index}"
                if key not in values:
                    continue
                text = " ".join(values[key].split())
                if text:
                    scene[name] = text
                elif name == "caption":
                    scene.pop("caption", None)

    def approve(self, reviewer: str, accept_deviations: bool = False) -> str:
        name = require_reviewer(reviewer)
        problems = self.problems()
        if problems:
            raise SopreelError(f"{self.path.name}: not approved: the rewrite leaves out numbers "
                               "or glossary terms the document has:\n  " + "\n  ".join(problems)
                               + f"\nPut them back in the narration or caption ({self.path.name}"
                               " or the Prefect UI form), then approve again.")
        self.rewrite.update(status="reviewed", reviewer=name,
                            reviewed=dt.date.today().isoformat(), notes=[])
        return f"{self.path.name}: the rewrite is approved by {name} on {self.rewrite['reviewed']}."

    def save(self) -> Path:
        """Checked as a script before it replaces the file."""
        try:
            Script.model_validate(self.data)
        except ValidationError as exc:
            located = LocatedYaml(self.path, self.data)
            raise ScriptError(self.path, problems_from(exc, Script, located)) from None
        write_text_atomic(self.path, render_script(self.data, self.path.name))
        return self.path
