"""The studio narrate backend: coqui TTS, with XTTS cloning an enrolled, consenting voice.

`model` is a coqui model name (`tts_models/multilingual/multi-dataset/xtts_v2`) or a local folder
holding `config.json`, `model.pth` and, for XTTS, `vocab.json`: both load through coqui's own
`TTS(...)` entry point. XTTS clones from the voice's reference recording in the languages it
speaks; the stock voice there is one of the model's built-in speakers (`speaker`). A language
the model lacks (XTTS speaks neither Thai nor Vietnamese) needs a route in `languages`: a coqui
single-speaker model for it, e.g. `tts_models/tha/fairseq/vits`. Such a route speaks with that
model's own (stock) voice, also for a cloned voice, and the manifest says so.

Synthesis is per sentence, each sentence normalised for speech (`speech.speakable`) and seeded,
so a re-run with the same inputs makes the same audio, and each sentence's measured span drives
its subtitle.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stages import hub
from stages.assets import file_sha256
from stages.devices import free_memory, pick_device
from stages.errors import SopreelError
from stages.hub import HubWeights
from stages.licenses import UNKNOWN, license_of
from stages.models import SHA256, ModelSource, check_pinned, fingerprint
from stages.narrate import (
    NarrateBackend,
    NarrateOptions,
    NarrationRequest,
    VoicePlan,
    join_sentences,
    speak_sentences,
)

# XTTS-v2's languages (its config.json); used before the weights are on this machine.
XTTS_V2_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar",
                     "zh-cn", "hu", "ko", "ja", "hi")
XTTS_LICENSE = "Coqui Public Model License 1.0.0"   # non-commercial


class LanguageRoute(BaseModel):
    """How to speak a language the main model lacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="a coqui single-speaker model name or local folder")
    license: str | None = Field(None, description="the licence of that model's weights")


class CoquiOptions(NarrateOptions):
    model: str = "tts_models/multilingual/multi-dataset/xtts_v2"
    speaker: str | None = Field(None, description="the model's built-in speaker for 'stock'")
    languages: dict[str, LanguageRoute] = Field(default_factory=dict)
    speaker_similarity: float = Field(0.6, ge=0, le=1, description=(
        "least cosine similarity between the consent and reference recordings' speaker "
        "embeddings for a clone to be made"))
    license: str | None = Field(None, description="the main model's licence, if not XTTS-v2")
    sha256: str | None = Field(None, pattern=SHA256, description=(
        "pin a local model folder: its sha256 as the manifest records it"))
    seed: int = 1234
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class Route:
    """Which model speaks one language, and whether it clones the voice."""

    model: str
    language: str | None      # the model's own language code, None for a single-language model
    clones: bool
    note: str
    license: str


