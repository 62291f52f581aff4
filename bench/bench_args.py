"""What every benchmark shares: its command line (a script, default the forklift template; a
language; a profile; `--quick`), the provenance it prints first, and its tables.

`--quick` runs a benchmark in seconds on tiny inputs (bench/quick/: a two-scene script and the
draft backends at 320x180; the GPU benchmarks' scaled-down models on the CPU). `make test`
runs every benchmark that way, so none can rot; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUICK = ROOT / "bench" / "quick"
FORKLIFT = ROOT / "templates" / "scripts" / "forklift-preshift.yaml"


def bench_arguments(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("script", nargs="?", default=None,
                        help="script to build (default: the forklift template)")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--profile", default=None, help="profile (default: draft)")
    add_quick(parser)
    args = parser.parse_args()
    args.script = args.script or str(QUICK / "script.yaml" if args.quick else FORKLIFT)
    args.profile = args.profile or (str(QUICK / "profile.yaml") if args.quick else "draft")
    print_provenance()
    return args


def add_quick(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", "--tiny", dest="quick", action="store_true",
                        help="seconds, tiny inputs, the CPU: checks the benchmark runs (its "
                             "figures mean nothing)")


def provenance() -> dict[str, str]:
    """When, from which commit, on what machine and by which command a figure was made."""
    def run(*args: str) -> str:
        try:
            return subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    memory = next((int(line.split()[1]) // (1024 * 1024) for line in
                   _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0)
    gpu = run("nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader")
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": run("git", "describe", "--always", "--dirty", "--abbrev=10") or "?",
            "machine": f"{cpu}, {os.cpu_count()} cores, {memory} GiB"
                       + (f"; GPU {gpu.replace(chr(10), '; ')}" if gpu else "; no GPU"),
            "command": " ".join([Path(sys.argv[0]).relative_to(ROOT).as_posix()
                                 if Path(sys.argv[0]).is_absolute() and
                                 Path(sys.argv[0]).is_relative_to(ROOT) else sys.argv[0],
                                 *sys.argv[1:]])}


def print_provenance() -> None:
    print("  ".join(f"{key}: {value}" for key, value in provenance().items()), flush=True)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def print_table(header: list[str], rows: list[list[object]]) -> None:
    """Results as a Markdown table, ready for bench/RESULTS.md."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(flush=True)


def random_weights(make: Callable[[], Any], device: str, dtype: Any) -> Any:
    """A model with random weights made directly on the device in `dtype` (no float32 copy
    on the host), ready for inference."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = make()
    finally:
        torch.set_default_dtype(previous)
    return model.eval().requires_grad_(False)


def seconds_of(call: Callable[[], Any], device: str) -> float:
    """Wall time of `call()`, with the GPU's queued work finished before and after."""
    import time

    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - begin


SOPREEL = ROOT / ".venv" / "bin" / "sopreel"
PREFECT = ROOT / ".venv" / "bin" / "prefect"


def prefect_environment() -> dict[str, str]:
    """The environment of a user with no PREFECT_API_URL, in a Prefect home of its own whose
    database is already made (so "cold" means cold media work, not a first install)."""
    import tempfile

    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=tempfile.mkdtemp(prefix="sopreel-bench-prefect-"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", SOPREEL_SERVER_PORT=str(free_port()))
    subprocess.run([str(PREFECT), "server", "database", "upgrade", "-y"], env=env,
                   check=True, capture_output=True)
    return env


def stop_background_server(env: dict[str, str]) -> None:
    """Stop the server `sopreel` started in that environment's Prefect home, if any."""
    subprocess.run([str(SOPREEL), "server", "stop"], env=env, check=True, capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A `prefect server start` on loopback, as a team runs one; and its API URL."""
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(1500):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the Prefect server did not start")
