"""A stand-in LMS for the package tests: a loopback web server that serves unpacked packages
inside a page hosting a real SCORM runtime (scorm-again, from npm), records what the runtime
commits (what an LMS would store), and answers xAPI statements as an LRS would."""

from __future__ import annotations

import json
import re
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCORM_AGAIN = Path(__file__).parent / "browser" / "node_modules" / "scorm-again" / "dist"

HOST_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>LMS</title>
<script src="/scorm-again/{runtime}.min.js"></script>
<script>
  window.{api} = new {runtime_class}({{
    lmsCommitUrl: "/commit", dataCommitFormat: "flattened", autocommit: false, logLevel: 5
  }});
</script></head>
<body>{frame}</body>
</html>"""
RUNTIMES = {"scorm12": ("scorm12", "API", "Scorm12API"),
            "scorm2004": ("scorm2004", "API_1484_11", "Scorm2004API")}


@dataclass
class Recorded:
    commits: list[dict[str, Any]] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def latest(self, key: str) -> Any:
        """The last committed value of a CMI element, as the LMS would hold it."""
        for commit in reversed(self.commits):
            if key in commit:
                return commit[key]
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser dropping a video request it no longer needs (a seek) is not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeLms:
    """`add(zip)` unpacks a package under its own path; `host_url(name)` is the LMS page that
    launches it with the SCORM API of its format."""

    def __init__(self, root: Path):
        self.root, self.recorded = root, Recorded()
        lms = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

            def translate_path(self, path: str) -> str:
                if path.startswith("/scorm-again/"):
                    return str(SCORM_AGAIN / path.split("/")[-1].split("?")[0])
                return super().translate_path(path)

            def do_GET(self) -> None:
                """Byte ranges as every web server gives them: without, a video cannot seek."""
                wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                path = Path(self.translate_path(self.path))
                if not wanted or not path.is_file():
                    return super().do_GET()
                data = path.read_bytes()
                start = int(wanted.group(1))
                end = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(str(path)))
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(data[start:end + 1])

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/commit"):
                    lms.recorded.commits.append(json.loads(body or b"{}"))
                    answer = {"result": True, "errorCode": 0}
                elif self.path.startswith("/lrs/statements"):
                    lms.recorded.statements.append(json.loads(body))
                    lms.recorded.headers.append(dict(self.headers))
                    answer = [str(uuid.uuid4())]
                else:
                    self.send_error(404)
                    return
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def add(self, package: Path, name: str) -> None:
        with zipfile.ZipFile(package) as archive:
            archive.extractall(self.root / name)

    def host_url(self, name: str, kind: str, framed: bool = True) -> str:
        """The LMS page: the package in a frame of it, or (`framed=False`) nothing yet (the
        test opens it, as an LMS's pop-up would)."""
        runtime, api, runtime_class = RUNTIMES[kind]
        frame = (f'<iframe id="course" src="/{name}/index.html" width="960" height="720">'
                 '</iframe>' if framed else "")
        (self.root / f"host-{name}.html").write_text(
            HOST_PAGE.format(runtime=runtime, api=api, runtime_class=runtime_class,
                             frame=frame), encoding="utf-8")
        return f"{self.base}/host-{name}.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
