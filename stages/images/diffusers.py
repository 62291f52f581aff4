"""Backend `diffusers`: scene images from Stable Diffusion 1.5, SDXL or FLUX.1.

`model` is a Hugging Face id (`black-forest-labs/FLUX.1-schnell`, downloaded once into the
Hugging Face cache), a local folder in diffusers layout, or one `.safetensors` checkpoint where
AUTOMATIC1111 or ComfyUI keep it (`models/Stable-diffusion/x.safetensors`). Files are read where
they are: never copied, moved or renamed. The pipeline class comes from the model itself
(`model_index.json`, or the checkpoint's tensor names); `pipeline:` overrides the guess.

Loading is deferred to the first image that is not already cached, so a re-run whose images
all exist never loads the weights. One image at a time per loaded pipeline: a scheduler keeps
per-call state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from stages.diffusion import (
    Adapters,
    DiffusionOptions,
    LoraOptions,
    PipelineBackend,
    PipelineSlot,
    step_reporter,
)
from stages.errors import DataFileError, SopreelError
from stages.hub import HubWeights
from stages.images import ImageBackend, ImageOptions, ImageRequest
from stages.models import LOAD_ERRORS, ModelSource
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml

Family = Literal["sd", "sdxl", "flux"]
PIPELINES: dict[str, str] = {"sd": "StableDiffusionPipeline",
                             "sdxl": "StableDiffusionXLPipeline",
                             "flux": "FluxPipeline"}
# The Hub layout a bare checkpoint file of each family is read with, unless `config` says.
SINGLE_FILE_CONFIGS: dict[str, str] = {"sd": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                       "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
                                       "flux": "black-forest-labs/FLUX.1-dev"}


@cache
def schedulers() -> dict[str, dict[str, Any]]:
    """A1111-style sampler names -> diffusers scheduler class and config (schedulers.yaml)."""
    path = TEMPLATES / "schedulers.yaml"
    table = load_yaml(path, DataFileError).data
    return {name: {"class": entry["class"], "config": entry.get("config") or {}}
            for name, entry in table.items()}


class DiffusersOptions(ImageOptions, DiffusionOptions):
    model: str = "black-forest-labs/FLUX.1-schnell"
    config: str | None = Field(None, description=(
        "for a single checkpoint file: a diffusers folder or Hub id with the same "
        "architecture, read for its layout and for parts the file lacks"))
    pipeline: Literal["auto", "sd", "sdxl", "flux"] = "auto"
    width: int = Field(1024, ge=64, le=4096, multiple_of=8)
    height: int = Field(576, ge=64, le=4096, multiple_of=8)
    steps: int = Field(30, ge=1, le=200)
    guidance: float | None = Field(None, ge=0, le=30, description="None: the pipeline's default")
    negative_prompt: str = Field("", max_length=1000, description="added to the style's")
    scheduler: str | None = None
    lora: LoraOptions | None = None
    max_sequence_length: int | None = Field(None, ge=16, le=512, description="FLUX T5 tokens")
    vae_slicing: bool = False

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, name: str | None) -> str | None:
        if name is None or name in schedulers() or name.endswith("Scheduler"):
            return name
        raise ValueError(f"expected a sampler name ({', '.join(schedulers())}) or a diffusers "
                         "scheduler class name")


class DiffusersBackend(PipelineBackend, ImageBackend):
    name = "diffusers"
    version = 1
    Options = DiffusersOptions

    def __init__(self, options: DiffusersOptions):
        super().__init__(options)
        self.options: DiffusersOptions = options
        self._slot = PipelineSlot(options, "image model")
        self._adapters = Adapters({"lora": options.lora}, options.allow_pickle)
        self._family: str | None = None

    # ---------------------------------------------------------- cheap: no weights are read

    def preflight(self) -> None:
        self._slot.find(files=True)
        self._adapters.check()

    def load(self) -> None:
        """Find the model and pin its weights and LoRA; the pipeline loads on first use."""
        self._slot.pin(files=True)
        self._adapters.pin(self._slot.weights)

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        return [*super().weights(languages), *self._adapters.licenses()]

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        return [*super().hub_weights(languages), *self._adapters.hub_weights()]

    # ------------------------------------------------------------------------- generation

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        import torch

        options = self.options
        with self._slot.lock:
            pipe = self._pipeline()
            arguments = self._arguments(pipe, request, on_progress)
            with torch.inference_mode():
                image = pipe(**arguments).images[0]
            # Inside the lock: a fast tokenizer's truncation setting is shared state, and
            # counting tokens untruncated while another thread encodes a prompt made that
            # thread's CLIP input overflow (a race seen in the GPU-lock test).
            facts = self._facts(pipe, request, arguments)
        image.save(out, format="PNG")
        return facts | {"width": image.width, "height": image.height, "steps": options.steps}

    def _arguments(self, pipe: Any, request: ImageRequest,
                   on_progress: Callable[[float], None] | None) -> dict[str, Any]:
        import torch

        options = self.options
        accepted = inspect.signature(pipe.__call__).parameters
        arguments: dict[str, Any] = {
            "prompt": request.style.prompt(request.visual),
            "width": options.width, "height": options.height,
            "num_inference_steps": options.steps,
            # A CPU generator draws the same starting noise on any device: same seed, same image.
            "generator": torch.Generator("cpu").manual_seed(request.seed),
        }
        negative = request.style.negative(options.negative_prompt)
        if negative and self._family != "flux":   # FLUX is guidance-distilled: no negative
            arguments["negative_prompt"] = negative
        if options.guidance is not None:
            arguments["guidance_scale"] = options.guidance
        if options.max_sequence_length and "max_sequence_length" in accepted:
            arguments["max_sequence_length"] = options.max_sequence_length
        if on_progress is not None and "callback_on_step_end" in accepted:
            arguments["callback_on_step_end"] = step_reporter(on_progress, options.steps)
        return arguments

    def _facts(self, pipe: Any, request: ImageRequest, arguments: dict[str, Any]) -> dict:
        """What the manifest records for a generated image."""
        facts: dict[str, Any] = {
            "pipeline": type(pipe).__name__, "seed": request.seed,
            "guidance": arguments.get("guidance_scale", "default"),
            "scheduler": type(pipe.scheduler).__name__,
            "prompt_tokens": _token_count(pipe, arguments["prompt"]),
            **self._slot.weights_facts(),
        }
        tokens, limit = facts["prompt_tokens"], getattr(pipe.tokenizer, "model_max_length", 0)
        if self._family != "flux" and tokens and limit and tokens > limit:   # FLUX reads T5
            facts["warning"] = (f"the prompt is {tokens} CLIP tokens; CLIP reads the first "
                                f"{limit}: shorten the visual or the style's prefix/suffix")
        return facts | self._adapters.facts(self._slot.weights)

    # ---------------------------------------------------------------------- loading

    def _pipeline(self) -> Any:
        return self._slot.get(lambda source: self._configure(self._load_pipeline(source)))

    def _load_pipeline(self, source: ModelSource) -> Any:
        import diffusers
        from diffusers.loaders.single_file_utils import SingleFileComponentError

        options = self.options
        dtype = self._slot.dtype()
        try:
            if source.kind == "file":
                return self._from_single_file(diffusers, source.path, dtype)
            if options.pipeline != "auto":
                cls = getattr(diffusers, PIPELINES[options.pipeline])
            else:
                cls = diffusers.AutoPipelineForText2Image
            return cls.from_pretrained(source.load_from, revision=options.revision, dtype=dtype,
                                       use_safetensors=None if options.allow_pickle else True)
        except (*LOAD_ERRORS, SingleFileComponentError) as exc:
            hint = ""
            if source.kind == "file":
                hint = (" A checkpoint file is read with the layout of `config`: a diffusers "
                        "folder, or a Hub id this machine has cached, of the same architecture "
                        f"(now {options.config or 'the default for its family'}).")
            raise self._slot.load_error(exc, hint) from None

    def _from_single_file(self, diffusers: Any, path: Path, dtype: Any) -> Any:
        """A checkpoint file as A1111/ComfyUI keep it, read in place."""
        options = self.options
        family = options.pipeline if options.pipeline != "auto" else checkpoint_family(path)
        config = options.config or SINGLE_FILE_CONFIGS[family]
        pipeline_class = getattr(diffusers, PIPELINES[family])
        if family == "flux" and not _has_vae(path):
            # ComfyUI's diffusion_models/ FLUX files hold only the transformer: the text
            # encoders and VAE come from `config`.
            transformer = diffusers.FluxTransformer2DModel.from_single_file(
                str(path), config=config, subfolder="transformer", dtype=dtype)
            return pipeline_class.from_pretrained(config, transformer=transformer, dtype=dtype,
                                                  use_safetensors=True)
        return pipeline_class.from_single_file(str(path), config=config, dtype=dtype)

    def _configure(self, pipe: Any) -> Any:
        """Scheduler and LoRA, then placement and the memory/speed switches (`PipelineSlot`)."""
        import diffusers

        options = self.options
        self._family = next((family for family, name in PIPELINES.items()
                             if type(pipe).__name__ == name), "other")
        if self._family == "flux" and (options.width % 16 or options.height % 16):
            raise SopreelError(f"FLUX needs image sides in multiples of 16; the profile asks for "
                               f"{options.width}x{options.height}.")
        if options.scheduler:
            pipe.scheduler = _scheduler(diffusers, options.scheduler, pipe)
        self._adapters.load(pipe)
        pipe = self._slot.place(pipe)
        if options.vae_slicing:
            pipe.vae.enable_slicing()
        return pipe


def checkpoint_family(path: Path) -> str:
    """SD 1.x/2.x, SDXL or FLUX, read from a checkpoint's tensor names (not its data)."""
    keys = _tensor_names(path)
    if any("double_blocks." in key for key in keys):
        return "flux"
    if any(key.startswith("conditioner.embedders.1.") for key in keys):
        return "sdxl"
    if any(key.startswith("model.diffusion_model.input_blocks.") for key in keys):
        return "sd"
    raise SopreelError(f"Cannot tell which model {path.name} is (not an SD 1.x/2.x, SDXL or "
                       "FLUX checkpoint by its tensor names). Set `pipeline: sd|sdxl|flux` in "
                       "the profile.")


def _has_vae(path: Path) -> bool:
    return any(key.startswith(("vae.", "first_stage_model.")) for key in _tensor_names(path))


def _tensor_names(path: Path) -> list[str]:
    """A safetensors file's tensor names, read from its header without loading any data."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def _scheduler(diffusers: Any, name: str, pipe: Any) -> Any:
    entry = schedulers().get(name, {"class": name, "config": {}})
    cls = getattr(diffusers, entry["class"], None)
    compatible = {c.__name__ for c in getattr(pipe.scheduler, "compatibles", [])}
    compatible.add(type(pipe.scheduler).__name__)
    if cls is None or cls.__name__ not in compatible:
        raise SopreelError(f"The scheduler '{name}' does not work with {type(pipe).__name__}; "
                           f"it takes: {', '.join(sorted(compatible))}.")
    return cls.from_config(pipe.scheduler.config, **entry["config"])


def _token_count(pipe: Any, prompt: str) -> int | None:
    """How many CLIP tokens the prompt takes: past 77, CLIP ignores the rest."""
    tokenizer = getattr(pipe, "tokenizer", None)
    return len(tokenizer(prompt).input_ids) if tokenizer is not None else None
