"""Model weights from the Hugging Face Hub, the way Ollama keeps models: pulled once, listed,
checked before a render, removed.

Everything goes through huggingface_hub into the standard Hugging Face cache
(`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), the cache diffusers and
transformers read, so files keep their names and other tools share them. A profile names what
it needs through its backends (`Backend.hub_weights`); `pull` selects the files the loading
library will read (a diffusers pipeline's components, a transformers model's safetensors, one
LoRA file), downloads each with a progress bar (resuming an interrupted file), checks it
against the Hub's checksum and records the commit as the cache's ref, so a later build loads
exactly that commit without asking the Hub again. A cache copied to a machine with no network
works the same.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from stages.errors import SopreelError, first_line
from stages.processes import running

Layout = Literal["diffusers", "transformers", "files", "coqui"]
OTHER_FORMATS = (".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".onnx_data",
                 ".ot", ".gguf", ".pkl")
PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubUnreachable(SopreelError):
    """The Hub could not be asked (no network, HF_HUB_OFFLINE) and the weights are not here."""


@dataclass(frozen=True)
class HubWeights:
    """One Hub repository a profile needs, and which of its files.

    `layout` says how the loading library reads it: `diffusers` (model_index.json and the
    components it names), `transformers` (configs, tokenizers and safetensors), `files`
    (exactly `files`), `coqui` (the patterns coqui's model list gives)."""

    repo_id: str
    layout: Layout
    what: str
    license: str
    revision: str | None = None
    files: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    name: str = ""          # as the profile names it, where that is not the repo id (coqui)

    @property
    def ref(self) -> str:
        return self.revision or "main"

    @property
    def label(self) -> str:
        return self.name or self.repo_id


# ------------------------------------------------------------------------------ where things are

def cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub resolves it (read at each call, so a
    changed environment is honoured)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "huggingface" / "hub"


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit `revision` (a branch or tag, or a commit) names in this machine's cache."""
    ref = revision or "main"
    if is_commit(ref):
        return ref if (repo_folder(repo_id) / "snapshots" / ref).is_dir() else None
    path = repo_folder(repo_id) / "refs" / ref
    try:
        commit = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if (repo_folder(repo_id) / "snapshots" / commit).is_dir() else None


# ------------------------------------------------------------------------------ what is here

@dataclass
class Presence:
    """What the cache holds of one `HubWeights`."""

    weights: HubWeights
    commit: str | None            # the commit the cache resolves the ref to
    files: dict[str, int] = field(default_factory=dict)   # file -> bytes on disk
    missing: list[str] = field(default_factory=list)      # files the pull chose, not here
    pulled: bool = False          # sopreel pulled it (the file list is recorded)

    @property
    def present(self) -> bool:
        return self.commit is not None and not self.missing and bool(self.files)

    @property
    def size(self) -> int:
        return sum(self.files.values())


PULLED_FILE = ".sopreel-pulled.json"


def presence(weights: HubWeights) -> Presence:
    """Whether the weights are here (no network): the files a pull recorded, else the
    snapshot's files as diffusers or transformers would look for them."""
    commit = cached_commit(weights.repo_id, weights.revision)
    found = Presence(weights, commit)
    if commit is None:
        return found
    snapshot = repo_folder(weights.repo_id) / "snapshots" / commit
    record = _pulled_record(weights.repo_id).get(commit, {})
    expected = record.get(_selection_key(weights))
    if expected is not None:
        found.pulled = True
    if expected is None and weights.files:   # the files named, however they got here
        expected = list(weights.files)
    names = expected if expected is not None else [
        p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    for name in names:
        path = snapshot / name
        if path.is_file():
            found.files[name] = path.stat().st_size   # the blob it links to
        else:
            found.missing.append(name)
    if expected is None and weights.layout == "diffusers" and "model_index.json" not in names:
        found.missing.append("model_index.json")
    return found


def pulled_snapshot(weights: HubWeights) -> Path | None:
    """The snapshot folder of weights `models pull` fetched whole: loaded from there, the
    pulled commit exactly, with no question to the Hub."""
    found = presence(weights)
    if found.pulled and found.present:
        return repo_folder(weights.repo_id) / "snapshots" / str(found.commit)
    return None


def _pulled_record(repo_id: str) -> dict[str, dict[str, list[str]]]:
    """commit -> selection -> the files `pull` chose (kept in the repo's cache folder, so it
    travels with a copied cache)."""
    path = repo_folder(repo_id) / PULLED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _selection_key(weights: HubWeights) -> str:
    return json.dumps([weights.layout, weights.files, weights.allow, weights.ignore])


def _remember_pull(weights: HubWeights, commit: str, files: list[str]) -> None:
    record = _pulled_record(weights.repo_id)
    record.setdefault(commit, {})[_selection_key(weights)] = sorted(files)
    path = repo_folder(weights.repo_id) / PULLED_FILE
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
    temporary.replace(path)


# ------------------------------------------------------------------------------ the network

def hub_host() -> str:
    return urlparse(endpoint()).netloc or endpoint()


def unreachable(weights: HubWeights, reason: str) -> HubUnreachable:
    return HubUnreachable(
        f"The {weights.what} '{weights.repo_id}' is not on this machine and the Hugging Face "
        f"Hub ({hub_host()}) {reason}. Pull it on a connected machine (`sopreel models pull "
        f"PROFILE`) and copy its cache ({cache_dir()}), or point `model:` at a local folder.")


def probe(weights: HubWeights) -> None:
    """Ask the Hub once, briefly, whether it answers: a missing model's error in seconds,
    not after minutes of retries. HF_HUB_OFFLINE means do not ask."""
    if offline():
        raise unreachable(weights, "is not asked (HF_HUB_OFFLINE is set)")
    import httpx

    url = f"{endpoint()}/api/models/{weights.repo_id}/revision/{weights.ref}"
    try:
        httpx.head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise unreachable(weights, f"cannot be reached ({type(exc).__name__})") from None


def require(weights: HubWeights) -> str | None:
    """Before a build loads Hub weights: the commit to load when the cache has it (no network
    then), else None once the Hub has answered (the library downloads as usual)."""
    commit = cached_commit(weights.repo_id, weights.revision)
    if commit is not None:
        return commit
    probe(weights)
    return None


# ------------------------------------------------------------------------------ pulling

@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None     # LFS files
    blob_id: str | None    # git's id of the file (sha1 of "blob <size>\0" + content)


@dataclass
class Pulled:
    weights: HubWeights
    commit: str
    files: list[RemoteFile]
    downloaded: int          # bytes fetched now (the rest were here)


def remote_files(weights: HubWeights) -> tuple[str, list[RemoteFile]]:
    """The commit the ref names at the Hub, and every file in it with size and checksum."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint())
    try:
        info = api.model_info(weights.repo_id, revision=weights.ref, files_metadata=True,
                              timeout=30)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = {401: " The model may be gated: accept its terms on the Hub and set HF_TOKEN.",
                403: " The model may be gated: accept its terms on the Hub and set HF_TOKEN.",
                404: " Check the model id and `revision` in the profile."}.get(status or 0, "")
        raise SopreelError(f"The Hub refused '{weights.repo_id}' at revision {weights.ref}: "
                           f"{first_line(exc)}.{hint}") from None
    except Exception as exc:   # httpx's connection errors: the Hub is not there
        if _is_network_error(exc):
            raise unreachable(weights, f"cannot be reached ({type(exc).__name__})") from None
        raise
    if not info.sha:
        raise SopreelError(f"The Hub did not say which commit '{weights.repo_id}' "
                           f"{weights.ref} is.")
    files = [RemoteFile(s.rfilename, s.lfs.size if s.lfs else (s.size or 0),
                        s.lfs.sha256 if s.lfs else None, s.blob_id)
             for s in info.siblings or []]
    return info.sha, files


def _is_network_error(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError) or type(exc).__name__ in (
        "ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "ProxyError")


def select(weights: HubWeights, files: list[RemoteFile],
           read: Callable[[str], bytes]) -> list[RemoteFile]:
    """The files the loading library reads, by layout; `read` fetches a small index file
    (diffusers' model_index.json) to learn the components."""
    names = {f.name: f for f in files}
    if weights.layout == "files":
        wanted = list(weights.files) or [n for n in names if "/" not in n
                                         and n.endswith(".safetensors")]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise SopreelError(f"'{weights.repo_id}' has no {', '.join(missing)} at "
                               f"{weights.ref}.")
        return [names[n] for n in wanted]
    if weights.layout == "coqui":
        return [f for f in files
                if (not weights.allow or any(fnmatch.fnmatch(f.name, p) for p in weights.allow))
                and not any(fnmatch.fnmatch(f.name, p) for p in weights.ignore)]
    if weights.layout == "diffusers":
        if "model_index.json" not in names:
            raise SopreelError(f"'{weights.repo_id}' is not a diffusers pipeline: it has no "
                               "model_index.json.")
        index = json.loads(read("model_index.json"))
        folders = {key for key, value in index.items()
                   if isinstance(value, list) and len(value) == 2 and value[0] is not None}
        chosen = [names["model_index.json"]]
        for folder in sorted(folders):
            chosen += _model_files([f for f in files if f.name.startswith(folder + "/")])
        return chosen
    return _model_files([f for f in files if not _is_repo_extra(f.name)])


def _is_repo_extra(name: str) -> bool:
    """Files a transformers model does not load: docs, pictures, git attributes."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or base.lower().endswith((".md", ".png", ".jpg", ".jpeg",
                                                          ".gif", ".wav", ".mp3", ".mp4"))


def _model_files(files: list[RemoteFile]) -> list[RemoteFile]:
    """Safetensors where a folder has them (other formats of the same weights left out), and
    the full-precision files rather than `.fp16.`-style variants when both are there."""
    by_folder: dict[str, list[RemoteFile]] = {}
    for f in files:
        by_folder.setdefault(f.name.rpartition("/")[0], []).append(f)
    chosen = []
    for group in by_folder.values():
        has_safetensors = any(f.name.endswith(".safetensors") for f in group)
        plain = [f for f in group if not _is_variant(f.name)]
        plain_weights = any(_is_weights(f.name) for f in plain)
        for f in group:
            if has_safetensors and f.name.endswith(OTHER_FORMATS):
                continue
            if _is_variant(f.name) and plain_weights:
                continue
            chosen.append(f)
    return chosen


def _is_weights(name: str) -> bool:
    return name.endswith((".safetensors", *OTHER_FORMATS))


def _is_variant(name: str) -> bool:
    """diffusion_pytorch_model.fp16.safetensors, model.bf16-00001-of-00002.safetensors..."""
    parts = name.rsplit("/", 1)[-1].split(".")
    return _is_weights(name) and len(parts) > 2 and parts[-2].split("-")[0] in (
        "fp16", "bf16", "fp32", "fp8", "ema", "non_ema", "int8")


def git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(weights: HubWeights, remote: RemoteFile, path: Path) -> None:
    """The file on disk is the file the Hub listed (sha256 of an LFS file, git's blob id of
    another); a mismatch is removed from the cache and refused."""
    from stages.assets import file_sha256

    if remote.sha256:
        found, expected, kind = file_sha256(path), remote.sha256, "sha256"
    elif remote.blob_id:
        found, expected, kind = git_blob_id(path), remote.blob_id, "git blob id"
    else:
        return
    if found != expected:
        path.unlink(missing_ok=True)
        raise SopreelError(
            f"'{weights.repo_id}' {remote.name}: the downloaded file's {kind} is {found}, the "
            f"Hub lists {expected}. It was removed from the cache; pull again (a proxy or "
            "mirror may be serving another file).")


def pull(weights: HubWeights, report: Callable[[str], None] = print) -> Pulled:
    """Download what the weights need into the Hugging Face cache, resuming a partial file,
    checked file by file; the ref then names the pulled commit."""
    probe(weights)   # HF_HUB_OFFLINE, or no answer within seconds: said at once
    commit, files = remote_files(weights)
    folder = repo_folder(weights.repo_id)
    snapshot = folder / "snapshots" / commit
    here = {f.name for f in files if (snapshot / f.name).is_file()}
    by_name = {f.name: f for f in files}

    def read(name: str) -> bytes:
        return fetch_file(weights, commit, by_name[name]).read_bytes()

    chosen = select(weights, files, read)
    total = sum(f.size for f in chosen)
    report(f"{weights.repo_id} @ {commit[:12]} ({weights.ref}): {len(chosen)} files, "
           f"{human_size(total)}")
    done = downloaded = 0
    for index, remote in enumerate(chosen, 1):
        fetch_file(weights, commit, remote)
        done += remote.size
        downloaded += 0 if remote.name in here else remote.size
        report(f"  [{index}/{len(chosen)}] {remote.name} ({human_size(remote.size)}; "
               f"{human_size(done)} of {human_size(total)})"
               + (" already here" if remote.name in here else ""))
    refs = folder / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    if not is_commit(weights.ref):
        (refs / weights.ref).write_text(commit, encoding="utf-8")
    _remember_pull(weights, commit, [f.name for f in chosen])
    return Pulled(weights, commit, chosen, downloaded)


def fetch_file(weights: HubWeights, commit: str, remote: RemoteFile) -> Path:
    """One file of the commit into the cache's layout (blobs/<etag>, linked from
    snapshots/<commit>/<name>), resumed from blobs/<etag>.incomplete after an interruption and
    checked before it takes its place.

    huggingface_hub 2.x downloads to a temporary file of its own process and deletes it on
    failure, so a killed download starts again from zero; a weights file of many GB should not.
    """
    from filelock import FileLock
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    folder = repo_folder(weights.repo_id)
    link = folder / "snapshots" / commit / remote.name
    if link.is_file():
        return link
    url = hf_hub_url(weights.repo_id, remote.name, revision=commit, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, timeout=30, endpoint=endpoint())
    except Exception as exc:
        if _is_network_error(exc):
            raise unreachable(weights, f"stopped answering ({type(exc).__name__}); pull again "
                                       "to resume") from None
        raise SopreelError(f"The Hub refused '{weights.repo_id}' {remote.name}: "
                           f"{first_line(exc)}.") from None
    etag = meta.etag or remote.sha256 or remote.blob_id or remote.name.replace("/", "_")
    blob = folder / "blobs" / etag
    locks = cache_dir() / ".locks" / folder.name
    for place in (blob.parent, link.parent, locks):
        place.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{etag}.lock")):
        if not blob.is_file():
            partial = blob.with_name(blob.name + ".incomplete")
            try:
                _download(meta.location, partial, meta.size or remote.size, remote.name,
                          same_host=urlparse(meta.location).netloc == urlparse(url).netloc)
            except Exception as exc:
                if _is_network_error(exc):
                    raise unreachable(weights, f"stopped answering ({type(exc).__name__}); "
                                               "pull again to resume") from None
                raise
            _verify(weights, remote, partial)
            partial.replace(blob)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return link


def _download(url: str, partial: Path, size: int, name: str, same_host: bool) -> None:
    """GET the file into `partial`, asking only for the bytes it lacks (Range), with a
    progress bar (shown on a terminal, as huggingface_hub's are)."""
    import httpx
    from huggingface_hub.utils import build_hf_headers, tqdm

    headers = build_hf_headers() if same_host else {}   # a token only to the Hub itself
    start = partial.stat().st_size if partial.is_file() else 0
    if size and start >= size:
        start = 0   # complete but not moved, or longer than the file: fetch it again
        partial.unlink()
    if start:
        headers["Range"] = f"bytes={start}-"
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=60),
                      follow_redirects=True) as response:
        if response.status_code == 200 and start:
            start = 0   # the server sent the whole file again
        elif response.status_code not in (200, 206):
            raise SopreelError(f"The Hub answered HTTP {response.status_code} for {name}.")
        with partial.open("ab" if start else "wb") as out, tqdm(
                total=size or None, initial=start, unit="B", unit_scale=True, desc=name,
                disable=None) as bar:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


# ------------------------------------------------------------------------------ in use, removal

def _in_use_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sopreel" / "in-use"


@contextmanager
def in_use(repo_ids: Iterable[str]) -> Iterator[None]:
    """Mark Hub models as used by this process while a build holds them, so `models remove`
    refuses them; a mark left by a process that died is ignored."""
    ids = sorted(set(repo_ids))
    if not ids:
        yield
        return
    folder = _in_use_folder()
    folder.mkdir(parents=True, exist_ok=True)
    mark = folder / f"{os.getpid()}-{time.monotonic_ns()}.json"
    mark.write_text(json.dumps({"pid": os.getpid(), "models": ids}), encoding="utf-8")
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def users_of(repo_id: str) -> list[int]:
    """The running processes that marked `repo_id` as in use."""
    pids = []
    for mark in sorted(_in_use_folder().glob("*.json")):
        try:
            data = json.loads(mark.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pid = int(data.get("pid", 0))
        if repo_id in data.get("models", []) and running(pid):
            pids.append(pid)
    return sorted(set(pids))


def remove(repo_id: str) -> int:
    """Delete a model from the cache; the bytes freed. Refused while a build uses it."""
    import shutil

    users = users_of(repo_id)
    if users:
        raise SopreelError(f"'{repo_id}' is in use by a running build (process "
                           f"{', '.join(map(str, users))}); remove it when the build is done.")
    folder = repo_folder(repo_id)
    if not folder.is_dir():
        raise SopreelError(f"'{repo_id}' is not in the Hugging Face cache ({cache_dir()}).")
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder)
    return freed
