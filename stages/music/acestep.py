"""Backend `ace-step`: ACE-Step 1.5 through diffusers' `AceStepPipeline` (text to music).

`model` is a Hugging Face id (ACE-Step/acestep-v15-xl-turbo-diffusers) or a local folder in
diffusers layout (model_index.json: the DiT, its condition encoder, a Qwen3 text encoder and the
Oobleck VAE), loaded with `from_pretrained`. ACE-Step makes 10 s to 10 minutes of 48 kHz stereo
in one generation, so a bed is one window of up to `window_s` (the model's own long form); a
longer bed is more windows, each continuing the one before through ACE-Step's repaint task:
the end of the previous window is given as source audio, kept, and the rest of the window is
painted after it. The window returned starts with that context, decoded again, which is what
`stages.music.bed` crossfades inside, as for MusicGen. Instrumental only: no lyrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from stages.diffusion import (
    DiffusionOptions,
    PipelineBackend,
    PipelineSlot,
    step_reporter,
)
from stages.errors import SopreelError
from stages.media import SAMPLE_RATE, read_wav, write_wav
from stages.models import LOAD_ERRORS, ModelSource
from stages.music import ContinuingOptions, MusicBackend, MusicRequest, model_audio_to_bed

MAX_WINDOW_S = 600.0    # ACE-Step 1.5 generates up to 10 minutes at once


class AceStepOptions(ContinuingOptions, DiffusionOptions):
    model: str = "ACE-Step/acestep-v15-xl-turbo-diffusers"
    window_s: float = Field(120.0, ge=10, le=MAX_WINDOW_S, description=(
        "seconds per generation, context included (ACE-Step makes up to 600 at once)"))
    steps: int = Field(8, ge=1, le=200, description="8 for the turbo model; 27-60 for base/sft")
    guidance: float = Field(7.0, ge=0, le=20, description="base/sft only; turbo ignores it")
    shift: float = Field(3.0, gt=0, le=10, description="the flow-matching schedule's shift")
    bpm: int | None = Field(None, ge=30, le=300)
    keyscale: str | None = Field(None, max_length=20, description="e.g. 'C major'")


class AceStepBackend(PipelineBackend, MusicBackend):
    name = "ace-step"
    version = 1
    Options = AceStepOptions

    def __init__(self, options: AceStepOptions):
        super().__init__(options)
        self.options: AceStepOptions = options
        self._slot = PipelineSlot(options, "music model")

    def generate(self, request: MusicRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        import torch

        options = self.options
        with self._slot.lock:
            pipe = self._slot.get(lambda source: self._configure(self._load(source)))
            arguments: dict[str, Any] = {
                "prompt": request.prompt, "lyrics": "", "audio_duration": options.window_s,
                "num_inference_steps": options.steps, "guidance_scale": options.guidance,
                "shift": options.shift, "bpm": options.bpm, "keyscale": options.keyscale,
                # A CPU generator draws the same noise on any device: same seed, same music.
                "generator": torch.Generator("cpu").manual_seed(request.seed),
            }
            context = 0.0
            if request.continue_from is not None:
                source, context = _context(request.continue_from, pipe.sample_rate)
                arguments.update(task_type="repaint", src_audio=_padded(source, options.window_s,
                                                                        pipe.sample_rate),
                                 repainting_start=context, repainting_end=options.window_s)
            if on_progress is not None:
                arguments["callback_on_step_end"] = step_reporter(on_progress, options.steps)
            with torch.inference_mode():
                audio = pipe(**arguments).audios[0]
        samples = model_audio_to_bed(audio, pipe.sample_rate)
        write_wav(out, samples)
        return {"pipeline": type(pipe).__name__, "seed": request.seed, "steps": options.steps,
                "turbo": bool(pipe.is_turbo), "seconds": round(len(samples) / SAMPLE_RATE, 6),
                "context_s": context, **self._slot.weights_facts()}

    def _load(self, source: ModelSource) -> Any:
        from diffusers import AceStepPipeline

        try:   # one dtype throughout: the pipeline decodes latents in the DiT's dtype
            return AceStepPipeline.from_pretrained(
                source.load_from, revision=self.options.revision, dtype=self._slot.dtype(),
                use_safetensors=None if self.options.allow_pickle else True)
        except LOAD_ERRORS as exc:
            raise self._slot.load_error(exc) from None

    def _configure(self, pipe: Any) -> Any:
        if type(pipe).__name__ != "AceStepPipeline":
            raise SopreelError(f"The music model '{self.options.model}' is a "
                               f"{type(pipe).__name__}, not ACE-Step (AceStepPipeline).")
        return self._slot.place(pipe)


def _context(wav: Path, rate: int) -> tuple[Any, float]:
    """The tail to continue from, as the pipeline's (channels, samples) tensor at its rate."""
    import torch

    samples, wav_rate = read_wav(wav, mono=False)
    if wav_rate != rate:
        raise SopreelError(f"{wav.name}: ACE-Step continues {rate} Hz audio, not {wav_rate} Hz")
    return torch.from_numpy(samples.T.copy()), round(samples.shape[0] / rate, 6)


def _padded(audio: Any, seconds: float, rate: int) -> Any:
    """The context followed by silence to the window's length: the part to paint."""
    import torch

    missing = max(0, round(seconds * rate) - audio.shape[1])
    return torch.cat([audio, torch.zeros(audio.shape[0], missing)], dim=1)
