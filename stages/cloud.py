"""Hosted services (ElevenLabs, OpenAI, Runway): keys, requests, long jobs and their prices.

What every hosted backend shares, so each of them only says what its API looks like:

- **Keys** come from the service's usual environment variable (`ELEVENLABS_API_KEY`,
  `OPENAI_API_KEY`, `RUNWAYML_API_SECRET`), or from a Prefect Secret block the profile names
  (`key_secret`). A key is read at the first request, sent only in that service's header, and
  scrubbed from every message sopreel writes; it never reaches a manifest, log or artifact.
- **Requests** (`ServiceClient.send`) retry 429 and 5xx answers, waiting as long as the
  service's `Retry-After` asks (else with exponential backoff), and a connection that fails.
  An out-of-credit 429 is not retried. A request that creates paid work carries an
  `Idempotency-Key`, so a retry is never billed as a second job.
- **Long jobs** (a video) are kept in a `JobJournal` the moment the service returns their id:
  a build killed while polling finds the id there and polls the same job again, instead of
  paying for a new one.
- **Prices** come from `templates/prices.yaml`, a dated table a team edits to its own
  contract; `Cost` is what one request costs by it. A model the table does not price is
  refused before anything is sent: sopreel does not spend money it cannot estimate.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.assets import recipe_key, write_text_atomic
from stages.errors import AboutTheWork, DataFileError, SopreelError, TransientError
from stages.paths import TEMPLATES
from stages.registry import Backend, BackendOptions
from stages.yamlfile import load_yaml, problems_from

URL = r"^https?://[^\s/]+(/[^\s]*)?$"
RETRIED_STATUS = (429, 500, 502, 503, 504, 529)
MAX_RETRY_AFTER_S = 300.0   # a service asking for a longer pause is reported, not waited on


class ServiceError(SopreelError):
    """A hosted service refused a request or answered something unusable."""


class ServiceUnavailable(ServiceError, TransientError):
    """Down, overloaded or rate-limited past our retries: the build's own retry may succeed."""


class ContentRefused(ServiceError, AboutTheWork):
    """The service's content policy refused the prompt or picture (the build names the scene)."""


# ------------------------------------------------------------------------------------ keys

_secret_sources: list[Callable[[str], str]] = []


def register_secret_source(read: Callable[[str], str]) -> None:
    """How a named secret is read (the flows register Prefect's Secret blocks), so stages
    never import Prefect."""
    _secret_sources[:] = [read]


def read_key(service: str, variable: str, secret: str | None) -> str:
    """The key from the Prefect Secret block named `secret`, else from `$variable`."""
    if secret:
        if not _secret_sources:
            raise ServiceError(f"{service}: `key_secret: {secret}` names a Prefect Secret "
                               "block, which only a build run by Prefect can read.")
        try:
            key = _secret_sources[0](secret)
        except Exception as exc:   # Prefect's own error: a missing block, no server
            raise ServiceError(f"{service}: the Prefect Secret block '{secret}' could not be "
                               f"read ({type(exc).__name__}). Create it in the Prefect UI "
                               "(Blocks > Secret) or set `key_secret` to its name.") from None
    else:
        key = os.environ.get(variable, "")
    if not str(key).strip():
        raise ServiceError(f"{service}: no API key. Set {variable} (export {variable}=...), or "
                           "name a Prefect Secret block holding it with `key_secret:` in the "
                           "profile.")
    return str(key).strip()


# -------------------------------------------------------------------------------- backends

class ServiceOptions(BackendOptions):
    """What every hosted backend takes besides its model's own settings."""

    url: str = Field(pattern=URL, description="the API's base URL")
    key_secret: str | None = Field(None, description=(
        "a Prefect Secret block holding the key; default: the service's environment variable"))
    timeout_s: float = Field(120, gt=0, le=3600, description="for one request")
    retries: int = Field(4, ge=0, le=10, description="for 429, 5xx and a failed connection")
    backoff_s: float = Field(2.0, ge=0, le=60, description="first wait; doubles each retry")
    license: str | None = Field(None, description=(
        "the terms your contract with the service gives its output, if not the usual ones"))


