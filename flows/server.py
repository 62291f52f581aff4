"""The local Prefect server the command line starts once and reuses.

With no PREFECT_API_URL, Prefect would start a temporary server inside every command (5 to 6 s
a command on two cores, bench/RESULTS.md) and forget each run when the command ends. Instead,
the first `sopreel build` (or `dub`, `review --ui`) starts `prefect server start` on
127.0.0.1, detached, keeping its database in PREFECT_HOME; later commands find it and use it,
and every build stays visible in its UI. `sopreel server status|stop` look after it.

A PREFECT_API_URL (in the environment or the Prefect profile) always wins: nothing is started.
SOPREEL_PREFECT_SERVER=temporary keeps Prefect's per-command temporary server instead;
SOPREEL_SERVER_PORT picks the port (default 4200, the next free one if another program has it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from stages.errors import SopreelError
from stages.processes import running

MODE_ENV, PORT_ENV = "SOPREEL_PREFECT_SERVER", "SOPREEL_SERVER_PORT"
DEFAULT_PORT = 4200
START_TIMEOUT_S = 300   # a new PREFECT_HOME migrates its database first (over a minute seen)
STOP_TIMEOUT_S = 30


def temporary_server_chosen() -> bool:
    return os.environ.get(MODE_ENV, "").strip().lower() == "temporary"


@dataclass(frozen=True)
class LocalServer:
    """The server sopreel started (or found on its port), as its state file records it."""

    url: str
    pid: int | None      # None: a server sopreel found running, not one it started
    home: Path

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")

    @property
    def log(self) -> Path:
        return log_file(self.home)

    def alive(self) -> bool:
        return healthy(self.url)


def prefect_home() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


def state_file(home: Path) -> Path:
    return home / "sopreel-server.json"


def log_file(home: Path) -> Path:
    return home / "sopreel-server.log"


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def recorded(home: Path | None = None) -> LocalServer | None:
    """The server the state file names, whether or not it still answers."""
    home = home or prefect_home()
    try:
        state = json.loads(state_file(home).read_text(encoding="utf-8"))
        return LocalServer(str(state["url"]), state.get("pid"), home)
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def _exclusive(home: Path) -> Iterator[None]:
    """One command at a time decides whether to start the server."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "sopreel-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_running(announce: Callable[[str], None]) -> LocalServer:
    """The local server: the one recorded if it answers, else one started now."""
    home = prefect_home()
    with _exclusive(home):
        found = recorded(home)
        if found and found.alive():
            return found
        port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
        url = f"http://127.0.0.1:{port}/api"
        if healthy(url):   # a Prefect server someone else started on that port: use it
            return _record(LocalServer(url, None, home))
        if _taken(port):
            port = _free_port()
            url = f"http://127.0.0.1:{port}/api"
        announce(f"Starting a Prefect server in the background (UI: http://127.0.0.1:{port}); "
                 "later commands reuse it; `sopreel server stop` stops it.")
        return _record(_start(home, port, url))


def _start(home: Path, port: int, url: str) -> LocalServer:
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(port)]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with log_file(home).open("ab") as sink:
        # Its own session: it outlives this command, and a Ctrl-C here does not reach it.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LocalServer(url, process.pid, home)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.alive():
        if process.poll() is not None or time.monotonic() > deadline:
            _terminate(process.pid)
            tail = log_file(home).read_text(errors="replace").strip().splitlines()[-4:]
            raise SopreelError(f"The Prefect server did not start on 127.0.0.1:{port} (log: "
                               f"{log_file(home)}): " + " | ".join(tail))
        time.sleep(0.3)
    return server


def _record(server: LocalServer) -> LocalServer:
    state_file(server.home).write_text(json.dumps({"url": server.url, "pid": server.pid}),
                                       encoding="utf-8")
    return server


def stop(home: Path | None = None) -> LocalServer | None:
    """Stop the server sopreel started; return what was stopped (None: nothing was)."""
    home = home or prefect_home()
    with _exclusive(home):
        found = recorded(home)
        state_file(home).unlink(missing_ok=True)
        if found is None or found.pid is None or not running(found.pid):
            return None
        _terminate(found.pid)
        return found


def _terminate(pid: int) -> None:
    """The server's whole process group: politely, then not."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not running(pid):
            return


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def api_for_commands(announce: Callable[[str], None]) -> Iterator[str | None]:
    """Point Prefect at the API a command should use: the configured one, Prefect's temporary
    server when chosen, or the local background server (started on first use). Yields the
    URL in use (None for the temporary server)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured or temporary_server_chosen():
        yield configured
        return
    server = ensure_running(announce)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.url   # for processes started from here (Dask)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            yield server.url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
