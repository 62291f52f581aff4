"""Backends `wan-i2v` and `hunyuan-i2v`: a scene's still animated by an image-to-video model.

`wan-i2v` runs diffusers' `WanImageToVideoPipeline`: Wan2.1-I2V-14B 480P or 720P, and the
Wan2.2 image-to-video checkpoints that load with the same class. `hunyuan-i2v` runs
`HunyuanVideoImageToVideoPipeline`. `model` is a Hugging Face id or a local diffusers folder.

Each call makes one segment: `frames` frames (4k+1, as the video VAEs compress time by 4) at
`fps`, starting from the given image, seeded per scene and segment. The frame keeps the still's
aspect ratio within the pixel budget `width` x `height`, sides multiples of 16. The pipeline is
read on the first segment that is not cached and released when the stage ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageOps
from pydantic import Field, field_validator

from stages.animate import AnimateBackend, AnimateOptions, ClipRequest
from stages.diffusion import (
    Adapters,
    DiffusionOptions,
    LoraOptions,
    PipelineBackend,
    PipelineSlot,
    full_precision,
    step_reporter,
)
from stages.hub import HubWeights
from stages.images import read_rgb
from stages.media import size_at_aspect, write_video
from stages.models import LOAD_ERRORS, ModelSource

SIDE_MULTIPLE = 16   # VAE downsampling (8) x transformer patch (2)


def size_bucket(width: int, height: int, area: int, multiple: int = SIDE_MULTIPLE) -> tuple[int,
                                                                                             int]:
    """The frame for an image of `width` x `height`: about `area` pixels, the same aspect
    ratio, both sides multiples of `multiple` (as the Wan model card computes it)."""
    return size_at_aspect(width, height, area, multiple)


class VideoDiffusionOptions(AnimateOptions, DiffusionOptions):
    """What both image-to-video backends take."""

    size_from_picture = True   # the still sets the aspect (already the video frame's)

    width: int = Field(832, ge=32, le=3840, multiple_of=SIDE_MULTIPLE,
                       description="with height, the pixel budget; the still sets the aspect")
    height: int = Field(480, ge=32, le=2160, multiple_of=SIDE_MULTIPLE)
    steps: int = Field(40, ge=1, le=200)
    guidance: float = Field(5.0, ge=0, le=30)
    negative_prompt: str = Field(
        "static, still picture, frozen, blurred details, worst quality, low quality, JPEG "
        "compression artefacts, deformed, disfigured, extra fingers, poorly drawn hands, poorly "
        "drawn faces, messy background, subtitles, text, watermark",
        max_length=2000, description="added to the style's")
    flow_shift: float | None = Field(None, gt=0, le=20, description=(
        "the scheduler's shift; None keeps the model's (Wan: 3.0 suits 480p, 5.0 720p)"))
    max_sequence_length: int = Field(512, ge=16, le=1024)
    max_segments: int = Field(3, ge=1, le=50)
    crf: int = Field(12, ge=0, le=40)

    @field_validator("frames")
    @classmethod
    def _four_k_plus_one(cls, frames: int) -> int:
        if frames % 4 != 1:
            raise ValueError(f"expected 4k+1 frames (the video VAE packs 4 frames into one), "
                             f"like {frames // 4 * 4 + 1} or {frames // 4 * 4 + 5}")
        return frames


class VideoDiffusionBackend(PipelineBackend, AnimateBackend):
    """One segment per call from a diffusers image-to-video pipeline."""

    version = 1
    Options = VideoDiffusionOptions
    pipeline_class: ClassVar[str] = ""
    # Components kept in float32 when the rest runs in bf16 (the model cards' advice).
    full_precision: ClassVar[tuple[str, ...]] = ("vae",)

    def __init__(self, options: VideoDiffusionOptions):
        super().__init__(options)
        self.options: VideoDiffusionOptions = options
        self._slot = PipelineSlot(options, "video model")

    def animate(self, request: ClipRequest, out: Path,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        import torch

        options = self.options
        with self._slot.lock:
            pipe = self._slot.get(lambda source: self._configure(self._load(source)))
            image = _start_image(request.image, options.width * options.height)
            arguments = {
                "image": image, "prompt": request.prompt, "height": image.height,
                "width": image.width, "num_frames": options.frames,
                "num_inference_steps": options.steps,
                # A CPU generator draws the same noise on any device: same seed, same clip.
                "generator": torch.Generator("cpu").manual_seed(request.seed),
                "max_sequence_length": options.max_sequence_length, "output_type": "np",
                **self._guidance(request),
            }
            if on_progress is not None:
                arguments["callback_on_step_end"] = step_reporter(on_progress, options.steps)
            with torch.inference_mode():
                frames = pipe(**arguments).frames[0]
        write_video(frames, options.fps, out, options.crf)
        return {"pipeline": type(pipe).__name__, "seed": request.seed, "steps": options.steps,
                "guidance": options.guidance, "fps": options.fps, "frames": len(frames),
                "seconds": len(frames) / options.fps, "width": image.width,
                "height": image.height, "starts_with_image": self._starts_with_image(pipe),
                **self._slot.weights_facts(), **self._facts(pipe)}

    # ------------------------------------------------------------- what differs per model

    def _guidance(self, request: ClipRequest) -> dict[str, Any]:
        """Classifier-free guidance: a scale and the negative prompt."""
        return {"guidance_scale": self.options.guidance,
                "negative_prompt": request.negative_prompt or None}

    def _starts_with_image(self, pipe: Any) -> bool:
        """The segment's first frame is the start image (chaining then drops it as a repeat)."""
        return True

    def _facts(self, pipe: Any) -> dict[str, Any]:
        """What else the manifest records about a segment's model."""
        return {}

    # ---------------------------------------------------------------------- loading

    def _load(self, source: ModelSource) -> Any:
        import diffusers

        dtype = self._slot.dtype()
        dtypes = {"default": dtype, **{name: full_precision(dtype) for name in self.full_precision}}
        try:
            return getattr(diffusers, self.pipeline_class).from_pretrained(
                source.load_from, revision=self.options.revision, dtype=dtypes,
                use_safetensors=None if self.options.allow_pickle else True)
        except LOAD_ERRORS as exc:
            raise self._slot.load_error(exc) from None

    def _configure(self, pipe: Any) -> Any:
        if self.options.flow_shift is not None:
            config = pipe.scheduler.config
            key = "flow_shift" if "flow_shift" in config else "shift"
            pipe.scheduler = type(pipe.scheduler).from_config(config,
                                                              **{key: self.options.flow_shift})
        return self._slot.place(pipe)


