"""Narrate backend `omnivoice`: k2-fsa's OmniVoice, zero-shot cloning in 600+ languages.

`model` is a Hugging Face id (k2-fsa/OmniVoice) or a local folder holding the model's
config.json and weights, its text tokenizer and `audio_tokenizer/` (a HiggsAudioV2 tokenizer),
loaded with `OmniVoice.from_pretrained` exactly as the library does for users.

A clone is made from the enrolled, consenting voice's reference recording and its transcript
(`sopreel voices add --reference-text`, signed into the consent ledger). The stock voice is a
described voice (OmniVoice's voice design: `stock: {design: "female, middle-aged"}`) or a
licensed recording with its transcript (`stock: {recording: ..., transcript: ..., license:
...}`), never a person who did not consent. Speaker similarity, for the consent check and on
every cloned narration, is measured by a speaker-verification model (`speaker_encoder`, WavLM
x-vectors by default), the same one both times.

Like the coqui backend: one sentence at a time, normalised for speech, seeded, a sentence too
long for the model spoken in parts, and every sentence's span measured.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.assets import file_sha256
from stages.errors import SopreelError
from stages.hub import HubWeights
from stages.licenses import license_of
from stages.media import read_wav
from stages.models import LOAD_ERRORS, ModelBackend, ModelOptions, ModelSlot, ModelSource
from stages.narrate import (
    NarrateBackend,
    NarrateOptions,
    NarrationRequest,
    VoicePlan,
    join_sentences,
    speak_sentences,
)

# OmniVoice makes speech longer than this in chunks of its own (`audio_chunk_duration`); sopreel
# splits such a sentence itself instead, at the clause boundaries of its language.
MAX_PART_S = 15.0
FRAME_RATE = 25               # of OmniVoice's duration estimate (its audio tokenizer's frames)
SPEAKER_RATE = 16000          # what speaker-verification models (WavLM, ECAPA) listen at


class StockVoice(BaseModel):
    """The voice for `voice: stock`: described (voice design) or a licensed recording."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    design: str | None = Field(None, description=(
        "OmniVoice voice design, e.g. 'female, middle-aged, moderate pitch, british accent'"))
    recording: Path | None = Field(None, description="a recording you hold a licence for")
    transcript: str | None = Field(None, description="what is said in `recording`")
    license: str | None = Field(None, description="the recording's licence")

    @model_validator(mode="after")
    def _one_kind(self) -> StockVoice:
        if (self.design is None) == (self.recording is None):
            raise ValueError("give either `design` (a described voice) or `recording` (a "
                             "licensed recording with its `transcript` and `license`)")
        if self.recording is not None and not (self.transcript and self.license):
            raise ValueError("a stock `recording` needs its `transcript` and its `license`")
        return self


class OmniVoiceOptions(ModelOptions, NarrateOptions):
    model: str = "k2-fsa/OmniVoice"
    stock: StockVoice = StockVoice(design="female, middle-aged, moderate pitch")
    steps: int = Field(32, ge=1, le=128, description="iterative decoding steps (num_step)")
    guidance: float = Field(2.0, ge=0, le=10, description="classifier-free guidance")
    speed: float | None = Field(None, gt=0.5, lt=2, description="faster > 1 > slower")
    speaker_encoder: str = Field("microsoft/wavlm-base-plus-sv", description=(
        "speaker-verification model (WavLMForXVector or similar) for the similarity checks"))
    speaker_similarity: float = Field(0.86, ge=0, le=1, description=(
        "least cosine similarity between the consent and reference recordings' speaker "
        "embeddings for a clone to be made"))
    max_part_s: float = Field(MAX_PART_S, ge=1, le=MAX_PART_S, description=(
        "the longest speech made in one piece; a longer sentence is spoken in parts"))
    seed: int = 1234


