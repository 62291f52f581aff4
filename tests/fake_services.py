"""Local stand-ins for the hosted services, answering with each API's documented shapes.

One HTTP server on a loopback port plays all four:

- ElevenLabs `POST /v1/text-to-speech/{voice_id}/with-timestamps?output_format=pcm_24000`
  (`xi-api-key` header): `{audio_base64, alignment: {characters, character_start_times_seconds,
  character_end_times_seconds}, normalized_alignment}` and a `character-cost` header; 401
  `{detail: {status: invalid_api_key, message}}`, 404 `voice_not_found`, 422 FastAPI's list.
- OpenAI `POST /v1/images/generations` (Bearer): `{created, data: [{b64_json}], usage}`; 400
  `{error: {message, type, param, code: moderation_blocked}}`.
- OpenAI `POST /v1/videos` (multipart: model, prompt, seconds, size, input_reference), `GET
  /v1/videos/{id}` (`{id, object: video, status: queued|in_progress|completed|failed,
  progress, model, seconds, size, error}`), `GET /v1/videos/{id}/content` (the MP4).
- Runway `POST /v1/image_to_video` (Bearer, `X-Runway-Version`): `{id}`; `GET /v1/tasks/{id}`
  (`{id, status: PENDING|RUNNING|SUCCEEDED|FAILED, progress, output: [url], failure,
  failureCode}`); the output served from `/files/...` without the key, like a signed URL.

`fail_next` queues error answers (429 with Retry-After, 500...) for the next requests;
`hold` keeps jobs running until released; `requests` records what arrived.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

KEYS = {"elevenlabs": "el-test-key-5b1d0c", "openai": "sk-test-openai-9f8e7d",
        "runway": "key_runway_test_3c2b1a"}
POLICY_WORD = "FORBIDDEN"   # a prompt holding it is refused by every service's policy
RATE = 24000


def png(size: tuple[int, int], colour: tuple[int, int, int] = (30, 140, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeServices:
    def __init__(self, tmp: Path, polls_to_finish: int = 2) -> None:
        self.tmp = tmp
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[int, dict[str, str], Any]] = []
        self.polls_to_finish = polls_to_finish
        self.hold = False
        self.jobs: dict[str, dict[str, Any]] = {}
        self.voices = {"stock-voice-1", "clone-of-anna"}
        self.runway_failure: tuple[str, str] | None = None   # (failureCode, failure)
        self._clips: dict[tuple[int, int, int, bool], bytes] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.handle(self, "POST")

            def do_GET(self) -> None:
                outer.handle(self, "GET")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()

    def count(self, method: str, prefix: str) -> int:
        return sum(r["method"] == method and r["path"].startswith(prefix)
                   for r in self.requests)

    # ------------------------------------------------------------------ plumbing

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length) if length else b""
        parsed = urlparse(handler.path)
        record = {"method": method, "path": parsed.path, "query": parse_qs(parsed.query),
                  "headers": dict(handler.headers), "raw": raw}
        with self._lock:
            self.requests.append(record)
            failure = self.fail_next.pop(0) if self.fail_next else None
        if failure:
            status, headers, body = failure
            return self.send(handler, status, body, headers)
        try:
            status, body, headers = self.route(method, parsed.path, record)
        except Exception as exc:   # a bug here must show, not hang the client
            status, body, headers = 500, {"error": {"message": repr(exc)}}, {}
        self.send(handler, status, body, headers)

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: Any,
             headers: dict[str, str] | None = None) -> None:
        if isinstance(body, bytes):
            data, kind = body, "video/mp4"
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def route(self, method: str, path: str, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if path.startswith("/v1/text-to-speech/"):
            return self.speech(path, record)
        if path == "/v1/images/generations":
            return self.image(record)
        if path == "/v1/videos" and method == "POST":
            return self.new_sora(record)
        if path.startswith("/v1/videos/"):
            return self.sora(path, record)
        if path == "/v1/image_to_video":
            return self.new_runway(record)
        if path.startswith("/v1/tasks/"):
            return self.runway_task(path, record)
        if path.startswith("/files/"):
            job = self.jobs[path.split("/")[-1].removesuffix(".mp4")]
            return 200, self.clip(job), {}
        return 404, {"error": {"message": f"no route {path}"}}, {}

    def bearer(self, record: dict[str, Any], service: str) -> bool:
        return record["headers"].get("Authorization") == f"Bearer {KEYS[service]}"

    # --------------------------------------------------------------- ElevenLabs

    def speech(self, path: str, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if record["headers"].get("xi-api-key") != KEYS["elevenlabs"]:
            return 401, {"detail": {"status": "invalid_api_key",
                                    "message": "Invalid API key"}}, {}
        voice = path.split("/")[3]
        if voice not in self.voices:
            return 404, {"detail": {"status": "voice_not_found",
                                    "message": f"A voice with voice_id {voice} was not found."}}, {}
        body = json.loads(record["raw"] or b"{}")
        record["body"] = body
        if not isinstance(body.get("text"), str) or not body.get("model_id"):
            return 422, {"detail": [{"loc": ["body", "text"], "msg": "Field required",
                                     "type": "missing"}]}, {}
        if record["query"].get("output_format") != ["pcm_24000"]:
            return 422, {"detail": [{"loc": ["query", "output_format"], "msg": "unexpected"}]}, {}
        text = body["text"]
        lead, per_char, tail = 0.25, 0.05, 0.3
        starts = [lead + i * per_char for i in range(len(text))]
        ends = [s + per_char for s in starts]
        total = lead + len(text) * per_char + tail
        t = np.arange(round(total * RATE)) / RATE
        voice_part = (t >= lead) & (t < lead + len(text) * per_char)
        samples = (0.3 * np.sin(2 * np.pi * 220 * t) * voice_part * 32767).astype("<i2")
        alignment = {"characters": list(text), "character_start_times_seconds": starts,
                     "character_end_times_seconds": ends}
        return 200, {"audio_base64": base64.b64encode(samples.tobytes()).decode(),
                     "alignment": alignment, "normalized_alignment": alignment}, {
            "character-cost": str(len(text)), "request-id": uuid.uuid4().hex}

    # ------------------------------------------------------------ OpenAI images

    def image(self, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if not self.bearer(record, "openai"):
            return 401, {"error": {"message": "Incorrect API key provided: "
                                   f"{record['headers'].get('Authorization', '')[7:]}.",
                                   "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}, {}
        body = json.loads(record["raw"] or b"{}")
        record["body"] = body
        if POLICY_WORD in body.get("prompt", ""):
            return 400, {"error": {"message": "Your request was rejected by the safety system.",
                                   "type": "image_generation_user_error", "param": None,
                                   "code": "moderation_blocked"}}, {}
        if body.get("size") not in ("1024x1024", "1536x1024", "1024x1536"):
            return 400, {"error": {"message": f"Invalid size {body.get('size')}",
                                   "type": "invalid_request_error", "code": None}}, {}
        width, height = (int(x) for x in body["size"].split("x"))
        data = base64.b64encode(png((width, height))).decode()
        return 200, {"created": 1764000000, "data": [{"b64_json": data}],
                     "usage": {"total_tokens": 4230, "input_tokens": 70, "output_tokens": 4160,
                               "input_tokens_details": {"text_tokens": 70,
                                                        "image_tokens": 0}}}, {}

    # ------------------------------------------------------------ OpenAI videos

    def new_sora(self, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if not self.bearer(record, "openai"):
            return 401, {"error": {"message": "Incorrect API key provided.",
                                   "code": "invalid_api_key"}}, {}
        fields = _multipart(record)
        record["body"] = {k: v for k, v in fields.items() if k != "input_reference"}
        reference = Image.open(io.BytesIO(fields["input_reference"]))
        if f"{reference.width}x{reference.height}" != fields["size"]:
            return 400, {"error": {"message": "input_reference must match size",
                                   "code": "invalid_value"}}, {}
        if POLICY_WORD in fields["prompt"]:
            return 400, {"error": {"message": "This request was blocked by our moderation.",
                                   "code": "moderation_blocked"}}, {}
        width, height = (int(x) for x in fields["size"].split("x"))
        job = self.new_job("video_" + uuid.uuid4().hex, width, height, int(fields["seconds"]),
                           30, True)
        return 200, self.sora_object(job), {}

    def sora(self, path: str, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if not self.bearer(record, "openai"):
            return 401, {"error": {"message": "Incorrect API key provided."}}, {}
        parts = path.split("/")
        job = self.jobs.get(parts[3])
        if job is None:
            return 404, {"error": {"message": "Video not found", "code": "not_found"}}, {}
        if len(parts) == 5 and parts[4] == "content":
            if job["status"] != "completed":
                return 400, {"error": {"message": "Video is not ready"}}, {}
            return 200, self.clip(job), {}
        self.advance(job, "in_progress", "completed")
        return 200, self.sora_object(job), {}

    def sora_object(self, job: dict[str, Any]) -> dict[str, Any]:
        return {"id": job["id"], "object": "video", "model": "sora-2", "status": job["status"],
                "progress": job["progress"], "created_at": 1764000000,
                "size": f"{job['width']}x{job['height']}", "seconds": str(job["seconds"]),
                "quality": "standard", "error": None}

    # --------------------------------------------------------------------- Runway

    def new_runway(self, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if not self.bearer(record, "runway"):
            return 401, {"error": "Invalid API key"}, {}
        if record["headers"].get("X-Runway-Version") != "2024-11-06":
            return 400, {"error": "X-Runway-Version header is required"}, {}
        body = json.loads(record["raw"] or b"{}")
        record["body"] = {k: v for k, v in body.items() if k != "promptImage"}
        if not str(body.get("promptImage", "")).startswith("data:image/"):
            return 400, {"error": "Validation of body failed",
                         "issues": [{"message": "promptImage must be a URL or data URI"}]}, {}
        width, height = (int(x) for x in body["ratio"].split(":"))
        job = self.new_job(str(uuid.uuid4()), width, height, int(body["duration"]), 24, False)
        job["prompt"] = body.get("promptText", "")
        return 200, {"id": job["id"]}, {}

    def runway_task(self, path: str, record: dict[str, Any]) -> tuple[int, Any, dict]:
        if not self.bearer(record, "runway"):
            return 401, {"error": "Invalid API key"}, {}
        job = self.jobs.get(path.split("/")[-1])
        if job is None:
            return 404, {"error": "Task not found"}, {}
        self.advance(job, "RUNNING", "SUCCEEDED")
        task = {"id": job["id"], "status": "PENDING" if job["status"] == "queued"
                else job["status"], "createdAt": "2026-12-02T10:00:00.000Z"}
        if POLICY_WORD in job.get("prompt", "") and job["status"] == "SUCCEEDED":
            task.update(status="FAILED", failure="Input text failed moderation",
                        failureCode="SAFETY.INPUT.TEXT")
        elif self.runway_failure and job["status"] == "SUCCEEDED":
            code, failure = self.runway_failure
            task.update(status="FAILED", failure=failure, failureCode=code)
        elif job["status"] == "SUCCEEDED":
            task["output"] = [f"{self.url}/files/{job['id']}.mp4"]
        else:
            task["progress"] = job["progress"] / 100
        return 200, task, {}

    # ------------------------------------------------------------------- jobs

    def new_job(self, job_id: str, width: int, height: int, seconds: int, fps: int,
                sound: bool) -> dict[str, Any]:
        job = {"id": job_id, "status": "queued", "progress": 0, "polls": 0, "width": width,
               "height": height, "seconds": seconds, "fps": fps, "sound": sound}
        self.jobs[job_id] = job
        return job

    def advance(self, job: dict[str, Any], running: str, done: str) -> None:
        if job["status"] in (done, "FAILED"):
            return
        job["polls"] += 1
        if self.hold or job["polls"] < self.polls_to_finish:
            job.update(status=running, progress=min(90, job["polls"] * 30))
        else:
            job.update(status=done, progress=100)

    def clip(self, job: dict[str, Any]) -> bytes:
        """A real MP4 of the job's size and length (test pattern; Sora's with sound)."""
        key = (job["width"], job["height"], job["seconds"], job["sound"])
        if key not in self._clips:
            out = self.tmp / f"clip-{'x'.join(map(str, key))}.mp4"
            sound = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={job['seconds']}"] \
                if job["sound"] else []
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                            f"testsrc2=size={job['width']}x{job['height']}:rate={job['fps']}:"
                            f"duration={job['seconds']}", *sound, "-c:v", "libx264",
                            "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest",
                            str(out)], check=True)
            self._clips[key] = out.read_bytes()
        return self._clips[key]


def _multipart(record: dict[str, Any]) -> dict[str, Any]:
    """multipart/form-data fields: text as str, files as bytes."""
    head = f"Content-Type: {record['headers']['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + record["raw"])
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[name] = payload if part.get_filename() else payload.decode()
    return fields
