"""What every backend built on a diffusers pipeline shares: the images and animate stages.

A profile names the weights (`model`: a Hugging Face id, a local folder, or for images one
checkpoint file) and sets the GPU memory and speed switches (`DiffusionOptions`). A
`PipelineSlot` holds the pipeline as `stages.models.ModelSlot` holds any model: pinned when
the backend loads, read on first use, given back when the stage is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stages import hub
from stages.errors import SopreelError, first_line
from stages.hub import HubWeights
from stages.licenses import license_of
from stages.models import (
    SHA256,
    ModelBackend,
    ModelOptions,
    ModelSlot,
    check_pinned,
    fingerprint,
    locate,
    quiet_transformers,
    refuse_pickle,
)
from stages.registry import KeepsCacheKeys

# diffusers' attention backends that need nothing fetched at run time (the `*_hub` ones
# download kernels, which a machine without a model hub cannot do).
ATTENTION_BACKENDS = ("native", "_native_cudnn", "_native_efficient", "_native_flash",
                      "_native_math", "flash", "flash_varlen", "_flash_3", "flex", "sage",
                      "sage_varlen", "xformers")


class LoraOptions(KeepsCacheKeys):
    """A LoRA adapter on top of the model: a brand style, or a step-distillation that makes
    the same picture in 4 steps. Pinned and licensed like any weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    added_later = ("sha256", "license")

    model: str = Field(description="a .safetensors file, a folder, or a Hugging Face id")
    weight: float = Field(1.0, ge=-2, le=2)
    weight_name: str | None = Field(None, description="the file inside a folder or repo")
    sha256: str | None = Field(None, pattern=SHA256, description=(
        "pin a local file: its sha256 as the manifest records it"))
    license: str | None = Field(None, description="of the LoRA, when not a well-known id")


