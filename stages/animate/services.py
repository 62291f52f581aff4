"""Backends `runway` and `openai-video`: a scene's still animated by a hosted video model.

Both services work as jobs: create one (the still, the motion prompt, a length), poll it until
it is done, download the MP4. The job's id is written to a journal beside the assets the
moment the service returns it (`stages.cloud.JobJournal`), so a build killed while polling
polls the same job when it starts again instead of paying for a new one.

- Runway: POST `{url}/v1/image_to_video` (`promptImage` as a data URI, `promptText`, `ratio`,
  `duration`, `seed`), poll `GET /v1/tasks/{id}` (PENDING, THROTTLED, RUNNING, then SUCCEEDED
  with `output` URLs, or FAILED with `failure` and `failureCode`), download the first output.
- OpenAI's videos API (Sora 2): POST `{url}/videos` as multipart (`model`, `prompt`, `seconds`,
  `size`, `input_reference`: the still at exactly that size), poll `GET /videos/{id}` (queued,
  in_progress, then completed, or failed with `error`), download `GET /videos/{id}/content`.

Each segment is as long as `seconds`; the plan chains segments to cover a long scene, as with
Wan. The service picks among a few frame shapes: the one nearest the still's aspect is asked
for, and compose fits the clip to the frame. The service's MP4 is re-encoded to H.264 without
its sound (Sora's clips have some; the narration is the video's).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageOps
from pydantic import Field, model_validator

from stages.animate import AnimateBackend, AnimateOptions, ClipRequest
from stages.cloud import (
    URL,
    ContentRefused,
    Cost,
    JobJournal,
    ServiceBackend,
    ServiceError,
    ServiceOptions,
    ServiceUnavailable,
    error_code,
)
from stages.images import read_rgb
from stages.media import probe, run_ffmpeg


class VideoServiceOptions(ServiceOptions, AnimateOptions):
    """What both video services take; `frames` follows from `seconds` and `fps`."""

    size_from_picture = True   # the still sets the aspect; the service's shapes the size

    seconds: int = Field(5, ge=1, le=60, description="one segment's length")
    fps: int = Field(24, ge=4, le=60, description="of the service's clips")
    max_segments: int = Field(3, ge=1, le=50)
    crf: int = Field(14, ge=0, le=40)
    poll_s: float = Field(5.0, gt=0, le=60, description="how often to ask whether it is done")
    max_wait_s: float = Field(1800, gt=0, le=86400, description="for one segment")

    @model_validator(mode="before")
    @classmethod
    def _frames_from_seconds(cls, data: Any) -> Any:
        if isinstance(data, dict) and "frames" not in data:
            seconds = data.get("seconds", cls.model_fields["seconds"].default)
            fps = data.get("fps", cls.model_fields["fps"].default)
            if isinstance(seconds, int) and isinstance(fps, int):
                data = {**data, "frames": seconds * fps}
        return data


class VideoServiceBackend(ServiceBackend, AnimateBackend):
    """Create, poll, download; subclasses say what the service's requests look like."""

    Options = VideoServiceOptions
    assembly_options = ("max_segments", "retime")
    transport_options = (*ServiceBackend.transport_options, "crf")
    shapes: ClassVar[dict[str, tuple[str, ...]]] = {}   # model -> frame shapes it makes
    download_with_key: ClassVar[bool] = False   # the video comes from the API, not a signed URL

    def __init__(self, options: VideoServiceOptions):
        super().__init__(options)
        self.options: VideoServiceOptions = options


    def shape_for(self, image: Path) -> str:
        """The model's frame shape nearest the still's aspect (`size`/`ratio` option wins)."""
        chosen = self.chosen_shape()
        if chosen:
            return chosen
        with Image.open(image) as still:
            aspect = still.width / still.height
        shapes = self.shapes.get(self.model)
        if not shapes:
            raise ServiceError(f"{self.service}: sopreel does not know the frame shapes of "
                               f"{self.model}; set one in the profile.")
        return min(shapes, key=lambda shape: abs(_aspect(shape) - aspect))

    def chosen_shape(self) -> str | None:
        return None

    def cost(self, request: ClipRequest) -> Cost:
        shape = self.shape_for(request.image) if request.image.is_file() else None
        return self.price(shape).of(self.options.seconds)

    def animate(self, request: ClipRequest, out: Path,
                on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        journal = JobJournal(out.parent / "jobs")
        key = JobJournal.key(self, request)
        known = journal.recall(key)
        resumed = known is not None
        if known is None:
            job = self.create(request, key)
            journal.remember(key, {"service": self.service, "job": job})
        else:
            job = known["job"]
        try:
            url = self.wait(job, on_progress)
        except _JobGone:
            journal.forget(key)   # expired or deleted at the service: a new one is needed
            job, resumed = self.create(request, key), False
            journal.remember(key, {"service": self.service, "job": job})
            url = self.wait(job, on_progress)
        except (ContentRefused, _JobFailed, _JobFailedThere):
            journal.forget(key)   # ended without a video: a build again starts a new one
            raise
        source = out.with_name(out.name + ".service.mp4")
        try:
            source.write_bytes(self.client.download(url, "video", self.download_with_key))
            facts = _reencode(source, out, self.options.crf)
        finally:
            source.unlink(missing_ok=True)
        journal.forget(key)
        return {**facts, "model": self.model, "job": job, "resumed": resumed,
                "starts_with_image": False, "shape": self.shape_for(request.image),
                "usage": {"jobs": 1, "seconds": self.options.seconds},
                "cost": self.cost(request).record()}

    def wait(self, job: str, on_progress: Callable[[float], None] | None) -> str:
        """Poll until the job is done; the URL of its video."""
        deadline = time.monotonic() + self.options.max_wait_s
        while True:
            state, progress, result = self.status(job)
            if on_progress and progress is not None:
                on_progress(min(1.0, max(0.0, progress)))
            if state == "done":
                return result
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.service} job {job} was not done within "
                                   f"{self.options.max_wait_s:g} s; build again to keep "
                                   "waiting on it (it is not paid for twice), or raise "
                                   "`max_wait_s` in the profile.")
            time.sleep(self.options.poll_s)

    def create(self, request: ClipRequest, key: str) -> str:
        """Start a job; its id."""
        raise NotImplementedError

    def status(self, job: str) -> tuple[str, float | None, str]:
        """('running' | 'done', progress 0..1 or None, the video's URL when done)."""
        raise NotImplementedError

    def job_id(self, response: Any, noun: str) -> str:
        """The id of the job a creating request started (`noun`: the service's word for it)."""
        answer = self.client.json(response, f"a new {noun}")
        if not isinstance(answer, dict) or not answer.get("id"):
            raise ServiceError(f"{self.service} answered the new {noun} without its id.")
        return str(answer["id"])

    def job_state(self, path: str, job: str, noun: str) -> dict[str, Any]:
        """The job as the service reports it; `_JobGone` when it no longer knows it."""
        client = self.client
        response = client.send("GET", path)
        if response.status_code == 404:
            raise _JobGone(f"{self.service} no longer knows {noun} {job}.")
        if response.status_code != 200:
            raise client.refused(response, f"the state of {noun} {job}")
        return client.json(response, f"a {noun}'s state")