class ServiceBackend(Backend):
    """A backend whose work is done by a hosted service, paid per request.

    `service` names it in the price table and in errors; `key_variable` is where its key is
    usually kept. The options that only say how to reach it (key, timeouts, retries) stay out
    of the identity: changing them remakes nothing. `terms` is the licence its output comes
    under, `price_service` its entry in templates/prices.yaml."""

    service: ClassVar[str] = ""
    key_variable: ClassVar[str] = ""
    terms: ClassVar[str] = ""
    price_service: ClassVar[str] = ""
    source_type = "trainedAlgorithmicMedia"
    transport_options: ClassVar[tuple[str, ...]] = (
        "key_secret", "timeout_s", "retries", "backoff_s", "poll_s", "max_wait_s")

    def __init__(self, options: ServiceOptions):
        super().__init__(options)
        self.options: ServiceOptions = options
        self._client: ServiceClient | None = None

    @property
    def license(self) -> str:  # type: ignore[override]
        return self.options.license or self.terms

    def identity(self) -> dict[str, Any]:
        identity = super().identity()
        for name in self.transport_options:
            identity["options"].pop(name, None)
        return identity

    def preflight(self) -> None:
        """A missing key is found when the build is planned, not at the first scene."""
        if not self.options.key_secret:
            read_key(self.service, self.key_variable, None)
        self.price()   # the model must be priced before anything is sent

    def price(self, variant: str | None = None) -> UnitPrice:
        """The price of one unit of what this backend, so set, makes (of `variant`, where the
        model's prices differ by it)."""
        return unit_price(self.price_service, self.model or "", variant or self.price_variant())

    def price_variant(self) -> str | None:
        """Which of the model's prices applies (size, quality), where they differ."""
        return None

    @property
    def client(self) -> ServiceClient:
        if self._client is None:
            options = self.options
            key = read_key(self.service, self.key_variable, options.key_secret)
            self._client = ServiceClient(self.service, options.url, self.auth_headers(key),
                                         key, options.timeout_s, options.retries,
                                         options.backoff_s)
        return self._client

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -------------------------------------------------------------------------------- requests

