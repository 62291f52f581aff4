"""A local stand-in for the Hugging Face Hub (HF_ENDPOINT), serving the tests' tiny models with
the documented endpoints and headers, so huggingface_hub's real download path runs:

- GET/HEAD /api/models/{repo}[/revision/{rev}] (`?blobs=true`: each sibling's size, blobId
  and lfs {sha256, size, pointerSize}); GET /api/models/{repo}/tree/{rev}[?recursive=true];
- HEAD/GET /{repo}/resolve/{rev}/{path}: X-Repo-Commit, ETag (an LFS file's sha256, else git's
  blob id), X-Linked-Etag and X-Linked-Size for LFS files, Content-Length, Accept-Ranges, and
  `Range: bytes=N-` answered 206 with Content-Range;
- 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound.

Repos are folders on disk, each commit a snapshot of one; `push` makes a new commit on main.
`slow` serves named files a chunk at a time (to kill a download mid-file), `corrupt` serves
other bytes than the listing's checksum says.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".msgpack", ".h5", ".onnx")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}   # id -> {"refs": {}, "commits": {sha: files}}
        self.requests: list[dict[str, Any]] = []
        self.slow: dict[str, float] = {}             # file name -> seconds per 64 KiB chunk
        self.corrupt: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ repositories

    def push(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None,
             leave_out: tuple[str, ...] = ()) -> str:
        """A new commit on main holding the folder's files (and `extra`); its sha."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes()
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        files.update(extra or {})
        files = {name: data for name, data in files.items() if name not in leave_out}
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        parent = repo["refs"].get("main", "")
        sha = hashlib.sha1((parent + json.dumps(sorted(
            (n, hashlib.sha256(d).hexdigest()) for n, d in files.items()))).encode()).hexdigest()
        repo["commits"][sha] = files
        repo["refs"]["main"] = sha
        return sha

    def _resolve(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo["refs"].get(revision, revision)
        files = repo["commits"].get(sha)
        return (sha, files) if files is not None else None

    @staticmethod
    def entry(name: str, data: bytes, blobs: bool = True) -> dict[str, Any]:
        """A sibling as /api/models returns it with ?blobs=true."""
        found: dict[str, Any] = {"rfilename": name}
        if blobs:
            found.update(size=len(data), blobId=git_blob_id(data))
            if name.endswith(LFS_SUFFIXES):
                found["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "pointerSize": 134}
        return found

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                parsed = urlparse(self.path)
                path = unquote(parsed.path)
                with hub._lock:
                    hub.requests.append({"method": self.command, "path": path,
                                         "range": self.headers.get("Range")})
                query = parse_qs(parsed.query)
                if path.startswith("/api/models/"):
                    self._api(path[len("/api/models/"):], query, head)
                elif "/resolve/" in path:
                    self._resolve_file(path.lstrip("/"), head)
                else:
                    self._error(404, "RepoNotFound", "Not found")

            def _api(self, rest: str, query: dict[str, list[str]], head: bool) -> None:
                parts = rest.split("/")
                repo_id, tail = "/".join(parts[:2]), parts[2:]
                if tail[:1] == ["tree"]:
                    revision, prefix = tail[1], "/".join(tail[2:])
                    found = hub._resolve(repo_id, revision)
                    if found is None:
                        return self._error(404, "RevisionNotFound", "Invalid rev id")
                    entries = []
                    for name, data in sorted(found[1].items()):
                        if prefix and not name.startswith(prefix + "/"):
                            continue
                        entry: dict[str, Any] = {"type": "file", "oid": git_blob_id(data),
                                                 "size": len(data), "path": name}
                        sibling = hub.entry(name, data)
                        if "lfs" in sibling:
                            entry["lfs"] = {"oid": sibling["lfs"]["sha256"],
                                            "size": len(data), "pointerSize": 134}
                        entries.append(entry)
                    return self._json(entries, head)
                revision = tail[1] if tail[:1] == ["revision"] else "main"
                if repo_id not in hub.repos:
                    return self._error(404, "RepoNotFound", "Repository not found")
                found = hub._resolve(repo_id, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id")
                sha, files = found
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False,
                            "siblings": [hub.entry(n, d, blobs) for n, d in sorted(files.items())]},
                           head)

            def _resolve_file(self, rest: str, head: bool) -> None:
                before, _, after = rest.partition("/resolve/")
                revision, _, name = after.partition("/")
                found = hub._resolve(before, revision)
                if found is None:
                    return self._error(404, "RevisionNotFound" if before in hub.repos
                                       else "RepoNotFound", "Not found")
                sha, files = found
                if name not in files:
                    return self._error(404, "EntryNotFound", f"{name} not found", sha)
                data = files[name]
                lfs = name.endswith(LFS_SUFFIXES)
                etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_id(data)
                if name in hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                wanted = self.headers.get("Range")
                if wanted and wanted.startswith("bytes="):
                    start = int(wanted[len("bytes="):].split("-")[0] or 0)
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", sha)
                self.send_header("ETag", f'"{etag}"')
                if lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if head:
                    return
                pause = hub.slow.get(name)
                chunk = 64 * 1024
                for offset in range(0, len(body), chunk):
                    try:
                        self.wfile.write(body[offset:offset + chunk])
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    if pause:
                        time.sleep(pause)

            def _json(self, value: Any, head: bool) -> None:
                body = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, sha: str | None = None) -> None:
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if sha:
                    self.send_header("X-Repo-Commit", sha)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return Handler
