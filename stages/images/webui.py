"""Backends `a1111` and `comfyui`: images from a Stable Diffusion server a team already runs.

Their checkpoints, LoRAs and workflows stay on that server; sopreel sends each scene's prompt,
seed and size and keeps the PNG that comes back.

- AUTOMATIC1111 (Stable Diffusion WebUI, started with `--api`): one POST to
  `/sdapi/v1/txt2img`, the image comes back base64-encoded in `images`.
- ComfyUI: a workflow in API format (`templates/comfyui/*.json`, or a path) whose values
  `"{{prompt}}"`, `"{{seed}}"`, ... are filled in per scene; POST `/prompt`, wait on
  `/history/{prompt_id}`, fetch the image from `/view`.

Both retry a refused or timed-out connection and a 502/503/504 with exponential backoff; a
request the server is slow to answer is not sent twice (it would be queued twice). Any other
error answer is reported with what the server said.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import Field, field_validator

from stages.errors import SopreelError, TransientError
from stages.images import ImageBackend, ImageOptions, ImageRequest
from stages.paths import TEMPLATES

RETRIED_STATUS = (502, 503, 504)
COMFYUI_WORKFLOWS = TEMPLATES / "comfyui"


class ServerError(SopreelError):
    """The image server could not be reached, refused the request or answered nonsense."""


class ServerUnavailable(ServerError, TransientError):
    """The server is down or overloaded: the build's retry (later, with backoff) may succeed."""


URL = r"^https?://[^\s/]+(/[^\s]*)?$"


class ServerOptions(ImageOptions):
    url: str = Field("http://127.0.0.1:7860", pattern=URL)
    width: int = Field(1024, ge=64, le=4096, multiple_of=8)
    height: int = Field(576, ge=64, le=4096, multiple_of=8)
    steps: int = Field(30, ge=1, le=200)
    negative_prompt: str = Field("", max_length=1000, description="added to the style's")
    checkpoint: str | None = Field(None, description="the server's checkpoint to use")
    timeout_s: float = Field(600, gt=0, le=7200, description="for one image")
    retries: int = Field(3, ge=0, le=10)
    backoff_s: float = Field(2.0, ge=0, le=60, description="first wait; doubles each retry")
    license: str | None = Field(None, description="of the server's checkpoint")


class ServerBackend(ImageBackend):
    """What both server clients share: one HTTP client, retries, and clear errors."""

    server = "image server"
    version = 1
    source_type = "trainedAlgorithmicMedia"   # a Stable Diffusion checkpoint on the server

    def __init__(self, options: ServerOptions):
        super().__init__(options)
        self.options: ServerOptions = options
        self._client: Any = None

    @property
    def license(self) -> str:  # type: ignore[override]
        return self.options.license or "of the server's checkpoint: set `license` in the profile"

    def weights(self, languages: list[str]) -> list[tuple[str, str]]:
        return [(self.options.checkpoint or f"the {self.server}'s checkpoint", self.license)]

    @property
    def model(self) -> str | None:
        return self.options.checkpoint or f"{self.server} at {self.options.url}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, retried while the server is unreachable or overloaded."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(base_url=self.options.url,
                                        timeout=httpx.Timeout(self.options.timeout_s,
                                                              connect=10.0))
        url = f"{self.options.url}{path}"
        for attempt in range(self.options.retries + 1):
            wait = self.options.backoff_s * 2 ** attempt
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.ReadTimeout:   # it is working on it: asking again would queue it twice
                raise ServerError(f"The {self.server} at {url} did not answer within "
                                  f"{self.options.timeout_s:g} s; raise `timeout_s` in the "
                                  "profile for slow models or a busy server.") from None
            except httpx.TransportError as exc:
                if attempt == self.options.retries:
                    raise ServerUnavailable(
                        f"Cannot reach the {self.server} at {url}: {_reason(exc)} "
                        f"({attempt + 1} tries). Is it running{self._start_hint()}? Check "
                        "`url` in the profile.") from None
                time.sleep(wait)
                continue
            if response.status_code not in RETRIED_STATUS:
                return response
            if attempt == self.options.retries:
                raise ServerUnavailable(f"The {self.server} at {url} is unavailable: HTTP "
                                  f"{response.status_code} {response.text[:120]!r} "
                                  f"({attempt + 1} tries).")
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _start_hint(self) -> str:
        return ""

    def _json(self, response: Any, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._garbage(response, what) from None

    def _garbage(self, response: Any, what: str) -> ServerError:
        sample = response.text[:160].replace("\n", " ") if response.content else "(empty)"
        return ServerError(f"The {self.server} at {self.options.url} answered "
                           f"{response.request.url.path} with something that is not {what}: "
                           f"HTTP {response.status_code}, {sample!r}")

    def _prompts(self, request: ImageRequest) -> tuple[str, str]:
        return (request.style.prompt(request.visual),
                request.style.negative(self.options.negative_prompt))

    def _save(self, data: bytes, out: Path, what: str, response: Any) -> dict[str, Any]:
        """Decode the server's image and save it at exactly the profile's size."""
        try:
            with Image.open(io.BytesIO(data)) as decoded:
                image = decoded.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError):
            raise self._garbage(response, what) from None
        size = (self.options.width, self.options.height)
        facts: dict[str, Any] = {"width": size[0], "height": size[1]}
        if image.size != size:   # an upscaling workflow, or a server that rounds sizes
            facts["resized_from"] = list(image.size)
            image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
        image.save(out, format="PNG")
        return facts


