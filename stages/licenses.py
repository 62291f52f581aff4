"""Licences of model weights, and the gate that keeps non-commercial weights out of a
commercial build.

The table is data (`templates/model_licenses.yaml`): licence names with whether their terms
allow commercial use, and the licence of well-known weights by id. A profile's `license:`
option wins over the table (only the user knows the terms of a local fine-tune).

`--use commercial` (or `commercial: true` in a profile) makes `refuse_noncommercial` stop a
build before any work when a model it would use is under a licence that forbids commercial use,
or under a licence the table does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from stages.errors import DataFileError, Problem, SopreelError
from stages.paths import TEMPLATES
from stages.yamlfile import format_loc, load_yaml, problems_from

COMMERCIAL = "commercial"
UNKNOWN = "unknown: set `license` in the profile"


class LicenseTerms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    commercial: bool


class LicenseTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    licenses: dict[str, LicenseTerms]
    models: dict[str, str]


def table_path() -> Path:
    return TEMPLATES / "model_licenses.yaml"


@cache
def license_table() -> LicenseTable:
    """The table, with every model's licence checked to be one the table defines."""
    path = table_path()
    located = load_yaml(path, DataFileError)
    try:
        table = LicenseTable.model_validate(located.data)
    except ValidationError as exc:
        raise DataFileError(path, problems_from(exc, LicenseTable, located)) from None
    known = {name.lower() for name in table.licenses}
    problems = [Problem(located.line(("models", model)), format_loc(("models", model)),
                        f"licence {name!r} is not listed under `licenses`")
                for model, name in table.models.items() if name.lower() not in known]
    if problems:
        raise DataFileError(path, problems)
    return table


def license_of(model: str, given: str | None = None) -> str:
    """The profile's `license`, else the known licence of a model id, else a request to say."""
    if given:
        return given
    models = {key.lower(): name for key, name in license_table().models.items()}
    return models.get(model.lower(), UNKNOWN)


def allows_commercial(license: str) -> bool | None:
    """Whether the licence's terms allow commercial use; None for a licence not in the table."""
    terms = {name.lower(): t for name, t in license_table().licenses.items()}
    found = terms.get(license.strip().lower())
    return None if found is None else found.commercial


def parse_use(text: str) -> tuple[str, bool]:
    """`--use training,commercial` -> ("training", True).

    The purpose (one word, `training` when only `commercial` is given) is what a cloned
    voice's consent must cover; `commercial` is a licence matter, so it switches the licence
    gate on and is not a purpose of its own."""
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    commercial = COMMERCIAL in words
    purposes = [word for word in words if word != COMMERCIAL]
    if len(purposes) > 1:
        raise SopreelError(f"--use {text!r}: give one purpose (like 'training'), optionally "
                           "with 'commercial', e.g. --use training,commercial.")
    return (purposes[0] if purposes else "training"), commercial


@dataclass(frozen=True)
class WeightsUse:
    """One set of model weights a build uses, and its licence."""

    stage: str
    model: str
    license: str

    @property
    def commercial(self) -> bool | None:
        return allows_commercial(self.license)

    def describe(self) -> str:
        if self.commercial is None:
            return (f"{self.stage}: {self.model} (licence {self.license!r} is not in "
                    f"{table_path().name}; set `license:` in the profile to one named there, "
                    "or add it after reading its terms)")
        return f"{self.stage}: {self.model} ({self.license})"


def refuse_noncommercial(used: list[WeightsUse], why: str) -> None:
    """Stop a commercial build that would use weights not licensed for it; `why` says what
    asked for a commercial build."""
    blocked = list(dict.fromkeys(w for w in used if w.commercial is not True))
    if blocked:
        raise SopreelError("\n".join([
            f"This build is for commercial use ({why}), but these models' licences do not "
            "allow it:", *(f"  {w.describe()}" for w in blocked),
            "Nothing was built. Choose models licensed for commercial use in the profile (or "
            "the draft profile, which uses none), or set `license:` there if you hold a "
            "commercial licence for them."]))