class OmniVoiceBackend(ModelBackend, NarrateBackend):
    name = "omnivoice"
    version = 1
    Options = OmniVoiceOptions
    needs_reference_text = True

    def __init__(self, options: OmniVoiceOptions):
        super().__init__(options)
        self.options: OmniVoiceOptions = options
        self._slot = ModelSlot(options, "narration model")
        self._encoder = ModelSlot(ModelOptions(model=options.speaker_encoder,
                                               device=options.device), "speaker encoder")
        self._prompts: dict[tuple[str, str], Any] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()   # the seed is process-wide: one synthesis at a time

    # ---------------------------------------------------------------- planning (no weights)

    def preflight(self) -> None:
        super().preflight()
        stock = self.options.stock
        if stock.recording is not None and not stock.recording.expanduser().is_file():
            raise SopreelError(f"The stock voice recording {stock.recording} does not exist.")

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        return [*super().hub_weights(languages), *self._encoder.hub_weights()]

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        used = [(self.options.model, self.license)]
        stock = self.options.stock
        if stock.recording is not None:
            used.append((f"stock voice {stock.recording.name}", license_of("", stock.license)))
        return used

    def voice_plan(self, language: str, clone: bool) -> VoicePlan:
        _language_id(language)   # refuses a language the model does not speak
        stock = self.options.stock
        if clone:
            return VoicePlan(True, f"cloned by {self.options.model}")
        if stock.design is not None:
            _check_design(stock.design)
            return VoicePlan(False, f"described voice '{stock.design}' of {self.options.model}")
        return VoicePlan(False, f"stock recording {stock.recording.name} ({stock.license}) "
                         f"spoken by {self.options.model}")

    def fits(self, text: str, language: str) -> bool:
        """OmniVoice's own limit: speech its duration estimator puts at `max_part_s` or less
        (what it would otherwise cut into chunks itself)."""
        from omnivoice.utils.duration import RuleDurationEstimator

        # Its estimate scales a reference's pace; this is the one it uses when it has none.
        frames = RuleDurationEstimator().estimate_duration(text, "Nice to meet you.", 25)
        return frames / FRAME_RATE <= self.options.max_part_s

    # ------------------------------------------------------------------------------ work

    def load(self) -> None:
        self._slot.pin()

    def close(self) -> None:
        self._prompts.clear()
        self._encoder.release()
        super().close()

    def use_model(self, model: Any) -> None:
        """Run a model built elsewhere (the GPU benchmark's random-weight one)."""
        self._slot.use(model)

    def narrate(self, request: NarrationRequest, out: Path,
                gate: Callable[[], None] | None = None) -> dict[str, Any]:
        with self._lock, self._slot.lock:
            return self._narrate(request, out)

    def _narrate(self, request: NarrationRequest, out: Path) -> dict[str, Any]:
        import torch

        options = self.options
        plan = self.voice_plan(request.language, clone=request.reference is not None)
        model = self._slot.get(self._load)
        voice = self._voice(model, request)
        code = _language_id(request.language)

        def synthesise(piece: str, seed: int) -> np.ndarray:
            torch.manual_seed(seed)
            wav = model.generate(text=piece, language=code, num_step=options.steps,
                                 guidance_scale=options.guidance, speed=options.speed,
                                 postprocess_output=False, **voice)[0]
            return np.asarray(wav, dtype=np.float32)

        spoken = speak_sentences(request, model.sampling_rate,
                                 lambda text: self.fits(text, request.language), synthesise,
                                 options.seed)
        info = join_sentences(spoken, options.gap_s, out)
        stock = options.stock
        license = (self.license if plan.clones or stock.recording is None
                   else f"{self.license}; stock recording {stock.license}")
        return {**info, "voice": plan.note, "cloned": plan.clones, "license": license,
                "language_id": code, **self._slot.weights_facts()}

    def _voice(self, model: Any, request: NarrationRequest) -> dict[str, Any]:
        """What `generate` is given for the voice: a clone prompt (the reference and what it
        says), or the stock voice's description or licensed recording."""
        stock = self.options.stock
        if request.reference is not None:
            if not request.reference_text:
                raise SopreelError(
                    f"Voice '{request.voice}': OmniVoice clones from the reference recording "
                    "and its transcript, and none was recorded. Add it with `sopreel voices "
                    f"transcript {request.voice} --text \"...\"`.")
            recording, transcript = request.reference, request.reference_text
        elif stock.recording is not None:
            recording, transcript = stock.recording.expanduser(), stock.transcript or ""
        else:
            return {"instruct": stock.design}
        key = (file_sha256(recording), transcript)
        if key not in self._prompts:
            self._prompts[key] = model.create_voice_clone_prompt(ref_audio=str(recording),
                                                                 ref_text=transcript)
        return {"voice_clone_prompt": self._prompts[key]}

    def _load(self, source: ModelSource) -> Any:
        from omnivoice import OmniVoice

        try:
            return OmniVoice.from_pretrained(source.load_from, revision=self.options.revision,
                                             dtype=self._slot.dtype(),
                                             device_map=self._slot.device())
        except LOAD_ERRORS as exc:
            raise self._slot.load_error(exc) from None

    # ------------------------------------------------------------------ speaker similarity

    def speaker_embedding(self, recording: Path) -> np.ndarray:
        """The speaker-verification model's embedding of a recording (16 kHz mono)."""
        import soxr
        import torch

        key = file_sha256(recording)
        if key not in self._embeddings:
            samples, rate = read_wav(recording)
            audio = soxr.resample(samples, rate, SPEAKER_RATE) if rate != SPEAKER_RATE \
                else samples
            model, extractor = self._encoder.get(self._load_encoder)
            inputs = extractor(audio, sampling_rate=SPEAKER_RATE, return_tensors="pt")
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # torch on WavLM's masks
                embedding = model(**inputs.to(model.device)).embeddings[0]
            self._embeddings[key] = embedding.float().cpu().numpy()
        return self._embeddings[key]

    def same_speaker_score(self, reference: Path, consent: Path) -> float:
        """Cosine similarity of the two recordings' speaker embeddings."""
        with self._encoder.lock:
            a, b = (self.speaker_embedding(r).astype(np.float64) for r in (reference, consent))
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        return float(a @ b / norms) if norms > 0 else 0.0

    def _load_encoder(self, source: ModelSource) -> tuple[Any, Any]:
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        try:
            extractor = AutoFeatureExtractor.from_pretrained(source.load_from)
            model = AutoModelForAudioXVector.from_pretrained(
                source.load_from, use_safetensors=None if self.options.allow_pickle else True)
        except LOAD_ERRORS as exc:
            raise self._encoder.load_error(exc) from None
        return model.to(self._encoder.device()).eval(), extractor


def _language_id(language: str) -> str:
    """OmniVoice's id for a script language: the code itself, else its primary subtag
    (zh-CN and zh-TW are both 'zh'); an error for a language it does not speak."""
    from omnivoice.utils.lang_map import LANG_IDS

    for code in (language, language.split("-")[0].lower()):
        if code in LANG_IDS:
            return code
    raise SopreelError(f"OmniVoice does not speak {language} (it knows {len(LANG_IDS)} "
                       "languages by ISO 639 code, e.g. en, zh, th, vi).")


def _check_design(design: str) -> None:
    """The described voice in OmniVoice's own vocabulary, refused before any work if not."""
    from omnivoice.models.omnivoice import _resolve_instruct

    try:
        _resolve_instruct(design)
    except ValueError as exc:
        said = [line.strip() for line in str(exc).splitlines()
                if line.strip() and not line.startswith(("Tip", "Valid Chinese"))]
        raise SopreelError("narrate.stock.design: " + " ".join(said)) from None