class A1111Options(ServerOptions):
    sampler: str = Field("DPM++ 2M", description="an A1111 sampler name")
    scheduler: str | None = Field(None, description="A1111 1.9+: Karras, Exponential...")
    cfg_scale: float = Field(7.0, ge=0, le=30)


class A1111Backend(ServerBackend):
    name = "a1111"
    server = "AUTOMATIC1111 server"
    Options = A1111Options

    def _start_hint(self) -> str:
        return " with --api"

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        options: A1111Options = self.options  # type: ignore[assignment]
        prompt, negative = self._prompts(request)
        body: dict[str, Any] = {
            "prompt": prompt, "negative_prompt": negative, "seed": request.seed,
            "steps": options.steps, "cfg_scale": options.cfg_scale,
            "width": options.width, "height": options.height,
            "sampler_name": options.sampler, "batch_size": 1, "n_iter": 1,
            "send_images": True, "save_images": False,
        }
        if options.scheduler:
            body["scheduler"] = options.scheduler
        if options.checkpoint:
            body["override_settings"] = {"sd_model_checkpoint": options.checkpoint}
            body["override_settings_restore_afterwards"] = True
        response = self._call("POST", "/sdapi/v1/txt2img", json=body)
        if response.status_code != 200:
            raise ServerError(f"The AUTOMATIC1111 server refused the image for scene "
                              f"{request.scene_id}: HTTP {response.status_code}, "
                              f"{_a1111_error(self._json(response, 'an error report'))}")
        answer = self._json(response, "a txt2img result")
        try:
            data = base64.b64decode(answer["images"][0].split(",", 1)[-1], validate=True)
        except (KeyError, IndexError, TypeError, AttributeError, binascii.Error):
            raise self._garbage(response, "a txt2img result") from None
        facts = self._save(data, out, "a PNG image", response)
        info = _a1111_info(answer.get("info"))
        return {**facts, "seed": info.get("seed", request.seed), "steps": options.steps,
                "sampler": options.sampler, "cfg_scale": options.cfg_scale,
                "server": options.url,
                "model": info.get("sd_model_name") or options.checkpoint or "server default",
                "model_hash": info.get("sd_model_hash")}


def _a1111_error(answer: Any) -> str:
    """FastAPI's 422 `detail` list, or A1111's own {error, detail, errors} report."""
    if not isinstance(answer, dict):
        return repr(answer)[:200]
    detail = answer.get("detail")
    if isinstance(detail, list):   # a validation error: where and what
        return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: "
                         f"{item.get('msg')}" for item in detail if isinstance(item, dict))
    parts = [str(answer.get(key)) for key in ("error", "detail", "errors") if answer.get(key)]
    return ": ".join(parts) or json.dumps(answer)[:200]


