"""The `a1111` and `comfyui` clients against a small HTTP server in the test.

The server answers with the documented shapes: AUTOMATIC1111's `/sdapi/v1/txt2img`
(`{images: [base64], parameters, info}`; FastAPI's 422 `{detail: [{loc, msg, type}]}`; its own
`{error, detail, body, errors}` reports) and ComfyUI's `/prompt` (`{prompt_id, number,
node_errors}`, or 400 `{error, node_errors}`), `/history/{id}` (empty until done, then
`{id: {prompt, outputs, status}}`) and `/view?filename&subfolder&type` (the PNG bytes).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, ffprobe, write_script
from PIL import Image

from flows.cli import main
from stages.errors import ProfileError, SopreelError
from stages.images import BACKENDS, ImageRequest, scene_seed
from stages.images.webui import ServerError, fill_workflow, read_workflow, workflow_path
from stages.profile import load_profile
from stages.style import load_style


def png(size: tuple[int, int], colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeServer:
    """Both APIs on one port. `mode` picks an answer; `requests` records what arrived."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[str, str, Any]] = []
        self.history_polls = 0
        self.unavailable = 0          # answer this many requests with 503 first
        self.image_size: tuple[int, int] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                outer.requests.append(("POST", self.path, body))
                outer.answer(self, "POST", self.path, body)

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, None))
                outer.answer(self, "GET", self.path, None)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler, method: str, path: str, body: Any) -> None:
        if self.unavailable:
            self.unavailable -= 1
            return self.send(handler, 503, b"busy", "text/plain")
        if path == "/sdapi/v1/txt2img":
            return self.txt2img(handler, body)
        if path == "/prompt":
            return self.prompt(handler, body)
        if path.startswith("/history/"):
            return self.history(handler, path.rsplit("/", 1)[1])
        if path.startswith("/view"):
            query = parse_qs(urlparse(path).query)
            assert query["type"] == ["output"] and query["filename"] == ["sopreel_00001_.png"]
            return self.send(handler, 200, png(self.image_size or self.size), "image/png")
        return self.send(handler, 404, b'{"detail": "Not Found"}')

    def txt2img(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        if self.mode == "garbage":
            return self.send(handler, 200, b"<html>Gradio is loading</html>", "text/html")
        if self.mode == "slow":
            time.sleep(0.5)
        if not isinstance(body.get("steps"), int) or self.mode == "422":
            return self.send(handler, 422, json.dumps({"detail": [{
                "loc": ["body", "steps"], "msg": "Input should be a valid integer",
                "type": "int_parsing"}]}).encode())
        if self.mode == "500":
            return self.send(handler, 500, json.dumps({
                "error": "OutOfMemoryError", "detail": "", "body": "",
                "errors": "CUDA out of memory. Tried to allocate 2.00 GiB"}).encode())
        if self.mode == "bad-base64":
            return self.send(handler, 200, json.dumps({"images": ["%%%"]}).encode())
        image = png(self.image_size or (body["width"], body["height"]))
        info = {"seed": body["seed"], "sd_model_name": "sd_xl_base_1.0",
                "sd_model_hash": "31e35c80fc"}
        self.send(handler, 200, json.dumps({
            "images": [base64.b64encode(image).decode()], "parameters": body,
            "info": json.dumps(info)}).encode())

    def prompt(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        graph = body.get("prompt")
        if self.mode == "node-error":
            return self.send(handler, 400, json.dumps({
                "error": {"type": "prompt_outputs_failed_validation",
                          "message": "Prompt outputs failed validation", "details": "",
                          "extra_info": {}},
                "node_errors": {"4": {"errors": [{
                    "type": "value_not_in_list", "message": "Value not in list",
                    "details": "ckpt_name: 'missing.safetensors' not in ['sdxl.safetensors']",
                    "extra_info": {}}], "dependent_outputs": ["9"],
                    "class_type": "CheckpointLoaderSimple"}}}).encode())
        self.size = (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"])
        self.prompt_id = str(uuid.uuid4())
        self.history_polls = 0
        self.send(handler, 200, json.dumps({"prompt_id": self.prompt_id, "number": 1,
                                            "node_errors": {}}).encode())

    def history(self, handler: BaseHTTPRequestHandler, prompt_id: str) -> None:
        self.history_polls += 1
        queued = self.history_polls < 3 or self.mode == "stuck" or prompt_id != self.prompt_id
        if queued:                                  # ComfyUI answers {} until it is done
            return self.send(handler, 200, b"{}")
        if self.mode == "execution-error":
            status = {"status_str": "error", "completed": False, "messages": [
                ["execution_start", {"prompt_id": prompt_id}],
                ["execution_error", {"prompt_id": prompt_id, "node_id": "3",
                                     "node_type": "KSampler",
                                     "exception_type": "torch.OutOfMemoryError",
                                     "exception_message": "CUDA out of memory"}]]}
            outputs = {}
        else:
            status = {"status_str": "success", "completed": True, "messages": []}
            outputs = {"9": {"images": [{"filename": "sopreel_00001_.png",
                                         "subfolder": "sopreel", "type": "output"}]}}
        self.send(handler, 200, json.dumps({prompt_id: {
            "prompt": [1, prompt_id, {}, {}, ["9"]], "outputs": outputs,
            "status": status}}).encode())

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, data: bytes,
             kind: str = "application/json") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.http.shutdown()


def request(seed: int = 42) -> ImageRequest:
    return ImageRequest(scene_id="dock", step=1, steps=1, visual="a forklift at a loading dock",
                        seed=seed, style=load_style("clean-industrial"))


def client(name: str, url: str, **options: Any):
    cls = BACKENDS.get(name)
    chosen = cls(cls.Options(url=url, width=320, height=192, steps=20, backoff_s=0, **options))
    chosen.load()
    return chosen


def test_a1111_sends_the_scene_and_keeps_the_png(server, tmp_path):
    a1111 = client("a1111", server.url, checkpoint="sd_xl_base_1.0.safetensors",
                   negative_prompt="cartoon", cfg_scale=5.5, sampler="Euler a")
    facts = a1111.generate(request(), tmp_path / "a.png")
    _, path, body = server.requests[-1]
    style = load_style("clean-industrial")
    assert path == "/sdapi/v1/txt2img"
    assert body["prompt"] == style.prompt("a forklift at a loading dock")
    assert body["negative_prompt"] == f"{style.negative_prompt}, cartoon"
    assert (body["seed"], body["steps"], body["cfg_scale"]) == (42, 20, 5.5)
    assert (body["width"], body["height"], body["sampler_name"]) == (320, 192, "Euler a")
    assert body["override_settings"] == {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"}
    with Image.open(tmp_path / "a.png") as image:
        assert image.format == "PNG" and image.size == (320, 192)
    assert facts["model"] == "sd_xl_base_1.0" and facts["model_hash"] == "31e35c80fc"
    assert facts["seed"] == 42 and facts["server"] == server.url


def refused_in_each_mode(chosen, server: FakeServer, answers: dict[str, str], out: Path) -> None:
    """Each server `mode` makes the client fail with the matching message, writing nothing."""
    for mode, message in answers.items():
        server.mode = mode
        with pytest.raises(ServerError, match=message):
            chosen.generate(request(), out)
    assert not out.exists()


def test_a1111_error_answers_are_reported_with_what_the_server_said(server, tmp_path):
    refused_in_each_mode(client("a1111", server.url), server, {
        "422": r"HTTP 422, steps: Input should be a valid integer",
        "500": r"HTTP 500, OutOfMemoryError: CUDA out of memory",
        "garbage": r"with something that is not a txt2img result: HTTP 200, "
                   r"'<html>Gradio is loading</html>'",
        "bad-base64": "not a txt2img result",
    }, tmp_path / "a.png")


def test_a_busy_server_is_retried_with_backoff_then_given_up(server, tmp_path):
    a1111 = client("a1111", server.url, retries=2)
    server.unavailable = 2
    a1111.generate(request(), tmp_path / "a.png")
    assert [p for _, p, _ in server.requests] == ["/sdapi/v1/txt2img"] * 3
    server.unavailable = 5
    with pytest.raises(ServerError, match=r"txt2img is unavailable: HTTP 503 'busy' \(3 tries\)"):
        a1111.generate(request(), tmp_path / "b.png")


def test_a_slow_answer_is_an_error_and_never_sent_twice(server, tmp_path):
    server.mode = "slow"
    a1111 = client("a1111", server.url, timeout_s=0.2, retries=3)
    with pytest.raises(ServerError, match=r"did not answer within 0\.2 s; raise `timeout_s`"):
        a1111.generate(request(), tmp_path / "a.png")
    assert len(server.requests) == 1


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with socket.socket() as probe:          # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    a1111 = client("a1111", f"http://127.0.0.1:{port}", retries=1)
    with pytest.raises(ServerError, match=rf"Cannot reach the AUTOMATIC1111 server at "
                                          rf"http://127.0.0.1:{port}/sdapi/v1/txt2img: connection "
                                          r"refused \(2 tries\)\. Is it running with --api\?"):
        a1111.generate(request(), tmp_path / "a.png")
    comfy = client("comfyui", f"http://127.0.0.1:{port}", retries=0, checkpoint="x")
    with pytest.raises(ServerError, match=r"Cannot reach the ComfyUI server .* \(1 tries\)"):
        comfy.generate(request(), tmp_path / "a.png")


def test_comfyui_fills_the_workflow_waits_and_fetches_the_image(server, tmp_path):
    comfy = client("comfyui", server.url, checkpoint="sdxl.safetensors", cfg=6.0, poll_s=0.01)
    facts = comfy.generate(request(), tmp_path / "a.png")
    posted = next(body for _, path, body in server.requests if path == "/prompt")
    graph = posted["prompt"]
    style = load_style("clean-industrial")
    assert graph["6"]["inputs"]["text"] == style.prompt("a forklift at a loading dock")
    assert graph["7"]["inputs"]["text"] == style.negative_prompt
    assert graph["3"]["inputs"]["seed"] == 42 and graph["3"]["inputs"]["steps"] == 20
    assert graph["3"]["inputs"]["cfg"] == 6.0 and graph["5"]["inputs"]["width"] == 320
    assert graph["4"]["inputs"]["ckpt_name"] == "sdxl.safetensors"
    assert graph["9"]["inputs"]["filename_prefix"] == "sopreel/dock"
    assert graph["3"]["inputs"]["model"] == ["4", 0]            # links untouched
    assert server.history_polls == 3
    assert facts["prompt_id"] == server.prompt_id
    assert facts["workflow"].endswith("templates/comfyui/sdxl-txt2img.json")
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (320, 192)


def test_comfyui_refusals_and_failures_name_the_node(server, tmp_path):
    comfy = client("comfyui", server.url, checkpoint="missing.safetensors", poll_s=0.01)
    refused_in_each_mode(comfy, server, {
        "node-error": r"Prompt outputs failed validation; node 4 \(CheckpointLoaderSimple\): "
                      r"Value not in list ckpt_name: 'missing.safetensors' not in",
        "execution-error": r"ComfyUI failed on scene dock: node 3 \(KSampler\): "
                           r"torch.OutOfMemoryError: CUDA out of memory",
    }, tmp_path / "a.png")
    server.mode = "stuck"                   # the prompt is accepted but never finishes
    stuck = client("comfyui", server.url, checkpoint="x", poll_s=0.05, timeout_s=1.5)
    with pytest.raises(ServerError, match=r"did not finish scene dock within 1\.5 s"):
        stuck.generate(request(), tmp_path / "a.png")
    assert server.history_polls >= 3


def test_a_server_image_of_another_size_is_fitted_to_the_frame(server, tmp_path):
    server.image_size = (640, 640)           # e.g. a workflow that upscales
    facts = client("a1111", server.url).generate(request(), tmp_path / "a.png")
    assert facts["resized_from"] == [640, 640]
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (320, 192)


def test_workflow_templates_are_checked_before_anything_is_sent(tmp_path):
    ui_format = tmp_path / "ui.json"
    ui_format.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(SopreelError, match="expected ComfyUI's API format"):
        read_workflow(ui_format)
    no_seed = tmp_path / "fixed.json"
    no_seed.write_text(json.dumps({"1": {"class_type": "CLIPTextEncode",
                                         "inputs": {"text": "{{prompt}}"}}}))
    with pytest.raises(SopreelError, match=r"must use \{\{seed\}\}"):
        read_workflow(no_seed)
    with pytest.raises(SopreelError, match=r"ComfyUI workflow not found.*sdxl-txt2img"):
        workflow_path("nope")
    graph = read_workflow(workflow_path("sdxl-txt2img"))
    with pytest.raises(SopreelError, match=r"uses \{\{checkpoint\}\}: set `checkpoint`"):
        fill_workflow(graph, {"prompt": "p", "seed": 1, "negative_prompt": "", "steps": 2,
                              "width": 64, "height": 64, "cfg": 1.0, "sampler": "euler",
                              "scheduler": "normal", "checkpoint": None,
                              "filename_prefix": "x"}, Path("sdxl-txt2img.json"))
    assert fill_workflow({"a": "scene {{seed}} of {{prompt}}"}, {"seed": 3, "prompt": "dock"},
                         None) == {"a": "scene 3 of dock"}


@pytest.mark.usefixtures("prefect_server")
def test_a_build_with_an_a1111_profile_records_the_server_model(server, tmp_path):
    profile = tmp_path / "a1111.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "a1111", "url": server.url, "checkpoint": "sd_xl_base_1.0.safetensors",
        "width": 320, "height": 192, "license": "CreativeML Open RAIL++-M"}}), encoding="utf-8")
    script = write_script(tmp_path, base_script(music=None))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(script), "--profile", str(profile),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    stills = [scene["assets"][0] for scene in manifest["scenes"]]
    assert [s["backend"] for s in stills] == ["a1111", "a1111"]
    assert {s["model"] for s in stills} == {"sd_xl_base_1.0"}
    assert stills[0]["info"]["model_hash"] == "31e35c80fc"
    assert [s["seed"] for s in stills] == [scene_seed("test-sop", "isolate"),
                                           scene_seed("test-sop", "lock")]
    sent = [body["seed"] for _, path, body in server.requests if path == "/sdapi/v1/txt2img"]
    assert sorted(sent) == sorted(s["seed"] for s in stills)
    assert {"backend": "a1111", "model": "sd_xl_base_1.0",
            "license": "CreativeML Open RAIL++-M", "commercial": True} in manifest["licenses"]
    # IPTC: a trained model drew the stills; a camera move over them is generated too; the
    # espeak narration is algorithmic; so the video is a composite with trained media.
    iptc = "http://cv.iptc.org/newscodes/digitalsourcetype/"
    kinds = {(a["stage"], a["digital_source_type"]) for scene in manifest["scenes"]
             for a in scene["assets"]}
    assert kinds == {("images", iptc + "trainedAlgorithmicMedia"),
                     ("animate", iptc + "trainedAlgorithmicMedia"),
                     ("narrate", iptc + "algorithmicMedia")}
    assert manifest["digital_source_type"] == iptc + "compositeWithTrainedAlgorithmicMedia"
    tags = ffprobe(out / "test-sop" / "en" / "video.mp4")["format"]["tags"]
    assert tags["digital_source_type"] == iptc + "compositeWithTrainedAlgorithmicMedia"


