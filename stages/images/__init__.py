"""Stage `images`: one still per scene, generated from its visual prompt or taken from a photo.

Backends turn an `ImageRequest` into a PNG; a supplied photo is never regenerated, only
fitted to the frame (`fit_photo`: cropped, over a blurred copy of itself, or padded), whatever
the backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from stages.errors import MediaError
from stages.media import fit_mode
from stages.registry import Backend, BackendOptions, Registry
from stages.style import Style, rgb


class ImageOptions(BackendOptions):
    """Keys every images backend accepts (DESIGN.md: steps, width, height, seed)."""

    width: int = Field(1920, ge=64, le=4096, multiple_of=2)
    height: int = Field(1080, ge=64, le=4096, multiple_of=2)
    seed: int | None = Field(None, ge=0, description="fixed seed; default: derived per scene")


class ImageRequest(BaseModel):
    """What one scene's still should show."""

    model_config = ConfigDict(frozen=True)

    scene_id: str
    step: int = Field(ge=1)
    steps: int = Field(ge=1)
    visual: str
    style: Style
    seed: int


class ImageBackend(Backend):
    Options = ImageOptions

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Write a PNG of `options.width` x `options.height` to `out`; return facts to record.

        A slow backend reports how far it is through the image (0..1) to `on_progress`.
        """
        raise NotImplementedError


BACKENDS: Registry[ImageBackend] = Registry("images", ImageBackend)
BACKENDS.register("storyboard", "stages.images.storyboard:StoryboardBackend")
BACKENDS.register("diffusers", "stages.images.diffusers:DiffusersBackend")
BACKENDS.register("a1111", "stages.images.webui:A1111Backend")
BACKENDS.register("comfyui", "stages.images.webui:ComfyUIBackend")
BACKENDS.register("openai", "stages.images.openai:OpenAIImageBackend")


def scene_seed(script_id: str, scene_id: str) -> int:
    """A stable per-scene seed, so a rebuild without a profile seed is reproducible."""
    digest = hashlib.sha256(f"{script_id}/{scene_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def read_rgb(path: Path, what: str = "image") -> Image.Image:
    """An image file as upright RGB (EXIF rotation applied), or a clear error."""
    try:
        with Image.open(path) as source:
            return ImageOps.exif_transpose(source).convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"The {what} {path.name} could not be decoded: {exc}") from None


def fit_photo(photo: Path, out: Path, width: int, height: int, background: str,
              mode: str = "auto") -> dict[str, Any]:
    """A supplied photo filling a `width` x `height` frame without stretching (`fit_mode`)."""
    image = read_rgb(photo, "photo")
    frame = (width, height)
    how = fit_mode(mode, image.size, frame)
    if how == "crop":
        ImageOps.fit(image, frame, Image.Resampling.LANCZOS).save(out, format="PNG")
        return {"source": photo.name, "fit": how, "fitted": list(frame)}
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if how == "blur":   # the photo itself, enlarged, blurred and dimmed, where bars would be
        canvas = ImageOps.fit(image, frame, Image.Resampling.BILINEAR).filter(
            ImageFilter.GaussianBlur(radius=max(frame) / 40))
        canvas = ImageEnhance.Brightness(canvas).enhance(0.7)
    else:
        canvas = Image.new("RGB", frame, rgb(background))
    canvas.paste(image.resize(size, Image.Resampling.LANCZOS),
                 ((width - size[0]) // 2, (height - size[1]) // 2))
    canvas.save(out, format="PNG")
    return {"source": photo.name, "fit": how, "fitted": list(size)}