def _a1111_info(info: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(info) if isinstance(info, str) else info
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class ComfyUIOptions(ServerOptions):
    url: str = Field("http://127.0.0.1:8188", pattern=URL)
    workflow: str = Field("sdxl-txt2img", description=(
        "a workflow in ComfyUI's API format: a name in templates/comfyui/ or a .json path"))
    cfg: float = Field(7.0, ge=0, le=30)
    sampler: str = "dpmpp_2m"
    scheduler: str = "karras"
    output_node: str | None = Field(None, description="the node whose image to keep")
    poll_s: float = Field(0.5, gt=0, le=10, description="how often to ask if it is done")

    @field_validator("workflow")
    @classmethod
    def _workflow_exists(cls, name: str) -> str:
        try:
            workflow_path(name)
        except SopreelError as exc:
            raise ValueError(str(exc)) from None
        return name


class ComfyUIBackend(ServerBackend):
    name = "comfyui"
    server = "ComfyUI server"
    Options = ComfyUIOptions

    def __init__(self, options: ComfyUIOptions):
        super().__init__(options)
        self.options: ComfyUIOptions = options
        self._workflow: dict[str, Any] | None = None
        self._workflow_path: Path | None = None

    def load(self) -> None:
        """Read and check the workflow now, before any scene is sent."""
        path = workflow_path(self.options.workflow)
        self._workflow = read_workflow(path)
        self._workflow_path = path

    def identity(self) -> dict[str, Any]:
        """Options plus the workflow's content: an edited workflow means new images."""
        if self._workflow is None:
            self.load()
        return {**super().identity(), "workflow": self._workflow}

    def generate(self, request: ImageRequest, out: Path,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        if self._workflow is None:
            self.load()
        options = self.options
        prompt, negative = self._prompts(request)
        values = {"prompt": prompt, "negative_prompt": negative, "seed": request.seed,
                  "steps": options.steps, "width": options.width, "height": options.height,
                  "cfg": options.cfg, "sampler": options.sampler,
                  "scheduler": options.scheduler, "checkpoint": options.checkpoint,
                  "filename_prefix": f"sopreel/{request.scene_id}"}
        graph = fill_workflow(self._workflow, values, self._workflow_path)
        response = self._call("POST", "/prompt",
                              json={"prompt": graph, "client_id": uuid.uuid4().hex})
        answer = self._json(response, "a queued prompt")
        if response.status_code != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            if isinstance(answer, dict) and "error" in answer:
                raise ServerError(f"ComfyUI refused the workflow for scene {request.scene_id}: "
                                  f"{_comfy_error(answer)}")
            raise self._garbage(response, "a queued prompt")
        entry = self._wait(answer["prompt_id"], request.scene_id)
        image_ref = self._output_image(entry, response)
        picture = self._call("GET", "/view", params=image_ref)
        if picture.status_code != 200:
            raise self._garbage(picture, "the finished image")
        facts = self._save(picture.content, out, "a PNG image", picture)
        return {**facts, "seed": request.seed, "steps": options.steps, "server": options.url,
                "workflow": str(self._workflow_path), "prompt_id": answer["prompt_id"],
                "model": options.checkpoint or "as the workflow says"}

    def _wait(self, prompt_id: str, scene_id: str) -> dict[str, Any]:
        """Poll the history until the prompt has run (or failed, or took too long)."""
        deadline = time.monotonic() + self.options.timeout_s
        while True:
            response = self._call("GET", f"/history/{prompt_id}")
            history = self._json(response, "a history entry")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise ServerError(f"ComfyUI failed on scene {scene_id}: "
                                      f"{_comfy_execution_error(status)}")
                if status.get("completed", True):
                    return entry
            if time.monotonic() > deadline:
                raise ServerError(f"ComfyUI did not finish scene {scene_id} within "
                                  f"{self.options.timeout_s:g} s (prompt {prompt_id}); raise "
                                  "`timeout_s` in the profile if the server is just busy.")
            time.sleep(self.options.poll_s)

    def _output_image(self, entry: dict[str, Any], response: Any) -> dict[str, str]:
        outputs = entry.get("outputs")
        if not isinstance(outputs, dict):
            raise self._garbage(response, "a finished prompt with outputs")
        nodes = [self.options.output_node] if self.options.output_node else list(outputs)
        for node in nodes:
            for image in (outputs.get(node) or {}).get("images", []):
                if isinstance(image, dict) and "filename" in image:
                    return {"filename": image["filename"],
                            "subfolder": image.get("subfolder", ""),
                            "type": image.get("type", "output")}
        where = f"node {self.options.output_node}" if self.options.output_node else "any node"
        raise ServerError(f"The ComfyUI workflow produced no image at {where}: does it end "
                          "in a SaveImage node?")


def workflow_path(name: str) -> Path:
    """A workflow name from templates/comfyui/, or a path to a JSON file."""
    path = Path(name).expanduser() if name.endswith(".json") else COMFYUI_WORKFLOWS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in COMFYUI_WORKFLOWS.glob("*.json")))
        raise SopreelError(f"ComfyUI workflow not found: {path} (templates have: {known}).")
    return path.resolve()