class _JobGone(ServiceError):
    """The service no longer knows the job (expired, deleted)."""


class _JobFailed(ServiceError):
    """The job ended without a video."""


class _JobFailedThere(ServiceUnavailable):
    """The job failed on the service's side: a new one may well succeed (the build retries)."""


def _aspect(shape: str) -> float:
    width, height = (int(side) for side in shape.replace(":", "x").split("x"))
    return width / height


def _reencode(source: Path, out: Path, crf: int) -> dict[str, Any]:
    """The service's clip as H.264 (yuv420p, no sound); its frame rate, frames and size."""
    streams = [s for s in probe(source)["streams"] if s.get("codec_type") == "video"]
    if not streams:
        raise ServiceError("The service's video has no picture.")
    run_ffmpeg(["-i", str(source), "-map", "0:v:0", "-an", "-c:v", "libx264", "-preset",
                "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-f", "mp4", str(out)],
               what="re-encoding the service's clip")
    video = next(s for s in probe(out)["streams"] if s.get("codec_type") == "video")
    numerator, _, denominator = video["r_frame_rate"].partition("/")
    fps = float(numerator) / float(denominator or 1)
    frames = int(video.get("nb_frames") or round(float(video["duration"]) * fps))
    return {"fps": round(fps, 3), "frames": frames, "seconds": round(frames / fps, 4),
            "width": int(video["width"]), "height": int(video["height"])}


