"""A local stand-in for an OpenAI-compatible chat server (Ollama, vLLM, LM Studio, llama.cpp).

It checks every request against the documented shape of POST /v1/chat/completions (a model,
messages with a role and string content, no streaming here) and answers with the documented
response shape (`choices[0].message.content`) or error shape (`{"error": {"message", "type",
"code"}}`). What it answers is scripted per test by `mode`:

- rewrite: narration in the second person from the scene's text, numbers kept, in the
  labelled lines asked for (after a <think> block, inside a code fence, as models do);
- json: the same as a JSON object;
- echo: the scene's text back, as a model that ignores its instructions;
- drop-numbers: the rewrite without any digits, however often it is asked;
- fix-on-retry: drops the digits, then keeps them once told what it left out;
- prose: chatter without the labelled lines;
- slow: answers after `delay_s`;
- flaky: HTTP 503 `failures` times, then as rewrite;
- HTTP status codes (401, 404, 500): that error, in OpenAI's error shape.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLLM:
    def __init__(self, mode: str = "rewrite", delay_s: float = 0.0, failures: int = 0):
        self.mode, self.delay_s, self.failures = mode, delay_s, failures
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                status, answer = fake.answer(self.path, body)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up
                    pass

        return Handler

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problem = _shape_problem(path, body)
        if problem:
            return 400, _error(problem, "invalid_request_error")
        if self.mode.isdigit():
            status = int(self.mode)
            message = {401: "Incorrect API key provided.",
                       404: f"The model `{body['model']}` does not exist.",
                       500: "The server had an error while processing your request."}[status]
            return status, _error(message, "invalid_request_error" if status < 500
                                  else "server_error")
        if self.mode == "flaky" and self.failures > 0:
            self.failures -= 1
            return 503, _error("The server is overloaded.", "server_error")
        if self.mode == "slow":
            time.sleep(self.delay_s)
        return 200, _completion(body["model"], self.reply(body["messages"]))

    def reply(self, messages: list[dict[str, str]]) -> str:
        system = next(m["content"] for m in messages if m["role"] == "system")
        text = next(m["content"] for m in messages if m["role"] == "user")
        caption = re.search(r'current caption\s+"(.*)"', system).group(1) or "Safety step"
        if self.mode == "echo":
            return text
        if self.mode == "prose":
            return "Sure! Here is a friendlier version of that step for your workers."
        narration = f"You must do this: {text}"
        if self.mode == "drop-numbers" or (self.mode == "fix-on-retry" and
                                           "left out" not in system):
            narration = re.sub(r"\s*\d+(?:[.,]\d+)*", "", narration)
        visual = "a factory worker at a conveyor, realistic photo"
        if self.mode == "json":
            return json.dumps({"narration": narration, "caption": caption, "visual": visual})
        return (f"<think>keep it short</think>\n```\nNARRATION: {narration}\nCAPTION: {caption}"
                f"\nVISUAL: {visual}\n```")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):   # the client gave up: a timeout
            return
        super().handle_error(request, client_address)


def _shape_problem(path: str, body: dict[str, Any]) -> str | None:
    """What is wrong with a request, by OpenAI's API reference; None when nothing is."""
    if path != "/v1/chat/completions":
        return f"Unknown path {path}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for message in messages:
        if message.get("role") not in ("system", "user", "assistant") or \
                not isinstance(message.get("content"), str):
            return f"invalid message {message!r}"
    if body.get("stream"):
        return "this fake does not stream"
    return None


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _completion(model: str, content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
