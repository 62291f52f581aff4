"""What every backend built on a diffusers pipeline shares: the images and animate stages.

A profile names the weights (`model`: a Hugging Face id, a local folder, or for images one
checkpoint file) and sets the GPU memory and speed switches (`DiffusionOptions`). A
`PipelineSlot` holds the pipeline as `stages.models.ModelSlot` holds any model: pinned when
the backend loads, read on first use, given back when the stage is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from stages.errors import SopreelError, first_line
from stages.models import ModelBackend, ModelOptions, ModelSlot, quiet_transformers

# diffusers' attention backends that need nothing fetched at run time (the `*_hub` ones
# download kernels, which a machine without a model hub cannot do).
ATTENTION_BACKENDS = ("native", "_native_cudnn", "_native_efficient", "_native_flash",
                      "_native_math", "flash", "flash_varlen", "_flash_3", "flex", "sage",
                      "sage_varlen", "xformers")


class DiffusionOptions(ModelOptions):
    """How a diffusers pipeline runs: the keys every diffusers backend takes besides where."""

    offload: Literal["none", "model", "sequential", "group"] = Field(
        "none", description="model: one component on the GPU at a time; group: layers streamed "
                            "to the GPU as they run; sequential: the least memory, slowest")
    vae_tiling: bool = False
    attention: str | None = Field(None, description="a diffusers attention backend")
    compile: bool = Field(False, description="torch.compile the denoiser's repeated blocks")

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


def quiet_libraries() -> None:
    """Their warnings (a prompt CLIP truncates...) reach the manifest as facts, not stderr;
    progress goes through the stage's bar, not theirs."""
    quiet_transformers()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