def read_workflow(path: Path) -> dict[str, Any]:
    """An API-format workflow: node id -> {class_type, inputs}, using {{prompt}} and {{seed}}."""
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SopreelError(f"{path}: not a readable JSON workflow ({exc}).") from None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) and "class_type" in n
                                              for n in graph.values()):
        raise SopreelError(f"{path}: expected ComfyUI's API format (Save (API Format)): a map "
                           "of node ids to {class_type, inputs}, not the UI's graph format.")
    used = set(PLACEHOLDER.findall(json.dumps(graph)))
    missing = {"prompt", "seed"} - used
    if missing:
        raise SopreelError(f"{path}: the workflow must use "
                           f"{' and '.join(f'{{{{{m}}}}}' for m in sorted(missing))} where the "
                           "scene's text and seed go, or every scene gets the same image.")
    return graph


def fill_workflow(graph: Any, values: dict[str, Any], path: Path | None) -> Any:
    """Replace "{{name}}" values (typed when the whole value is a placeholder)."""
    if isinstance(graph, dict):
        return {key: fill_workflow(value, values, path) for key, value in graph.items()}
    if isinstance(graph, list):
        return [fill_workflow(value, values, path) for value in graph]
    if not isinstance(graph, str) or "{{" not in graph:
        return graph

    def value_of(name: str) -> Any:
        if name not in values:
            raise SopreelError(f"{path}: unknown placeholder {{{{{name}}}}}; sopreel fills "
                               f"{', '.join(sorted(values))}.")
        if values[name] is None:
            raise SopreelError(f"{path} uses {{{{{name}}}}}: set `{name}` in the profile's "
                               "images section.")
        return values[name]

    whole = PLACEHOLDER.fullmatch(graph)
    if whole:
        return value_of(whole.group(1))
    return PLACEHOLDER.sub(lambda m: str(value_of(m.group(1))), graph)


def _comfy_error(answer: dict[str, Any]) -> str:
    error = answer.get("error")
    text = (f"{error.get('message', '')} {error.get('details', '')}".strip()
            if isinstance(error, dict) else str(error))
    nodes = answer.get("node_errors") or {}
    details = [f"node {node} ({info.get('class_type', '?')}): "
               + "; ".join(e.get("message", "") + (f" {e['details']}" if e.get("details") else "")
                           for e in info.get("errors", []))
               for node, info in nodes.items() if isinstance(info, dict)]
    return "; ".join([text, *details])


def _comfy_execution_error(status: dict[str, Any]) -> str:
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            data = message[1]
            return (f"node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type', '')}: {data.get('exception_message', '')}")
    return "the prompt ended in an error (see the ComfyUI log)"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text
