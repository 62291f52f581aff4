"""Marking synthetic media: what a viewer sees and hears, and what a machine reads.

Since August 2026 the EU AI Act (Article 50) requires synthetic audio and video to be marked
both visibly and machine-readably; China's labelling measures and GB 45438-2025 require an
explicit label (on the opening screen and around the video, and a spoken one for audio) and an
implicit one in the file's metadata. Every sopreel video therefore carries:

- an opening card with the notice in the video's language, read aloud by the video's narrator;
- a small label in a corner for the whole video;
- MP4 metadata tags: the notice, the IPTC digital source type, and GB 45438's `AIGC` record;
- in the manifest, the IPTC digital source type of the video and of every asset;
- when signing is configured, a C2PA manifest (`stages.provenance`).

Texts are data (`templates/disclosure.yaml`); a profile's `disclosure:` block can replace them
or turn parts off (the manifest then warns).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.errors import DataFileError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, problems_from

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = "trainedAlgorithmicMedia"            # made by a model trained on sampled content
ALGORITHMIC = "algorithmicMedia"               # made by an algorithm with no training data
COMPOSITE_TRAINED = "compositeWithTrainedAlgorithmicMedia"
COMPOSITE_SYNTHETIC = "compositeSynthetic"     # a composite of synthetic parts, none trained
_RANK = {None: 0, ALGORITHMIC: 1, TRAINED: 2}


def source_type_uri(term: str) -> str:
    return IPTC + term


def strongest(*types: str | None) -> str | None:
    """The source type of something made from parts of these types (trained wins)."""
    return max(types, key=lambda t: _RANK.get(t, 0), default=None)


def video_source_type(asset_types: list[str | None]) -> str:
    """The IPTC type of a video composited from assets of these types."""
    return COMPOSITE_TRAINED if TRAINED in asset_types else COMPOSITE_SYNTHETIC


# What a video's pictures are, which the notice says (templates/disclosure.yaml).
Pictures = Literal["generated", "mixed", "photos"]


class DisclosureText(BaseModel):
    """The notice and the label one video shows (a profile may set them per language)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notice: str = Field(min_length=1, max_length=300)
    label: str = Field(min_length=1, max_length=40)


class NoticeTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    generated: str = Field(min_length=1, max_length=300)
    mixed: str = Field(min_length=1, max_length=300)
    photos: str = Field(min_length=1, max_length=300)


class LanguageTexts(BaseModel):
    """A language's entry in templates/disclosure.yaml: a notice for each kind of pictures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notice: NoticeTexts
    label: str = Field(min_length=1, max_length=40)

    def for_pictures(self, pictures: Pictures) -> DisclosureText:
        return DisclosureText(notice=getattr(self.notice, pictures), label=self.label)


class DisclosureOptions(BaseModel):
    """A profile's `disclosure:` block. Everything is on unless the profile says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notice: bool = Field(True, description="open every video with the AI notice card")
    spoken: bool = Field(True, description="read the notice aloud in the video's language")
    label: bool = Field(True, description="an AI label in a corner for the whole video")
    seconds: float = Field(3.0, ge=1, le=15, description="least time the card is on screen")
    producer: str = Field("sopreel", min_length=1, max_length=120, description=(
        "who made the video, for GB 45438's ContentProducer (your organisation's name or "
        "filing number)"))
    text: dict[str, DisclosureText] = Field(default_factory=dict,
                                            description="replacement texts by language")

    def off(self) -> list[str]:
        """The parts the profile turned off, for a manifest warning."""
        return [name for name in ("notice", "spoken", "label") if not getattr(self, name)]


@cache
def default_texts() -> dict[str, LanguageTexts]:
    path = TEMPLATES / "disclosure.yaml"
    located = load_yaml(path, DataFileError)
    texts = {}
    for code, entry in (located.data or {}).items():
        try:
            texts[code] = LanguageTexts.model_validate(entry)
        except ValidationError as exc:
            raise DataFileError(path, problems_from(exc, LanguageTexts, located,
                                                    (code,))) from None
    return texts


def texts_for(language: str, options: DisclosureOptions,
              pictures: Pictures = "generated") -> tuple[DisclosureText, str | None]:
    """The notice (worded for what the pictures are) and label in `language`, and a warning
    when English stands in for it. A profile's own text is used as written."""
    if language in options.text:
        return options.text[language], None
    texts = default_texts()
    if language in texts:
        return texts[language].for_pictures(pictures), None
    return texts["en"].for_pictures(pictures), (
        f"{language}: the AI notice is shown in English (add a {language} text to "
        "templates/disclosure.yaml or the profile's disclosure.text)")


def mp4_tags(*, title: str, notice: str, source_type: str, producer: str,
             produce_id: str) -> dict[str, str]:
    """Metadata tags for the MP4 (written as `mdta` keys, which ffprobe and exiftool read)."""
    aigc = {"Label": "1", "ContentProducer": producer, "ProduceID": produce_id,
            "ReservedCode1": "", "ContentPropagator": "", "PropagateID": "",
            "ReservedCode2": ""}
    return {"title": title, "comment": f"AI-generated. {notice}",
            "description": notice, "ai_generated": "true",
            "digital_source_type": source_type_uri(source_type),
            "AIGC": json.dumps(aigc, ensure_ascii=False, separators=(",", ":"))}
