"""Backend `elevenlabs`: narration by ElevenLabs' text-to-speech API.

Each sentence (normalised for speech, split where the model's text limit needs it) is one
POST to `{url}/v1/text-to-speech/{voice_id}/with-timestamps`: raw PCM comes back base64-encoded
with the start and end of every character. The sentence's audio is cut to its first and last
spoken character, so the spans the subtitles follow are the service's own timing.

The stock voice is `speaker:`, an ElevenLabs voice id. A cloned voice is the ElevenLabs voice
linked to the person's enrolment (`sopreel voices link ID --elevenlabs VOICE_ID`); it speaks
only while their consent covers the language and use, checked before every request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from stages import languages
from stages.cloud import ContentRefused, Cost, ServiceBackend, ServiceError, ServiceOptions
from stages.errors import SopreelError
from stages.narrate import (
    NarrateBackend,
    NarrateOptions,
    NarrationRequest,
    VoicePlan,
    join_sentences,
    speak_sentences,
)
from stages.narrate.speech import speakable

# What each model speaks (ElevenLabs' model docs, ISO 639-1); a model not listed is trusted.
V2_LANGUAGES = ("en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr",
                "fil", "pl", "sv", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da",
                "ta", "uk", "ru")
MODEL_LANGUAGES = {"eleven_multilingual_v2": V2_LANGUAGES,
                   "eleven_flash_v2_5": (*V2_LANGUAGES, "hu", "no", "vi"),
                   "eleven_turbo_v2_5": (*V2_LANGUAGES, "hu", "no", "vi")}
TEXT_LIMIT = 5000        # characters in one request (v3's; the v2 models take more)
EDGE_S = 0.04            # kept before the first and after the last spoken character


class ElevenLabsOptions(ServiceOptions, NarrateOptions):
    url: str = Field("https://api.elevenlabs.io", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    model: str = Field("eleven_multilingual_v2", description="an ElevenLabs model id")
    speaker: str | None = Field(None, description="the ElevenLabs voice id of the stock voice")
    stability: float = Field(0.5, ge=0, le=1)
    similarity_boost: float = Field(0.75, ge=0, le=1)
    style: float = Field(0.0, ge=0, le=1)
    speed: float = Field(1.0, ge=0.7, le=1.2)
    speaker_boost: bool = True
    seed: int = Field(1234, ge=0, le=4294967295 - 1000)
    output_format: Literal["pcm_16000", "pcm_22050", "pcm_24000"] = "pcm_24000"
    enforce_language: bool = Field(False, description=(
        "send the language code (the Flash/Turbo v2.5 and v3 models accept it; v2 refuses it)"))


class ElevenLabsBackend(ServiceBackend, NarrateBackend):
    name = "elevenlabs"
    service = "ElevenLabs"
    key_variable = "ELEVENLABS_API_KEY"
    price_service = "elevenlabs"
    # ElevenLabs' terms give paid plans commercial use of the audio; the free plan does not.
    terms = "ElevenLabs Terms of Service (paid plan)"
    links_voice = "elevenlabs"
    Options = ElevenLabsOptions
    version = 1

    def __init__(self, options: ElevenLabsOptions):
        super().__init__(options)
        self.options: ElevenLabsOptions = options

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"xi-api-key": key}

    def voice_plan(self, language: str, clone: bool) -> VoicePlan:
        spoken = MODEL_LANGUAGES.get(self.options.model)
        if spoken is not None and language.split("-")[0] not in spoken:
            raise SopreelError(
                f"ElevenLabs' {self.options.model} does not speak {language}. Route it to a "
                f"model that does, e.g. `narrate: {{routes: [{{languages: [{language}], "
                f"backend: elevenlabs, model: eleven_v3}}]}}`.")
        if clone:
            return VoicePlan(True, f"cloned by ElevenLabs {self.options.model} (the ElevenLabs "
                                   "voice linked to the enrolment)")
        if not self.options.speaker:
            raise SopreelError("The elevenlabs narrator needs `speaker`: the ElevenLabs voice id "
                               "of the stock voice (ElevenLabs > Voices > the voice > ID).")
        return VoicePlan(False, f"ElevenLabs voice {self.options.speaker} "
                                f"({self.options.model})")

    def fits(self, text: str, language: str) -> bool:
        return len(text) <= TEXT_LIMIT

    def cost(self, request: NarrationRequest) -> Cost:
        """Characters sent: the sentences as read aloud (numbers and units spelled out)."""
        sent = sum(len(speakable(s, request.language)) for s in request.sentences)
        return self.price().of(sent)

    def narrate(self, request: NarrationRequest, out: Path,
                gate: Callable[[], None] | None = None) -> dict[str, Any]:
        options = self.options
        voice = request.service_voice or options.speaker
        if not voice:
            raise SopreelError("The elevenlabs narrator has no voice id to speak with.")
        rate = int(options.output_format.split("_")[1])
        usage = {"requests": 0, "characters": 0, "character_cost": 0}
        previous: list[str] = []

        def synthesise(text: str, seed: int) -> np.ndarray:
            if gate is not None:
                gate()   # consent, again, before every request
            samples = self._speak(voice, text, request, seed, previous[-1:], rate, usage)
            previous.append(text)
            return samples

        spoken = speak_sentences(request, rate, lambda text: self.fits(text, request.language),
                                 synthesise, options.seed)
        info = join_sentences(spoken, options.gap_s, out)
        return {**info, "voice": f"ElevenLabs voice {voice}", "cloned":
                request.service_voice is not None, "model": options.model,
                "license": self.license, "usage": usage, "cost": self.cost(request).record()}

    def _speak(self, voice: str, text: str, request: NarrationRequest, seed: int,
               previous: list[str], rate: int, usage: dict[str, int]) -> np.ndarray:
        """One request: the text's PCM, cut to its first and last spoken character."""
        options = self.options
        body: dict[str, Any] = {
            "text": text, "model_id": options.model, "seed": seed,
            "voice_settings": {"stability": options.stability,
                               "similarity_boost": options.similarity_boost,
                               "style": options.style, "speed": options.speed,
                               "use_speaker_boost": options.speaker_boost}}
        if previous:
            body["previous_text"] = previous[0]
        if options.enforce_language:
            body["language_code"] = languages.get(request.language).code.split("-")[0]
        client = self.client
        response = client.send("POST", f"/v1/text-to-speech/{voice}/with-timestamps",
                               params={"output_format": options.output_format}, json=body,
                               creates=True)
        if response.status_code != 200:
            detail = client.message(response)
            if "policy" in detail.lower() or "moderation" in detail.lower():
                raise ContentRefused(f"ElevenLabs refused to speak {text[:60]!r}: {detail}.")
            if response.status_code == 404 or "voice_not_found" in detail:
                raise ServiceError(f"ElevenLabs has no voice {voice} in this account ({detail}). "
                                   "Check `speaker` in the profile, or the voice linked with "
                                   "`sopreel voices link`.")
            raise client.refused(response, f"to speak {text[:60]!r}")
        answer = client.json(response, "a speech request")
        try:
            pcm = base64.b64decode(answer["audio_base64"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise ServiceError("ElevenLabs answered without audio (no audio_base64).") from None
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768
        usage["requests"] += 1
        usage["characters"] += len(text)
        usage["character_cost"] += _int(response.headers.get("character-cost"), len(text))
        return _spoken_span(samples, rate, answer.get("alignment"))


def _spoken_span(samples: np.ndarray, rate: int, alignment: Any) -> np.ndarray:
    """The audio from the first spoken character's start to the last one's end (a little
    either side), as the service timed them; the whole audio if it sent no timing."""
    try:
        characters = alignment["characters"]
        starts = alignment["character_start_times_seconds"]
        ends = alignment["character_end_times_seconds"]
        spoken = [i for i, c in enumerate(characters) if str(c).strip()]
        first, last = float(starts[spoken[0]]), float(ends[spoken[-1]])
    except (KeyError, IndexError, TypeError, ValueError):
        return samples
    begin = max(0, round((first - EDGE_S) * rate))
    end = min(len(samples), round((last + EDGE_S) * rate))
    return samples[begin:end] if end > begin else samples


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