def test_a_profile_naming_a_missing_workflow_is_refused_at_its_line(tmp_path):
    profile = tmp_path / "comfy.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "comfyui", "workflow": "my-flow.json"}}, sort_keys=False), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"comfy.yaml:\d+: images.workflow: .*ComfyUI "
                                           r"workflow not found"):
        load_profile(str(profile))


@pytest.mark.usefixtures("prefect_server")
def test_a_server_that_stays_down_is_retried_by_the_build_with_backoff(server, tmp_path,
                                                                       monkeypatch):
    """The client's own quick retries are spent (retries: 0); the build's task retry from
    operations.yaml tries again later, and the build completes."""
    profile = tmp_path / "a1111.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "a1111", "url": server.url, "width": 320, "height": 192, "retries": 0,
        "license": "CreativeML Open RAIL++-M"}}), encoding="utf-8")
    script = write_script(tmp_path, base_script(music=None))
    operations = tmp_path / "operations.yaml"
    monkeypatch.setenv("SOPREEL_OPERATIONS", str(operations))
    args = ["build", str(script), "--profile", str(profile), "--out"]

    operations.write_text("stages:\n  images: {retries: 0}\n", encoding="utf-8")
    server.unavailable = 1
    result = CliRunner().invoke(main, [*args, str(tmp_path / "first")])
    assert result.exit_code == 2
    assert "is unavailable: HTTP 503 'busy' (1 tries)" in result.output

    operations.write_text("stages:\n  images: {retries: 1, retry_delays_s: [0.5]}\n",
                          encoding="utf-8")
    server.unavailable, server.requests = 1, []
    result = CliRunner().invoke(main, [*args, str(tmp_path / "second")])
    assert result.exit_code == 0, result.output
    posts = [path for _, path, _ in server.requests if path == "/sdapi/v1/txt2img"]
    assert len(posts) == 3   # two scenes, one of them twice
