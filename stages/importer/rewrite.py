"""An optional rewrite of imported text by an LLM behind an OpenAI-compatible API.

SOP text is written to be read: long sentences, passive voice, cross-references. The rewrite
makes it spoken narration (short sentences, second person) with a caption and a visual prompt
per scene, keeping the document's numbers and terms as they are. Any server that implements
`POST /v1/chat/completions` works: Ollama, vLLM, LM Studio, llama.cpp's server, or a hosted
API. The key, when the server wants one, comes from $SOPREEL_LLM_API_KEY or $OPENAI_API_KEY.

A scene at a time, so a small local model keeps up and progress is visible. A reply that drops
a number or glossary term is asked once more with the missing facts named; if it still drops
them, the scene keeps the rewrite and a note says what is missing (approval is refused until a
person fixes it). A reply that is not the JSON asked for leaves the document's own text.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from stages import languages
from stages.errors import SopreelError
from stages.glossary import Glossary, load_glossary
from stages.importer.facts import missing_facts
from stages.importer.scenes import MAX_CAPTION, MAX_NARRATION, SceneDraft, shorten

KEY_VARIABLES = ("SOPREEL_LLM_API_KEY", "OPENAI_API_KEY")
RETRIED_STATUS = {429, 500, 502, 503, 504}
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)

SYSTEM = """\
You turn the text of a standard operating procedure (SOP) into narration for a safety training
video watched by factory workers. Write the narration and the caption in {language}.
Rules:
- Short sentences, one instruction or fact each. Speak to the worker as "you" (or use the
  imperative).
- Keep every number, unit, code, name and technical term exactly as the source writes it;
  numbers stay in digits.
- Add nothing that is not in the source; leave nothing out.
- A warning stays a warning and starts with the source's warning word.
Reply with only a JSON object, no other text:
{{"narration": "what the narrator says, at most 80 words",
  "caption": "an on-screen title of at most 8 words; keep a step number the input caption has",
  "visual": "in English: one realistic photo for this scene (people, equipment, setting), no
             text or signs with writing in it"}}"""


@dataclass
class ChatClient:
    """A minimal client for OpenAI's chat completions request and response."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    retries: int = 2
    transport: httpx.BaseTransport | None = None     # tests pass a mock; users never do

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else f"{base}/chat/completions"

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's reply to `messages`; a clear error for anything else."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": 0.2, "stream": False}
        attempt = 0
        with httpx.Client(timeout=self.timeout_s, transport=self.transport) as client:
            while True:
                try:
                    response = client.post(self.endpoint, json=body, headers=headers)
                except httpx.TimeoutException:
                    raise SopreelError(
                        f"the LLM server at {self.endpoint} did not answer within "
                        f"{self.timeout_s:g} s (model {self.model}); a large model on a CPU may "
                        "need a longer --llm-timeout") from None
                except httpx.HTTPError as exc:
                    raise SopreelError(
                        f"nothing answers at {self.endpoint} ({type(exc).__name__}: {exc}); "
                        "start the server (ollama serve, vllm serve, LM Studio, llama-server) "
                        "or check --llm") from None
                if response.status_code not in RETRIED_STATUS or attempt >= self.retries:
                    return self._content(response)
                time.sleep(min(2 ** attempt, 8))     # busy or restarting: try again
                attempt += 1

    def _content(self, response: httpx.Response) -> str:
        if response.status_code >= 400:
            detail = _error_message(response)
            hint = {401: f"; set {KEY_VARIABLES[0]} or {KEY_VARIABLES[1]} to a valid key",
                    403: f"; the key in {KEY_VARIABLES[0]}/{KEY_VARIABLES[1]} may not use it",
                    404: f"; is '{self.model}' a model the server has (ollama pull, "
                         "/v1/models), and is --llm the API base (ending in /v1)?",
                    429: "; the server is rate-limiting: try again later"}
            raise SopreelError(f"the LLM server at {self.endpoint} answered HTTP "
                               f"{response.status_code}: {detail}"
                               f"{hint.get(response.status_code, '')}")
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise SopreelError(f"the server at {self.endpoint} did not answer with a chat "
                               f"completion: {response.text[:200]!r}") from None
        if not isinstance(content, str):
            raise SopreelError(f"the server at {self.endpoint} sent a reply without text "
                               f"(content: {content!r:.100})")
        return content


def _error_message(response: httpx.Response) -> str:
    """The message an OpenAI-style error carries ({"error": {"message": ...}}), or the text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    if isinstance(data, dict) and data.get("detail"):
        return str(data["detail"])[:300]
    return response.text[:300]


def api_key() -> str | None:
    return next((os.environ[name] for name in KEY_VARIABLES if os.environ.get(name)), None)


@dataclass
class Rewriter:
    """Rewrites scenes through a `ChatClient`, checking each reply keeps the source's facts."""

    client: ChatClient
    glossary: Glossary | None = None

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def server(self) -> str:
        return self.client.url

    def rewrite(self, scenes: list[SceneDraft], language: str, title: str,
                on_progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Rewrite every scene in place; returns notes for the reviewer."""
        glossary = self.glossary or load_glossary()
        name = languages.get(language).name
        notes: list[str] = []
        for done, scene in enumerate(scenes, start=1):
            notes += self._scene(scene, language, name, title, glossary)
            if on_progress:
                on_progress(done, len(scenes))
        return notes

    def _scene(self, scene: SceneDraft, language: str, name: str, title: str,
               glossary: Glossary) -> list[str]:
        request = {"document": title, "section": scene.extra.get("section") or "",
                   "kind": scene.kind, "caption": scene.caption or "", "text": scene.original
                   or scene.narration}
        messages = [{"role": "system", "content": SYSTEM.format(language=name)},
                    {"role": "user", "content": json.dumps(request, ensure_ascii=False)}]
        reply = self.client.complete(messages)
        parsed = parse_reply(reply)
        if parsed is None:
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": "Reply with only the JSON object."}]
            reply = self.client.complete(messages)
            parsed = parse_reply(reply)
        if parsed is None:
            return [f"scene {scene.id}: the model's reply was not the JSON asked for; the "
                    "document's text stands in: rewrite it yourself"]
        source = request["text"]
        missing = missing_facts(source, _spoken(parsed), language, glossary)
        if missing:
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": "Your narration leaves out "
                          f"{', '.join(missing)}. Write it again keeping each exactly as the "
                          "source writes it. Reply with only the JSON object."}]
            again = parse_reply(self.client.complete(messages))
            if again is not None and len(missing_facts(source, _spoken(again), language,
                                                       glossary)) < len(missing):
                parsed = again
        scene.narration = parsed["narration"]
        scene.caption = shorten(parsed["caption"], MAX_CAPTION) if parsed.get("caption") \
            else scene.caption
        scene.visual = parsed.get("visual") or None
        still = missing_facts(source, _spoken(parsed), language, glossary)
        return [f"scene {scene.id}: the rewrite leaves out {', '.join(still)}; put it back "
                "before approving"] if still else []


def _spoken(parsed: dict[str, str]) -> str:
    return f"{parsed['narration']} {parsed.get('caption') or ''}"


def parse_reply(reply: str) -> dict[str, Any] | None:
    """The JSON object in a model's reply (after any <think> block or code fence), or None."""
    text = _THINKING.sub("", reply).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    narration = data.get("narration")
    if not isinstance(narration, str) or not narration.strip() or \
            len(narration) > MAX_NARRATION:
        return None
    result = {"narration": " ".join(narration.split())}
    for key in ("caption", "visual"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            result[key] = " ".join(value.split())[:1000 if key == "visual" else 400]
    return result
