"""Backend `openai`: scene stills from OpenAI's images API (gpt-image models, DALL·E 3).

One POST to `{url}/images/generations` per scene; the image comes back base64-encoded in
`data[0].b64_json`, with the tokens used in `usage` (gpt-image models) or the prompt as the
model rewrote it in `revised_prompt` (DALL·E 3). The service makes a few fixed sizes: sopreel
asks for the one nearest the frame's aspect and fits the answer to the frame.

OpenAI has no negative prompt: the style's exclusions are asked for in words. It takes no
seed either, so a remade image differs; a cached image is never asked for again.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field, model_validator

from stages.cloud import (
    ContentRefused,
    Cost,
    ServiceBackend,
    ServiceError,
    ServiceOptions,
    error_code,
)
from stages.images import ImageBackend, ImageOptions, ImageRequest

SIZES = {"gpt-image": ("1024x1024", "1536x1024", "1024x1536"),
         "dall-e-3": ("1024x1024", "1792x1024", "1024x1792")}
# The codes OpenAI answers a prompt its safety system refused with.
POLICY_CODES = ("content_policy_violation", "moderation_blocked")


class OpenAIImageOptions(ServiceOptions, ImageOptions):
    url: str = Field("https://api.openai.com/v1", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    model: str = Field("gpt-image-1", description="gpt-image-1, dall-e-3, or a newer one")
    quality: str = Field("medium", description=(
        "gpt-image: low, medium, high; dall-e-3: standard, hd"))
    style: Literal["natural", "vivid"] = Field("natural", description="dall-e-3 only")
    moderation: Literal["auto", "low"] = Field("auto", description="gpt-image only")

    @model_validator(mode="after")
    def _quality_fits_the_model(self) -> OpenAIImageOptions:
        allowed = ("standard", "hd") if self.model.startswith("dall-e") else (
            "low", "medium", "high", "auto")
        if self.quality not in allowed:
            raise ValueError(f"quality '{self.quality}' is not one {self.model} takes "
                             f"({', '.join(allowed)})")
        return self


class OpenAIImageBackend(ServiceBackend, ImageBackend):
    name = "openai"
    service = "OpenAI"
    key_variable = "OPENAI_API_KEY"
    price_service = "openai-images"
    # OpenAI's Services Agreement assigns the customer its rights in the output.
    terms = "OpenAI Services Agreement (output owned by the customer)"
    Options = OpenAIImageOptions
    version = 1

    def __init__(self, options: OpenAIImageOptions):
        super().__init__(options)
        self.options: OpenAIImageOptions = options

    def request_size(self) -> str:
        """The service's size nearest the frame's aspect ratio."""
        sizes = SIZES["dall-e-3" if self.options.model.startswith("dall-e") else "gpt-image"]
        aspect = self.options.width / self.options.height

        def distance(size: str) -> float:
            w, h = (int(side) for side in size.split("x"))
            return abs(w / h - aspect)

        return min(sizes, key=distance)

    def price_variant(self) -> str:
        quality = "medium" if self.options.quality == "auto" else self.options.quality
        return f"{quality}-{self.request_size()}"

    def cost(self, request: ImageRequest) -> Cost:
        return self.price().of(1)

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        options = self.options
        negative = request.style.negative("")
        prompt = request.style.prompt(request.visual)
        if negative:
            prompt += f". Do not show: {negative}."
        body: dict[str, Any] = {"model": options.model, "prompt": prompt[:4000], "n": 1,
                                "size": self.request_size(), "quality": options.quality}
        if options.model.startswith("dall-e"):
            body |= {"style": options.style, "response_format": "b64_json"}
        else:
            body |= {"output_format": "png", "moderation": options.moderation}
        client = self.client
        response = client.send("POST", "/images/generations", json=body, creates=True)
        if response.status_code != 200:
            if error_code(response) in POLICY_CODES:
                raise ContentRefused(f"OpenAI's content policy refused the picture: "
                                     f"{client.message(response)}. Reword the scene's "
                                     "`visual`, or supply a photo (`image:`).")
            raise client.refused(response, f"the image for scene {request.scene_id}")
        answer = client.json(response, "an image")
        try:
            item = answer["data"][0]
            data = base64.b64decode(item["b64_json"], validate=True)
            with Image.open(io.BytesIO(data)) as decoded:
                image = decoded.convert("RGB")
        except (KeyError, IndexError, TypeError, binascii.Error, UnidentifiedImageError,
                OSError):
            raise ServiceError("OpenAI answered the image request without a readable image "
                               f"(scene {request.scene_id}).") from None
        frame = (options.width, options.height)
        facts: dict[str, Any] = {"width": frame[0], "height": frame[1],
                                 "requested_size": body["size"], "quality": options.quality}
        if image.size != frame:
            facts["resized_from"] = list(image.size)
            image = ImageOps.fit(image, frame, Image.Resampling.LANCZOS)
        image.save(out, format="PNG")
        usage = {k: v for k, v in (answer.get("usage") or {}).items()
                 if isinstance(v, int | float)}
        if item.get("revised_prompt"):
            facts["revised_prompt"] = item["revised_prompt"]
        return {**facts, "model": options.model, "usage": {"images": 1, **usage},
                "cost": self.cost(request).record()}