class ServiceClient:
    """One service's HTTP client: its base URL and key, retries, and errors in its own words."""

    def __init__(self, service: str, base_url: str, headers: dict[str, str], key: str,
                 timeout_s: float, retries: int, backoff_s: float,
                 sleep: Callable[[float], None] = time.sleep):
        import httpx

        self.service, self.base_url = service, base_url.rstrip("/")
        self._key, self.retries, self.backoff_s, self._sleep = key, retries, backoff_s, sleep
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout_s, connect=15.0))
        self._plain = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=15.0),
                                   follow_redirects=True)

    def close(self) -> None:
        self._http.close()
        self._plain.close()

    def send(self, method: str, path: str, *, creates: bool = False,
             idempotency_key: str | None = None, keyless: bool = False, **kwargs: Any) -> Any:
        """One request, retried while the service is unreachable, overloaded or rate-limited.

        `creates`: the request starts paid work; a read timeout is then not sent again (the
        service may be doing it), and an `Idempotency-Key` header marks the retries as one.
        `keyless`: `path` is a whole URL elsewhere (a signed storage link): no key goes there."""
        import httpx

        if idempotency_key:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Idempotency-Key": idempotency_key}
        http = self._plain if keyless else self._http
        where = path.split("?")[0] if keyless else f"{self.base_url}{path}"
        for attempt in range(self.retries + 1):
            try:
                response = http.request(method, path, **kwargs)
            except httpx.ReadTimeout:
                if creates:
                    raise ServiceError(f"{self.service} at {where} did not answer in time; the "
                                       "request was not sent again, as it may be running "
                                       "(raise `timeout_s` in the profile).") from None
                error: Exception | None = ServiceUnavailable(
                    f"{self.service} at {where} did not answer in time")
                wait = self.backoff_s * 2 ** attempt
            except httpx.TransportError as exc:
                error = ServiceUnavailable(f"Cannot reach {self.service} at {where}: "
                                           f"{self.scrub(str(exc) or type(exc).__name__)}. "
                                           "Check `url` in the profile and the network.")
                wait = self.backoff_s * 2 ** attempt
            else:
                if response.status_code not in RETRIED_STATUS or _out_of_credit(response):
                    return response
                error = ServiceUnavailable(
                    f"{self.service} answered HTTP {response.status_code} "
                    f"({self.message(response)})")
                wait = retry_after(response) or self.backoff_s * 2 ** attempt
                if wait > MAX_RETRY_AFTER_S:
                    raise ServiceUnavailable(f"{error} and asks to wait {wait:.0f} s; "
                                             "try again later.")
            if attempt == self.retries:
                raise ServiceUnavailable(f"{error} ({attempt + 1} tries).")
            self._sleep(wait)
        raise AssertionError("unreachable")

    def download(self, url: str, what: str, with_key: bool) -> bytes:
        """A finished file: from the API itself (`with_key`, a path under its base URL), or
        from a signed URL it gave (a storage host: the key is never sent there); retried as
        `send` retries."""
        if with_key and not url.startswith(f"{self.base_url}/"):
            raise ServiceError(f"{self.service} gave a download address outside its API "
                               f"({url.split('?')[0]}); the key is not sent there.")
        response = (self.send("GET", url[len(self.base_url):]) if with_key
                    else self.send("GET", url, keyless=True))
        if response.status_code == 200 and response.content:
            return response.content
        raise self.refused(response, f"downloading the {what}")

    def json(self, response: Any, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ServiceError(f"{self.service} answered {what} with something that is not "
                               f"JSON: HTTP {response.status_code} "
                               f"{self.scrub(response.text[:160])!r}") from None

    def message(self, response: Any) -> str:
        """The service's own words about an error, whatever shape its JSON takes."""
        try:
            body = response.json()
        except ValueError:
            return self.scrub(response.text[:300].strip()) or "no message"
        return self.scrub(error_text(body))

    def refused(self, response: Any, doing: str) -> ServiceError:
        """An error answer as a `ServiceError` saying what to do about it."""
        status, text = response.status_code, self.message(response)
        hint = {401: " Check the key (wrong, expired, or for another account).",
                403: " The key may not use this model or feature.",
                404: " Check `url` and `model` in the profile.",
                429: " The account has no credit left, or its quota is spent."}.get(status, "")
        return ServiceError(f"{self.service} refused {doing}: HTTP {status}, {text}.{hint}")

    def scrub(self, text: str) -> str:
        """Never repeat the key, even where a service quotes it back."""
        return text.replace(self._key, "[key]") if self._key else text


def error_text(body: Any) -> str:
    """OpenAI's {error: {message, code}}, ElevenLabs' {detail: {status, message}} or 422 list,
    Runway's {error} / {issues}: one line."""
    if isinstance(body, dict):
        for field in ("error", "detail"):
            value = body.get(field)
            if isinstance(value, dict):
                code = value.get("code") or value.get("status") or value.get("type")
                text = value.get("message") or json.dumps(value)[:200]
                return f"{text} ({code})" if code else str(text)
            if isinstance(value, list):
                return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}: "
                                 f"{item.get('msg')}" if isinstance(item, dict) else str(item)
                                 for item in value)
            if isinstance(value, str):
                return value
        if isinstance(body.get("issues"), list):
            return "; ".join(str(issue.get("message", issue)) if isinstance(issue, dict)
                             else str(issue) for issue in body["issues"])
    return json.dumps(body)[:300]


