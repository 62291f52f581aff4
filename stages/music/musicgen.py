"""Backend `musicgen`: MusicGen through transformers (`MusicgenForConditionalGeneration`).

`model` is a Hugging Face id (facebook/musicgen-small, -medium, -large, -melody, the -stereo
ones) or a local folder, loaded with `from_pretrained`; audiocraft itself cannot be installed
beside the rest (it pins torch 2.1). MusicGen writes at most 30 s at a time, so a longer bed is
made of windows: each after the first is given the last `context_s` of the one before as an
audio prompt (its EnCodec codes) and carries the music on from there. The window it returns
starts with that context, decoded again, which is what lets `stages.music.bed` crossfade the
join where both sides are the same sound.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from stages.errors import SopreelError
from stages.media import SAMPLE_RATE, read_wav, write_wav
from stages.models import LOAD_ERRORS, ModelBackend, ModelOptions, ModelSlot, ModelSource
from stages.music import (
    ContinuingOptions,
    MusicBackend,
    MusicRequest,
    model_audio_to_bed,
    resample_tensor,
)

MUSICGEN_TYPES = ("musicgen", "musicgen_melody")
MAX_WINDOW_S = 30.0    # what MusicGen was trained on


class MusicgenOptions(ContinuingOptions, ModelOptions):
    model: str = "facebook/musicgen-small"
    window_s: float = Field(MAX_WINDOW_S, ge=2, le=MAX_WINDOW_S,
                            description="seconds per generation, context included")
    guidance: float = Field(3.0, ge=0, le=20,
                            description="classifier-free guidance; 1 or less: none")
    temperature: float = Field(1.0, gt=0, le=5)
    top_k: int = Field(250, ge=0, le=4096)


class MusicgenBackend(ModelBackend, MusicBackend):
    name = "musicgen"
    version = 1
    Options = MusicgenOptions

    def __init__(self, options: MusicgenOptions):
        super().__init__(options)
        self.options: MusicgenOptions = options
        self._slot = ModelSlot(options, "music model")

    def use_model(self, model: Any, processor: Any) -> None:
        """Run a model built elsewhere (the GPU benchmark's random-weight ones), placed as a
        loaded one would be."""
        self._slot.use((self._place(model), processor))

    def generate(self, request: MusicRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        import torch

        options = self.options
        with self._slot.lock:
            model, processor = self._slot.get(self._load)
            codec = model.config.audio_encoder
            inputs = processor(text=[request.prompt], padding=True, return_tensors="pt")
            arguments: dict[str, Any] = {**inputs.to(model.device)}
            context = 0
            if request.continue_from is not None:
                arguments["decoder_input_ids"], context = _prompt_codes(
                    model, request.continue_from, codec.sampling_rate, codec.frame_rate)
            new = round(options.window_s * codec.frame_rate) - context
            # MusicGen's delay pattern runs each codebook one step behind the one before, so
            # `new` frames take `new` steps plus one per codebook (per channel) after the first.
            steps = new + model.decoder.config.num_codebooks // _channels(model) - 1
            if on_progress is not None:   # (MusicGen's generate drops a `streamer`)
                arguments["logits_processor"] = [_StepCounter(on_progress, steps)]
            torch.manual_seed(request.seed)
            with torch.inference_mode():
                audio = model.generate(**arguments, max_new_tokens=steps, do_sample=True,
                                       guidance_scale=options.guidance,
                                       temperature=options.temperature, top_k=options.top_k)
        samples = model_audio_to_bed(audio[0], codec.sampling_rate)
        write_wav(out, samples)
        return {"pipeline": type(model).__name__, "seed": request.seed,
                "guidance": options.guidance, "seconds": round(len(samples) / SAMPLE_RATE, 6),
                "context_s": context / codec.frame_rate, "model_rate": codec.sampling_rate,
                **self._slot.weights_facts()}

    def _load(self, source: ModelSource) -> tuple[Any, Any]:
        from transformers import AutoConfig, AutoModelForTextToWaveform, AutoProcessor

        options = self.options
        try:
            config = AutoConfig.from_pretrained(source.load_from, revision=options.revision)
            if config.model_type not in MUSICGEN_TYPES:
                raise SopreelError(f"The music model '{options.model}' is a {config.model_type} "
                                   f"model, not MusicGen ({' or '.join(MUSICGEN_TYPES)}).")
            processor = AutoProcessor.from_pretrained(source.load_from, revision=options.revision)
            model = AutoModelForTextToWaveform.from_pretrained(
                source.load_from, revision=options.revision, dtype=self._slot.dtype(),
                use_safetensors=None if options.allow_pickle else True)
        except LOAD_ERRORS as exc:
            raise self._slot.load_error(exc) from None
        return self._place(model), processor

    def _place(self, model: Any) -> Any:
        model.to(self._slot.device()).eval()
        model.audio_encoder.float()    # the codec is small and its output is the audio
        return model


def _channels(model: Any) -> int:
    return int(getattr(model.decoder.config, "audio_channels", 1))


def _prompt_codes(model: Any, wav: Path, rate: int, frame_rate: int) -> tuple[Any, int]:
    """The end of `wav` as the decoder's prompt: EnCodec codes of a whole number of frames,
    per channel (a stereo model interleaves left and right codebooks), and the frame count."""
    import torch

    samples, wav_rate = read_wav(wav, mono=False)
    audio = resample_tensor(torch.from_numpy(samples.T.copy()), wav_rate, rate)
    hop = rate // frame_rate
    frames = audio.shape[1] // hop
    if frames == 0:
        raise SopreelError(f"{wav.name} is too short to continue from")
    channels = _channels(model)
    audio = audio[:, audio.shape[1] - frames * hop:]
    audio = audio.mean(0, keepdim=True) if channels == 1 else audio[:2]
    with torch.inference_mode():
        codes = [model.audio_encoder.encode(
                     audio[None, c:c + 1].to(model.device, torch.float32)).audio_codes[0]
                 for c in range(channels)]                       # each (1, codebooks, frames)
    stacked = torch.stack(codes, dim=2)                          # (1, codebooks, channels, frames)
    return stacked.reshape(-1, stacked.shape[-1]), frames


class _StepCounter:
    """A logits processor that changes nothing and reports each generation step done."""

    def __init__(self, on_progress: Callable[[float], None], steps: int):
        self.on_progress, self.steps, self.done = on_progress, max(1, steps), 0

    def __call__(self, _input_ids: Any, scores: Any) -> Any:
        self.done += 1
        self.on_progress(min(1.0, self.done / self.steps))
        return scores