class WanOptions(VideoDiffusionOptions):
    added_later = ("cache", "lora", "lora_2")

    model: str = "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"
    frames: int = Field(81, ge=5, le=2000, description="4k+1 frames per segment")
    fps: int = Field(16, ge=4, le=60)
    guidance_2: float | None = Field(None, ge=0, le=30, description=(
        "Wan2.2: guidance of the low-noise transformer (None: the same as `guidance`)"))
    lora: LoraOptions | None = Field(None, description=(
        "a LoRA on the transformer (Wan2.2 A14B: the high-noise expert), e.g. a 4-step "
        "distillation; set steps and guidance to what it was distilled for"))
    lora_2: LoraOptions | None = Field(None, description=(
        "Wan2.2 A14B: a LoRA on the low-noise expert (transformer_2)"))


class WanBackend(VideoDiffusionBackend):
    name = "wan-i2v"
    Options = WanOptions
    pipeline_class = "WanImageToVideoPipeline"
    full_precision = ("vae", "image_encoder")

    def __init__(self, options: WanOptions):
        super().__init__(options)
        self._adapters = Adapters({"lora": options.lora, "lora_2": options.lora_2},
                                  options.allow_pickle)

    def preflight(self) -> None:
        super().preflight()
        self._adapters.check()

    def load(self) -> None:
        super().load()
        self._adapters.pin(self._slot.weights)

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        return [*super().weights(languages), *self._adapters.licenses()]

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        return [*super().hub_weights(languages), *self._adapters.hub_weights()]

    def _configure(self, pipe: Any) -> Any:
        self._adapters.load(pipe)   # before placement: offloading hooks wrap the adapters too
        return super()._configure(pipe)

    def _facts(self, pipe: Any) -> dict[str, Any]:
        experts = 2 if getattr(pipe, "transformer_2", None) is not None else 1
        return {"experts": experts, "boundary_ratio": pipe.config.get("boundary_ratio"),
                **self._adapters.facts(self._slot.weights)}

    def _guidance(self, request: ClipRequest) -> dict[str, Any]:
        guidance = super()._guidance(request)
        if self.options.guidance_2 is not None:   # type: ignore[attr-defined]
            guidance["guidance_scale_2"] = self.options.guidance_2   # type: ignore[attr-defined]
        return guidance


class HunyuanOptions(VideoDiffusionOptions):
    model: str = "hunyuanvideo-community/HunyuanVideo-I2V"
    frames: int = Field(129, ge=5, le=2000, description="4k+1 frames per segment")
    fps: int = Field(24, ge=4, le=60)
    width: int = Field(1280, ge=32, le=3840, multiple_of=SIDE_MULTIPLE)
    height: int = Field(720, ge=32, le=2160, multiple_of=SIDE_MULTIPLE)
    steps: int = Field(50, ge=1, le=200)
    guidance: float = Field(6.0, ge=0, le=30, description="embedded guidance (HunyuanVideo-I2V)")
    true_cfg: float = Field(1.0, ge=1, le=30, description=(
        "above 1: classifier-free guidance with the negative prompt (the -33ch model)"))
    max_sequence_length: int = Field(256, ge=16, le=1024)


class HunyuanBackend(VideoDiffusionBackend):
    name = "hunyuan-i2v"
    Options = HunyuanOptions
    pipeline_class = "HunyuanVideoImageToVideoPipeline"

    def _guidance(self, request: ClipRequest) -> dict[str, Any]:
        true_cfg = self.options.true_cfg   # type: ignore[attr-defined]
        guidance: dict[str, Any] = {"guidance_scale": self.options.guidance,
                                    "true_cfg_scale": true_cfg}
        if true_cfg > 1 and request.negative_prompt:
            guidance["negative_prompt"] = request.negative_prompt
        return guidance

    def _starts_with_image(self, pipe: Any) -> bool:
        # The latent-concat variant drops its first four frames; token-replace keeps the image.
        return pipe.transformer.config.image_condition_type == "token_replace"


def _start_image(path: Path, area: int) -> Image.Image:
    """The still, cropped to fill its size bucket (never stretched)."""
    image = read_rgb(path)
    size = size_bucket(image.width, image.height, area)
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)