def error_code(response: Any) -> str:
    """The machine-readable code of an error answer ('' when there is none)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    for field in ("error", "detail"):
        value = body.get(field) if isinstance(body, dict) else None
        if isinstance(value, dict):
            return str(value.get("code") or value.get("status") or value.get("type") or "")
    return ""


def _out_of_credit(response: Any) -> bool:
    """OpenAI answers an empty account with 429 `insufficient_quota`: waiting will not help."""
    return response.status_code == 429 and error_code(response) in (
        "insufficient_quota", "quota_exceeded")


def retry_after(response: Any) -> float | None:
    """Seconds the service asks to wait: `Retry-After` as seconds or an HTTP date, or
    OpenAI's `retry-after-ms`."""
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


# ------------------------------------------------------------------------------------ jobs

class JobJournal:
    """Ids of a service's jobs, kept on disk from the moment the service returns them.

    Keyed by the job's recipe (backend identity and request, as the asset's), in a `jobs/`
    folder beside the stage's assets; an entry is removed once its result is saved."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def key(backend: Backend, request: Any) -> str:
        return recipe_key("job", {"backend": backend.identity(), "request": request})

    def _path(self, key: str) -> Path:
        return self.folder / f"{key[:24]}.json"

    def recall(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def remember(self, key: str, job: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self._path(key), json.dumps({**job, "created": time.time()}))

    def forget(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- prices

Unit = Literal["character", "image", "second"]


class PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: Unit
    per: int = Field(1, ge=1, description="the price is for this many units (1000 characters)")
    usd: float | dict[str, float] = Field(description="a price, or one per variant")
    source: str
    read: date


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date
    currency: Literal["USD"]
    services: dict[str, dict[str, PriceEntry]]


@dataclass(frozen=True)
class UnitPrice:
    service: str
    model: str
    unit: Unit
    usd_per_unit: float

    def of(self, quantity: float) -> Cost:
        return Cost(self.service, round(quantity * self.usd_per_unit, 6), quantity, self.unit)


def summed(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Several requests' records (costs, or usage a service reported) as one: numbers added."""
    total: dict[str, Any] = {}
    for record in records:
        for name, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[name] = round(total.get(name, 0) + value, 6)
            else:
                total.setdefault(name, value)
    return total


@dataclass(frozen=True)
class Cost:
    """What one request costs by the price table."""

    service: str
    usd: float
    quantity: float
    unit: str

    def record(self) -> dict[str, Any]:
        return {"service": self.service, "usd": self.usd, "quantity": self.quantity,
                "unit": self.unit}


def prices_path() -> Path:
    return TEMPLATES / "prices.yaml"


@cache
def price_table() -> PriceTable:
    path = prices_path()
    located = load_yaml(path, DataFileError)
    try:
        return PriceTable.model_validate(located.data)
    except ValidationError as exc:
        raise DataFileError(path, problems_from(exc, PriceTable, located)) from None


def unit_price(service: str, model: str, variant: str | None = None) -> UnitPrice:
    """The price of one unit of `model`'s output (of `variant`, where prices differ by size or
    quality), or a clear refusal naming what to add to the table."""
    table = price_table()
    entry = table.services.get(service, {}).get(model)
    where = f"{prices_path()} (services.{service}.{model})"
    if entry is None:
        known = ", ".join(sorted(table.services.get(service, {}))) or "none"
        raise SopreelError(f"No price for {service} model '{model}' in {where}; it prices "
                           f"{known}. Add the model's price from the provider's price page "
                           "(sopreel does not send requests it cannot cost).")
    usd = entry.usd
    if isinstance(usd, dict):
        if variant not in usd:
            raise SopreelError(f"No price for {model} {variant} in {where}; it prices "
                               f"{', '.join(sorted(usd))}.")
        usd = usd[variant]
    return UnitPrice(service, model, entry.unit, usd / entry.per)