# ------------------------------------------------------------------------------------ Runway

RUNWAY_RATIOS = {"gen4_turbo": ("1280:720", "720:1280", "1104:832", "832:1104", "960:960",
                                "1584:672")}
RUNWAY_RUNNING = ("PENDING", "THROTTLED", "RUNNING")
DATA_URI_LIMIT = 5 * 1024 * 1024   # Runway takes data URIs up to 5 MB


class RunwayOptions(VideoServiceOptions):
    url: str = Field("https://api.dev.runwayml.com", pattern=URL)
    model: str = Field("gen4_turbo", description="a Runway image-to-video model")
    seconds: int = Field(5, ge=2, le=10, description="one segment: 2 to 10 s (gen4_turbo)")
    ratio: str | None = Field(None, pattern=r"^\d+:\d+$", description=(
        "the output shape, e.g. 1280:720; default: the model's nearest the still's aspect"))
    public_figure_threshold: str = Field("auto", pattern=r"^(auto|low)$")
    api_version: str = Field("2024-11-06", description="the X-Runway-Version header")


class RunwayBackend(VideoServiceBackend):
    name = "runway"
    service = "Runway"
    key_variable = "RUNWAYML_API_SECRET"
    price_service = "runway"
    # Runway's terms of use give paid plans the rights in their outputs, commercial use too.
    terms = "Runway Terms of Use (paid plan)"
    Options = RunwayOptions
    version = 1
    shapes = RUNWAY_RATIOS

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}",
                "X-Runway-Version": self.options.api_version}  # type: ignore[attr-defined]

    def chosen_shape(self) -> str | None:
        return self.options.ratio  # type: ignore[attr-defined]

    def create(self, request: ClipRequest, key: str) -> str:
        options: RunwayOptions = self.options  # type: ignore[assignment]
        body = {"model": options.model, "promptImage": _data_uri(request.image),
                "promptText": (request.prompt or request.motion or "")[:1000],
                "ratio": self.shape_for(request.image), "duration": options.seconds,
                "seed": request.seed % 4294967295,
                "contentModeration": {"publicFigureThreshold": options.public_figure_threshold}}
        client = self.client
        response = client.send("POST", "/v1/image_to_video", json=body, creates=True,
                               idempotency_key=key)
        if response.status_code not in (200, 201):
            if "safety" in client.message(response).lower():
                raise ContentRefused(f"Runway's content moderation refused the clip: "
                                     f"{client.message(response)}.")
            raise client.refused(response, "the image-to-video task")
        return self.job_id(response, "task")

    def status(self, job: str) -> tuple[str, float | None, str]:
        task = self.job_state(f"/v1/tasks/{job}", job, "task")
        state = str(task.get("status", ""))
        if state in RUNWAY_RUNNING:
            progress = task.get("progress")
            return "running", float(progress) if isinstance(progress, int | float) else None, ""
        if state == "SUCCEEDED":
            output = task.get("output") or []
            if not output:
                raise ServiceError(f"Runway finished task {job} without an output.")
            return "done", 1.0, str(output[0])
        code, why = str(task.get("failureCode") or ""), task.get("failure") or state
        if "SAFETY" in code:
            raise ContentRefused(f"Runway's content moderation refused the clip ({code}): {why}")
        if code.startswith("INTERNAL"):   # Runway's side: a new task may well succeed
            raise _JobFailedThere(f"Runway task {job} failed on its side ({code}): {why}")
        raise _JobFailed(f"Runway task {job} ended {state}" + (f" ({code})" if code else "")
                         + f": {why}")


