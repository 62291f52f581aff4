"""What every backend built on a diffusers pipeline shares: the images and animate stages.

A profile names the weights (`model`: a Hugging Face id, a local folder, or for images one
checkpoint file) and sets the GPU memory and speed switches (`DiffusionOptions`). A
`PipelineSlot` finds and pins the weights when the backend loads, which reads no weights; the
pipeline itself is read only when the first asset that is not cached needs it, and its memory
is given back when the stage is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator

from stages.devices import free_memory, pick_device
from stages.errors import SopreelError
from stages.models import ModelSource, cached_commit, fingerprint, license_of, locate, refuse_pickle
from stages.registry import BackendOptions

# diffusers' attention backends that need nothing fetched at run time (the `*_hub` ones
# download kernels, which a machine without a model hub cannot do).
ATTENTION_BACKENDS = ("native", "_native_cudnn", "_native_efficient", "_native_flash",
                      "_native_math", "flash", "flash_varlen", "_flash_3", "flex", "sage",
                      "sage_varlen", "xformers")


class DiffusionOptions(BackendOptions):
    """Where the weights are and how the pipeline runs: the keys every diffusers backend takes."""

    model: str
    revision: str | None = Field(None, description="branch, tag or commit of a Hub model")
    device: Literal["auto", "cuda", "cpu", "mps"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    offload: Literal["none", "model", "sequential", "group"] = Field(
        "none", description="model: one component on the GPU at a time; group: layers streamed "
                            "to the GPU as they run; sequential: the least memory, slowest")
    vae_tiling: bool = False
    attention: str | None = Field(None, description="a diffusers attention backend")
    compile: bool = Field(False, description="torch.compile the denoiser's repeated blocks")
    allow_pickle: bool = Field(False, description="load .ckpt/.bin weights (pickle can run code)")
    license: str | None = Field(None, description="of the weights, when not a well-known id")

    @field_validator("attention")
    @classmethod
    def _offline_attention(cls, name: str | None) -> str | None:
        if name is None or name in ATTENTION_BACKENDS:
            return name
        raise ValueError(f"expected one of: {', '.join(ATTENTION_BACKENDS)}")


class PipelineSlot:
    """One backend's pipeline: pinned at once, read from disk on first use, released after.

    Callers hold `lock` around `get()` and the call to the pipeline: schedulers keep per-call
    state, so one generation at a time.
    """

    def __init__(self, options: DiffusionOptions, what: str):
        self.options, self.what = options, what
        self.source: ModelSource | None = None
        self.weights: dict[str, Any] = {}
        self.pipe: Any = None
        self.lock = threading.Lock()

    @property
    def license(self) -> str:
        return license_of(self.options.model, self.options.license)

    def pin(self, files: bool = True) -> ModelSource:
        """Find the model and fingerprint which exact weights it is; no weights are read."""
        source = self.find(files)
        self.source, self.weights = source, fingerprint(source, self.options.revision)
        return source

    def find(self, files: bool = True) -> ModelSource:
        """Where the model is: a folder must be a diffusers pipeline, a single file is allowed
        only where `files` says, and pickle weights only where the profile allows them."""
        source = locate(self.options.model, self.what)
        refuse_pickle(source, self.options.allow_pickle, self.what)
        if source.kind == "folder" and not (source.path / "model_index.json").is_file():
            hint = " For a single checkpoint, give the .safetensors file itself." if files else ""
            raise SopreelError(f"{source.location} is not a diffusers pipeline folder (it has no "
                               f"model_index.json).{hint}")
        if source.kind == "file" and not files:
            raise SopreelError(f"The {self.what} '{self.options.model}' must be a diffusers "
                               "folder or a Hugging Face id, not a single file.")
        return source

    def get(self, load: Callable[[ModelSource], Any]) -> Any:
        """The pipeline; `load(source)` reads and places it the first time."""
        if self.pipe is None:
            quiet_libraries()
            source = self.source or self.pin()
            self.pipe = load(source)
        return self.pipe

    def use(self, pipe: Any) -> None:
        """A pipeline built elsewhere (the GPU benchmarks' random-weight models)."""
        quiet_libraries()
        self.source = ModelSource("hub", self.options.model)
        self.pipe = pipe

    def release(self) -> None:
        self.pipe = None
        free_memory()

    def device(self) -> str:
        return pick_device(self.options.device, mps=True)

    def dtype(self) -> Any:
        """bf16 on a GPU that has it (fp16 otherwise), fp32 on the CPU, unless the profile says."""
        import torch

        choice, device = self.options.dtype, self.device()
        if choice != "auto":
            return getattr(torch, choice)
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32

    def weights_facts(self) -> dict[str, Any]:
        """What the manifest records about the weights: the Hub commit, or the files' sha256."""
        source = self.source
        assert source is not None
        if source.kind == "hub":
            revision = self.options.revision
            return {"revision": cached_commit(source.location, revision) or revision or "main"}
        return {"sha256": self.weights["sha256"]}

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

    def load_error(self, exc: BaseException, hint: str = "") -> SopreelError:
        """A clear error for weights that would not load; safetensors-only explained."""
        reason = first_line(exc)
        if not hint and "safetensors" in reason and not self.options.allow_pickle:
            hint = (" Only safetensors weights are loaded; set `allow_pickle: true` to load .bin "
                    "weights you trust.")
        return SopreelError(f"Cannot load the {self.what} '{self.options.model}': {reason}."
                            f"{hint}")


class PipelineBackend:
    """Mixed into a stage backend that runs one diffusers pipeline held in `self._slot`: its
    licence, identity (options plus which exact weights), release, and an outside pipeline."""

    _slot: PipelineSlot

    @property
    def license(self) -> str:
        return self._slot.license

    def use_pipeline(self, pipe: Any) -> None:
        """Run a pipeline built elsewhere (the GPU benchmarks' random-weight models),
        configured by this backend's options as a loaded one would be."""
        self._slot.use(self._configure(pipe))

    def identity(self) -> dict[str, Any]:
        """Options plus which exact weights: new weights mean new assets."""
        return {**super().identity(), "weights": self._slot.weights}  # type: ignore[misc]

    def close(self) -> None:
        self._slot.release()

    def _configure(self, pipe: Any) -> Any:
        raise NotImplementedError


LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


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
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