class CoquiBackend(NarrateBackend):
    name = "coqui"
    version = 2   # 2: resampled to 48 kHz by soxr
    Options = CoquiOptions
    loads_model = True
    source_type = "trainedAlgorithmicMedia"

    def __init__(self, options: CoquiOptions):
        super().__init__(options)
        self._models: dict[str, Any] = {}
        self._voices: dict[str, tuple[Any, Any]] = {}
        self._similarity: dict[tuple[str, str], float] = {}
        # XTTS keeps per-call state inside the model (the prompt's prefix embedding) and the
        # seed is process-wide: one synthesis at a time per loaded narrator.
        self._lock = threading.Lock()

    @property
    def license(self) -> str:  # type: ignore[override]
        options: CoquiOptions = self.options  # type: ignore[assignment]
        if options.license:
            return options.license
        known = license_of(options.model)
        return XTTS_LICENSE if known == UNKNOWN and _is_xtts(options.model) else known

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        """coqui's model list names a Hugging Face repo for XTTS (and files to leave out):
        pulled into the HF cache, where coqui looks for it."""
        found = [coqui_hub_weights(model, license)
                 for model, license in self.weights(languages)]
        return [weights for weights in found if weights is not None]

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        options: CoquiOptions = self.options  # type: ignore[assignment]
        routes = options.languages
        return list(dict.fromkeys(
            (routes[lang].model, routes[lang].license or license_of(routes[lang].model))
            if lang in routes else (options.model, self.license) for lang in languages))

    # ---------------------------------------------------------------- planning (no weights)

    def route(self, language: str, clone: bool) -> Route:
        """The model for `language`, or a clear error naming what the profile must add."""
        options: CoquiOptions = self.options  # type: ignore[assignment]
        if language in options.languages:
            chosen = options.languages[language].model
            note = (f"stock voice of {chosen}: {options.model} does not speak {language}, so "
                    "the enrolled voice is not cloned in this language" if clone
                    else f"stock voice of {chosen}")
            return Route(chosen, None, False, note,
                         options.languages[language].license or license_of(chosen))
        spoken = _model_languages(options.model)
        code = _xtts_code(language)
        if code not in spoken:
            raise SopreelError(
                f"The coqui narrator cannot speak {language}: {options.model} speaks "
                f"{', '.join(spoken)}. Add a route to the profile, e.g. "
                f"`narrate: {{languages: {{{language}: {{model: tts_models/<iso639-3>/fairseq/"
                f"vits}}}}}}`.")
        if clone and not _is_xtts(options.model):
            raise SopreelError(f"{options.model} cannot clone a voice; use an XTTS model, or "
                               "voice: stock.")
        if not clone and not options.speaker:
            raise SopreelError(f"The coqui narrator needs `speaker` (one of {options.model}'s "
                               "built-in voices) to speak with the stock voice.")
        note = (f"cloned by {options.model}" if clone
                else f"stock voice '{options.speaker}' of {options.model}")
        return Route(options.model, code, clone, note, self.license)

    def voice_plan(self, language: str, clone: bool) -> VoicePlan:
        route = self.route(language, clone)
        return VoicePlan(route.clones, route.note)

    # ------------------------------------------------------------------------------ work

    def load(self) -> None:
        """Nothing yet: a model is read on the first narration that is not already made, so
        a rebuild from the cache reads none."""

    def close(self) -> None:
        self._models.clear()
        self._voices.clear()
        free_memory()

    def identity(self) -> dict[str, Any]:
        """Options plus the content of local model files, so new weights mean new audio."""
        options: CoquiOptions = self.options  # type: ignore[assignment]
        models = [options.model, *(route.model for route in options.languages.values())]
        files = {model: fingerprint(ModelSource("folder", str(Path(model).expanduser())))
                 for model in models if Path(model).expanduser().is_dir()}
        return {**super().identity(), "model_files": files}

    def narrate(self, request: NarrationRequest, out: Path,
                gate: Callable[[], None] | None = None) -> dict[str, Any]:
        with self._lock:
            return self._narrate(request, out)

    def _narrate(self, request: NarrationRequest, out: Path) -> dict[str, Any]:
        import torch

        options: CoquiOptions = self.options  # type: ignore[assignment]
        route = self.route(request.language, clone=request.reference is not None)
        tts = self._model(route.model)

        def synthesise(piece: str, seed: int) -> np.ndarray:
            torch.manual_seed(seed)
            if route.language is None:
                wav = tts.tts(piece, split_sentences=False)
            else:
                latent, embedding = self._voice(route, request.reference)
                wav = tts.synthesizer.tts_model.inference(piece, route.language, latent,
                                                          embedding)["wav"]
            return np.asarray(wav.cpu() if hasattr(wav, "cpu") else wav, dtype=np.float32)

        spoken = speak_sentences(request, tts.synthesizer.output_sample_rate,
                                 lambda text: self._fits(route, text), synthesise, options.seed)
        info = join_sentences(spoken, options.gap_s, out)
        return {**info, "voice": route.note, "cloned": route.clones, "model": route.model,
                "license": route.license}

    def fits(self, text: str, language: str) -> bool:
        return self._fits(self.route(language, clone=False), text)

    def _fits(self, route: Route, text: str) -> bool:
        """XTTS's limits: its tokenizer's characters per language (past them audio degrades or
        is cut) and the model's `gpt_max_text_tokens` (past it, it refuses). Other coqui models
        (VITS) declare none."""
        if route.language is None:
            return True
        model = self._model(route.model).synthesizer.tts_model
        tokenizer = model.tokenizer
        if len(text) > tokenizer.char_limits.get(route.language.split("-")[0], 250):
            return False
        tokens = tokenizer.encode(text.strip().lower(), lang=route.language)
        return len(tokens) < model.args.gpt_max_text_tokens

    def speaker_embedding(self, recording: Path) -> np.ndarray:
        """XTTS's own speaker encoder (the one its decoder is conditioned on)."""
        from TTS.tts.models.xtts import load_audio

        model = self._model(self.options.model).synthesizer.tts_model  # type: ignore[attr-defined]
        audio = load_audio(str(recording), 22050).to(model.device)
        return model.get_speaker_embedding(audio, 22050).flatten().float().cpu().numpy()

    def same_speaker_score(self, reference: Path, consent: Path) -> float:
        """Cosine similarity of the two recordings' speaker embeddings (memoised by content)."""
        key = (file_sha256(reference), file_sha256(consent))
        with self._lock:
            if key not in self._similarity:
                a, b = self.speaker_embedding(reference), self.speaker_embedding(consent)
                self._similarity[key] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)
                                                       + 1e-12))
            return self._similarity[key]

    def _voice(self, route: Route, reference: Path | None) -> tuple[Any, Any]:
        """XTTS conditioning: the clone's latents from its reference, or a built-in speaker."""
        model = self._model(route.model).synthesizer.tts_model
        if reference is None:
            speaker = self.options.speaker  # type: ignore[attr-defined]
            speakers = model.speaker_manager.speakers if model.speaker_manager else {}
            if speaker not in speakers:
                raise SopreelError(f"{route.model} has no built-in speaker '{speaker}' "
                                   f"(it has: {', '.join(sorted(speakers)) or 'none'}).")
            voice = speakers[speaker]
            return voice["gpt_cond_latent"], voice["speaker_embedding"]
        key = file_sha256(reference)
        if key not in self._voices:
            self._voices[key] = model.get_conditioning_latents(audio_path=[str(reference)])
        return self._voices[key]

    def _model(self, model: str) -> Any:
        if model not in self._models:
            options: CoquiOptions = self.options  # type: ignore[assignment]
            folder = Path(model).expanduser()
            if model == options.model and options.sha256:
                if not folder.is_dir():
                    raise SopreelError("`sha256` pins a local coqui model folder; "
                                       f"'{model}' is a model name.")
                check_pinned(fingerprint(ModelSource("folder", str(folder))), options.sha256,
                             model, "narration model")
            pulled = coqui_hub_weights(model, self.license)
            snapshot = hub.pulled_snapshot(pulled) if pulled else None
            if pulled is not None and snapshot is None:
                hub.require(pulled)   # not here: the Hub must answer, or say so at once
            self._models[model] = _load(str(snapshot) if snapshot else model, options.device)
        return self._models[model]