def _data_uri(image: Path) -> str:
    """The still as a data URI: PNG, or JPEG when the PNG would pass Runway's limit."""
    data = image.read_bytes()
    kind = "png"
    if len(data) * 4 / 3 > DATA_URI_LIMIT * 0.95:
        buffer = io.BytesIO()
        read_rgb(image, "still").save(buffer, format="JPEG", quality=92)
        data, kind = buffer.getvalue(), "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


# ----------------------------------------------------------------------- OpenAI (Sora 2)

SORA_SIZES = {"sora-2": ("1280x720", "720x1280"),
              "sora-2-pro": ("1280x720", "720x1280", "1792x1024", "1024x1792")}
SORA_RUNNING = ("queued", "in_progress")
SORA_POLICY = ("moderation_blocked", "content_policy_violation")


class OpenAIVideoOptions(VideoServiceOptions):
    url: str = Field("https://api.openai.com/v1", pattern=URL)
    model: str = Field("sora-2", description="sora-2, sora-2-pro, or what the server offers")
    seconds: int = Field(4, description="one segment: 4, 8 or 12 s")
    fps: int = Field(30, ge=4, le=60, description="of the service's clips")
    size: str | None = Field(None, pattern=r"^\d+x\d+$", description=(
        "e.g. 1280x720; default: the model's nearest the still's aspect"))

    @model_validator(mode="after")
    def _seconds_it_makes(self) -> OpenAIVideoOptions:
        if self.seconds not in (4, 8, 12, 16, 20):
            raise ValueError(f"seconds {self.seconds}: the videos API makes 4, 8 or 12 s "
                             "(newer models also 16 and 20)")
        return self


class OpenAIVideoBackend(VideoServiceBackend):
    name = "openai-video"
    service = "OpenAI videos"
    key_variable = "OPENAI_API_KEY"
    price_service = "openai-video"
    terms = "OpenAI Services Agreement (output owned by the customer)"
    Options = OpenAIVideoOptions
    version = 1
    shapes = SORA_SIZES
    download_with_key = True

    def chosen_shape(self) -> str | None:
        return self.options.size  # type: ignore[attr-defined]

    def price_variant(self) -> str | None:
        return self.chosen_shape() or SORA_SIZES.get(self.model, ("1280x720",))[0]

    def create(self, request: ClipRequest, key: str) -> str:
        size = self.shape_for(request.image)
        width, height = (int(side) for side in size.split("x"))
        still = ImageOps.fit(read_rgb(request.image, "still"), (width, height),
                             Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        still.save(buffer, format="PNG")
        fields = {"model": self.model, "prompt": (request.prompt or request.motion or "")[:4000],
                  "seconds": str(self.options.seconds), "size": size}
        client = self.client
        response = client.send("POST", "/videos", data=fields, creates=True,
                               idempotency_key=key,
                               files={"input_reference": ("still.png", buffer.getvalue(),
                                                          "image/png")})
        if response.status_code not in (200, 201):
            if error_code(response) in SORA_POLICY:
                raise ContentRefused(f"OpenAI's content policy refused the clip: "
                                     f"{client.message(response)}.")
            if response.status_code == 404 and "api.openai.com" in client.base_url:
                raise ServiceError("OpenAI answered 404 to a new video: OpenAI shut its own "
                                   "videos API (Sora 2) down on 2026-09-24. Set `url` to a "
                                   "server that keeps that API, or use the runway backend.")
            raise client.refused(response, "the new video")
        return self.job_id(response, "video")

    def status(self, job: str) -> tuple[str, float | None, str]:
        video = self.job_state(f"/videos/{job}", job, "video")
        state = str(video.get("status", ""))
        progress = video.get("progress")
        fraction = float(progress) / 100 if isinstance(progress, int | float) else None
        if state in SORA_RUNNING:
            return "running", fraction, ""
        if state == "completed":
            return "done", 1.0, f"{self.client.base_url}/videos/{job}/content"
        error = video.get("error") or {}
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        message = error.get("message", state) if isinstance(error, dict) else str(error)
        if code in SORA_POLICY:
            raise ContentRefused(f"OpenAI's content policy refused the clip ({code}): {message}")
        raise _JobFailed(f"OpenAI video {job} ended {state}"
                         + (f" ({code})" if code else "") + f": {message}")