class CacheOptions(BaseModel):
    """Reuse of the denoiser's work between steps (diffusers' cache hooks): faster, slightly
    different pictures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["first-block", "taylorseer"] = Field(description=(
        "first-block: skip the rest of a step when its first block barely changed; "
        "taylorseer: predict skipped steps' features from the last computed ones"))
    threshold: float = Field(0.05, gt=0, le=1, description="first-block: how little a change")
    interval: int = Field(5, ge=2, le=20, description="taylorseer: one step in this many runs")

    def config(self) -> Any:
        import diffusers

        if self.kind == "first-block":
            return diffusers.FirstBlockCacheConfig(threshold=self.threshold)
        return diffusers.TaylorSeerCacheConfig(cache_interval=self.interval)


class DiffusionOptions(ModelOptions):
    """How a diffusers pipeline runs: the keys every diffusers backend takes besides where."""

    added_later = ("cache",)

    offload: Literal["none", "model", "sequential", "group"] = Field(
        "none", description="model: one component on the GPU at a time; group: layers streamed "
                            "to the GPU as they run; sequential: the least memory, slowest")
    vae_tiling: bool = False
    attention: str | None = Field(None, description="a diffusers attention backend")
    compile: bool = Field(False, description="torch.compile the denoiser's repeated blocks")
    cache: CacheOptions | None = Field(None, description="a cache hook on every denoiser")

    @field_validator("attention")
    @classmethod
    def _offline_attention(cls, name: str | None) -> str | None:
        if name is None or name in ATTENTION_BACKENDS:
            return name
        raise ValueError(f"expected one of: {', '.join(ATTENTION_BACKENDS)}")


LIGHTER_OFFLOAD = {"none": "model", "model": "sequential", "group": "sequential"}


class PipelineSlot(ModelSlot):
    """A diffusers pipeline in a `ModelSlot` (`model` is the pipeline): a folder must have
    model_index.json; `place` applies the profile's memory and speed switches."""

    marker = "model_index.json"
    layout = "diffusers pipeline"
    hub_layout = "diffusers"
    options: DiffusionOptions

    def quiet(self) -> None:
        quiet_libraries()

    def place(self, pipe: Any) -> Any:
        """Device, offloading, VAE tiling, attention backend and compilation, as the profile
        says; then silence the pipeline's own progress bar (progress goes through a hook)."""
        import torch

        options, device = self.options, self.device()
        if options.offload == "model" and device != "cpu":
            pipe.enable_model_cpu_offload(device=device)
        elif options.offload == "sequential" and device != "cpu":
            pipe.enable_sequential_cpu_offload(device=device)
        elif options.offload == "group" and device != "cpu":
            pipe.enable_group_offload(onload_device=torch.device(device),
                                      offload_type="leaf_level", use_stream=True)
        else:
            pipe.to(device)
        if options.vae_tiling:
            pipe.vae.enable_tiling()
        for denoiser in denoisers(pipe):
            if options.attention:
                try:
                    denoiser.set_attention_backend(options.attention)
                except (ImportError, RuntimeError, ValueError) as exc:
                    raise SopreelError(f"The attention backend '{options.attention}' cannot run "
                                       f"here: {first_line(exc)}.") from None
            if options.cache is not None:
                denoiser.enable_cache(options.cache.config())
            if options.compile:
                if getattr(denoiser, "_repeated_blocks", None):
                    denoiser.compile_repeated_blocks(fullgraph=False)
                else:
                    denoiser.compile(fullgraph=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe


class PipelineBackend(ModelBackend):
    """A `ModelBackend` whose model is a diffusers pipeline, which can also be one built
    elsewhere (the GPU benchmarks' random-weight models)."""

    _slot: PipelineSlot
    placement_options = ("offload",)

    def lighter(self) -> PipelineBackend | None:
        """More offloading: whole components, then every layer (slowest, least memory)."""
        offload = LIGHTER_OFFLOAD.get(self.options.offload)  # type: ignore[attr-defined]
        if offload is None:
            return None
        return type(self)(self.options.model_copy(update={"offload": offload}))  # type: ignore[call-arg]

    def use_pipeline(self, pipe: Any) -> None:
        """Run a pipeline built elsewhere, configured by this backend's options as a loaded
        one would be."""
        self._slot.use(self._configure(pipe))

    def _configure(self, pipe: Any) -> Any:
        raise NotImplementedError


class Adapters:
    """The LoRAs a profile puts on a pipeline, by option name (`lora`, and for Wan2.2's
    low-noise expert `lora_2`): refused when pickled, pinned by content when the profile says,
    their licences counted with the model's, loaded into the denoiser they belong to."""

    SECOND_EXPERT = "lora_2"   # loaded into `transformer_2`

    def __init__(self, loras: dict[str, LoraOptions | None], allow_pickle: bool):
        self.loras = {name: lora for name, lora in loras.items() if lora is not None}
        self.allow_pickle = allow_pickle

    def check(self) -> None:
        for lora in self.loras.values():
            refuse_pickle(locate(lora.model, "LoRA"), self.allow_pickle, "LoRA")

    def pin(self, weights: dict[str, Any]) -> None:
        """Fingerprint each LoRA into the slot's weights (so into the assets' identity)."""
        for name, lora in self.loras.items():
            source = locate(lora.model, "LoRA")
            refuse_pickle(source, self.allow_pickle, "LoRA")
            weights[name] = fingerprint(source)
            check_pinned(weights[name], lora.sha256, lora.model, "LoRA")

    def licenses(self) -> list[tuple[str, str]]:
        return [(lora.model, license_of(lora.model, lora.license)) for lora in self.loras.values()]

    def hub_weights(self) -> list[HubWeights]:
        """The LoRAs that are Hub ids: the file each loads (or the repo's safetensors), one
        entry per repo (Wan2.2's two experts' LoRAs often share one)."""
        files: dict[str, list[str]] = {}
        for lora in self.loras.values():
            if locate(lora.model, "LoRA").kind == "hub":
                files.setdefault(lora.model, []).extend([lora.weight_name] if lora.weight_name
                                                        else [])
        return [HubWeights(model, "files", "LoRA", license_of(model, self._license(model)),
                           files=tuple(dict.fromkeys(names)))
                for model, names in files.items()]

    def _license(self, model: str) -> str | None:
        return next((lora.license for lora in self.loras.values()
                     if lora.model == model and lora.license), None)

    def location(self, lora: LoraOptions) -> str:
        """A pulled LoRA from its snapshot folder (the pulled commit, no network)."""
        source = locate(lora.model, "LoRA")
        if source.kind == "hub":
            pulled = next((hub.pulled_snapshot(w) for w in self.hub_weights()
                           if w.repo_id == lora.model), None)
            if pulled is not None:
                return str(pulled)
        return source.location

    def facts(self, weights: dict[str, Any]) -> dict[str, Any]:
        return {name: {"model": lora.model, "weight": lora.weight,
                       "license": license_of(lora.model, lora.license), **weights[name]}
                for name, lora in self.loras.items()}

    def load(self, pipe: Any) -> None:
        for name, lora in self.loras.items():
            second = name == self.SECOND_EXPERT
            if second and getattr(pipe, "transformer_2", None) is None:
                raise SopreelError(f"`{name}` goes on Wan2.2's second (low-noise) transformer; "
                                   f"this model has none: use `lora`.")
            extra = {"load_into_transformer_2": True} if second else {}
            try:
                pipe.load_lora_weights(self.location(lora),
                                       weight_name=lora.weight_name, adapter_name=name,
                                       use_safetensors=not self.allow_pickle, **extra)
            except (OSError, ValueError) as exc:
                hint = "" if self.allow_pickle else " Only .safetensors LoRAs are loaded."
                raise SopreelError(f"Cannot load the LoRA '{lora.model}': "
                                   f"{first_line(exc)}.{hint}") from None
        if self.loras:   # each component runs the adapters it holds, at their weights
            pipe.set_adapters(list(self.loras),
                              adapter_weights=[lora.weight for lora in self.loras.values()])


def denoisers(pipe: Any) -> list[Any]:
    """The networks run at every step (Wan2.2 has two transformers)."""
    return [part for name in ("transformer", "transformer_2", "unet")
            if (part := getattr(pipe, name, None)) is not None]


def step_reporter(on_progress: Callable[[float], None], steps: int) -> Callable[..., dict]:
    """A `callback_on_step_end` that reports the fraction of steps done."""
    def step_done(running: Any, step: int, _timestep: Any, tensors: dict) -> dict:
        # Some samplers (Heun, DPM singlestep) call back more than once per step.
        total = getattr(running, "num_timesteps", None) or steps
        on_progress(min(1.0, (step + 1) / total))
        return tensors
    return step_done


def full_precision(dtype: Any) -> Any:
    """float32 for a component the model cards keep out of half precision (a VAE), when the
    rest runs in bf16 or fp16."""
    import torch

    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def quiet_libraries() -> None:
    """Their warnings (a prompt CLIP truncates...) reach the manifest as facts, not stderr;
    progress goes through the stage's bar, not theirs."""
    quiet_transformers()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