def coqui_hub_weights(model: str, license: str) -> HubWeights | None:
    """The Hub repo coqui-tts downloads a model name from (its .models.json), if any."""
    from importlib.resources import files

    parts = model.split("/")
    if len(parts) != 4 or Path(model).expanduser().exists():
        return None
    try:
        listed = json.loads((files("TTS") / ".models.json").read_text(encoding="utf-8"))
        item = listed[parts[0]][parts[1]][parts[2]][parts[3]]
    except (OSError, KeyError, ValueError, ModuleNotFoundError):
        return None
    if "repo_id" not in item:
        return None
    return HubWeights(item["repo_id"], "coqui", "narration model", license,
                      allow=tuple(item.get("allow") or ()),
                      ignore=tuple(item.get("ignore") or ()), name=model)


def _load(model: str, device: str) -> Any:
    """A coqui model by name (downloaded to coqui's cache) or from a local folder.

    coqui checkpoints are pickles (model.pth); coqui-tts 0.28 reads them with
    `torch.load(weights_only=True)`, whose unpickler rebuilds tensors and plain containers
    only and runs no code. That is checked here rather than assumed."""
    from trainer import io as trainer_io
    from transformers.utils import logging as transformers_logging
    from TTS.api import TTS

    if not getattr(trainer_io, "_WEIGHTS_ONLY", False):
        raise SopreelError("This coqui-tts would load model.pth with a full unpickler, which "
                           "can run code; install torch >= 2.4 (weights_only loading).")

    transformers_logging.set_verbosity_error()   # XTTS's GPT config warnings mean nothing here
    folder = Path(model).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        checkpoint = folder if (folder / "vocab.json").is_file() else folder / "model.pth"
        if not config.is_file() or not Path(checkpoint).exists():
            raise SopreelError(f"{folder}: a coqui model folder needs config.json and model.pth "
                               "(and vocab.json for XTTS).")
        tts = TTS(model_path=str(checkpoint), config_path=str(config), progress_bar=False)
    elif "/" in model and not model.startswith(("tts_models/", "voice_conversion_models/")):
        raise SopreelError(f"coqui model '{model}' is neither a local folder nor a coqui model "
                           "name such as tts_models/multilingual/multi-dataset/xtts_v2.")
    else:
        tts = TTS(model_name=model, progress_bar=False)
    return tts.to(pick_device(device))


def _is_xtts(model: str) -> bool:
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        return _read_config(config).get("model") == "xtts"
    return "xtts" in model


def _model_languages(model: str) -> tuple[str, ...]:
    """The languages a model speaks, read from a local config, else known from its name."""
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        data = _read_config(config)
        return tuple(data.get("languages") or ())
    if "xtts" in model:
        return XTTS_V2_LANGUAGES
    parts = model.split("/")
    return (parts[1],) if len(parts) > 2 and parts[1] != "multilingual" else ()


def _read_config(config: Path) -> dict[str, Any]:
    try:
        return json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SopreelError(f"{config}: not a readable coqui config ({exc})") from None


def _xtts_code(language: str) -> str:
    """sopreel's BCP-47 codes to XTTS's: zh-TW and zh-CN are both 'zh-cn' (pinyin inside)."""
    return "zh-cn" if language.startswith("zh") else language.split("-")[0]
