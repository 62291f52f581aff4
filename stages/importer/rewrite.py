"""An optional rewrite of imported text by an LLM behind an OpenAI-compatible API.

SOP text is written to be read: long sentences, passive voice, cross-references. The rewrite
makes it spoken narration (short sentences, second person) with a caption and a visual prompt
per scene, keeping the document's numbers and terms as they are. Any server that implements
`POST /v1/chat/completions` works: Ollama, vLLM, LM Studio, llama.cpp's server, or a hosted
API. The key, when the server wants one, comes from $SOPREEL_LLM_API_KEY or $OPENAI_API_KEY.

A scene at a time, so a small local model keeps up and progress is visible: the system message
holds the rules and the scene's context, the user message the scene's text alone. The answer is
three labelled lines (NARRATION, CAPTION, VISUAL; a JSON object with those keys is read too);
an answer without them is taken whole as the narration, with a note for the reviewer. A reply
that drops a number or glossary term is asked again, afresh, with the missing facts named; if
it still drops them the scene keeps the rewrite and a note says what is missing (approval is
refused until a person puts them back).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from stages import languages
from stages.errors import SopreelError
from stages.glossary import Glossary, load_glossary
from stages.importer.facts import missing_facts
from stages.importer.scenes import MAX_CAPTION, MAX_NARRATION, SceneDraft, shorten

KEY_VARIABLES = ("SOPREEL_LLM_API_KEY", "OPENAI_API_KEY")
RETRIED_STATUS = {429, 500, 502, 503, 504}
_THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[a-z]*\s*$", re.MULTILINE | re.IGNORECASE)
_LABEL = re.compile(r"^\W*(NARRATION|CAPTION|VISUAL)\W*:[*_\s]*", re.MULTILINE | re.IGNORECASE)

SYSTEM = """\
You turn the text of a standard operating procedure (SOP) into narration for a safety training
video watched by factory workers. The user message is one scene's text from the SOP.
Rules:
- Write the narration and the caption in {language}.
- Short sentences, one instruction or fact each. Speak to the worker as "you" (or use the
  imperative).
- Keep every number, unit, code, name and technical term exactly as the source writes it;
  numbers stay in digits.
- Add nothing that is not in the source; leave nothing out.
- A warning stays a warning and starts with the source's warning word.
Answer in exactly this form, three lines, nothing else:
NARRATION: what the narrator says, at most 80 words
CAPTION: an on-screen title of at most 8 words (keep the step number of the current caption)
VISUAL: in English, one realistic photo for this scene (people, equipment, setting), with no
text or writing in it
The scene: document "{document}", section "{section}", a {kind} scene, current caption
"{caption}".{again}"""
AGAIN = ("\nYour last answer left out {missing}. This time keep each of them exactly as the "
         "source writes it.")


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
        """The completions URL: --llm is the API base (".../v1"); a server's bare address
        (http://127.0.0.1:11434) means its /v1, where every compatible server has it."""
        base = self.url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        if urlsplit(base).path in ("", "/"):
            base += "/v1"
        return f"{base}/chat/completions"

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
        source = scene.original or scene.narration
        context = {"language": name, "document": title, "kind": scene.kind,
                   "section": scene.section or "", "caption": scene.caption or ""}
        parsed = self._ask(source, context, again="")
        missing = missing_facts(source, _spoken(parsed), language, glossary)
        if missing:    # asked afresh, naming what it left out (never a follow-up turn: a
            # model that echoes its input would then "keep" the numbers of the reminder)
            again = self._ask(source, context, again=AGAIN.format(missing=", ".join(missing)))
            if len(missing_facts(source, _spoken(again), language, glossary)) < len(missing):
                parsed = again
        scene.narration = parsed["narration"]
        scene.caption = shorten(parsed["caption"], MAX_CAPTION) if parsed.get("caption") \
            else scene.caption
        scene.visual = parsed.get("visual") or None
        notes = []
        if parsed.get("plain"):
            notes.append(f"scene {scene.id}: the model answered without the NARRATION/CAPTION/"
                         "VISUAL lines asked for; its whole answer is the narration: check it")
        still = missing_facts(source, _spoken(parsed), language, glossary)
        if still:
            notes.append(f"scene {scene.id}: the rewrite leaves out {', '.join(still)}; put it "
                         "back before approving")
        return notes

    def _ask(self, source: str, context: dict[str, str], again: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": SYSTEM.format(again=again, **context)},
                    {"role": "user", "content": source}]
        parsed = parse_reply(self.client.complete(messages))
        if parsed is None:   # nothing usable (an empty answer, an overlong one)
            return {"narration": source, "plain": True}
        return parsed


def _spoken(parsed: dict[str, str]) -> str:
    return f"{parsed['narration']} {parsed.get('caption') or ''}"


def parse_reply(reply: str) -> dict[str, Any] | None:
    """Narration, caption and visual from a model's answer: the three labelled lines asked for,
    or a JSON object with those keys (some models answer so); otherwise the whole answer is
    the narration (`plain`). None when there is no usable text. A <think> block and code
    fences are skipped."""
    text = _FENCE.sub("", _THINKING.sub("", reply)).strip()
    found = _json_reply(text) or _labelled(text)
    if found is None:
        found = {"narration": text, "plain": True}
    narration = " ".join(str(found.get("narration") or "").split())
    if not narration or len(narration) > MAX_NARRATION:
        return None
    result: dict[str, Any] = {"narration": narration}
    for key, limit in (("caption", 400), ("visual", 1000)):
        value = " ".join(str(found.get(key) or "").split())
        if value:
            result[key] = value[:limit]
    if found.get("plain"):
        result["plain"] = True
    return result


def _json_reply(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("narration"), str) else None


def _labelled(text: str) -> dict[str, str] | None:
    """NARRATION: / CAPTION: / VISUAL: lines; a label's text runs until the next label."""
    parts = _LABEL.split(text)
    if len(parts) < 3:
        return None
    found = {label.lower(): value.strip() for label, value in zip(parts[1::2], parts[2::2],
                                                                  strict=True)}
    return found if found.get("narration") else None
