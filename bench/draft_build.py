"""Benchmark: a cold draft build, then an unchanged re-run, as ratios to the video's length.

Runs `sopreel build` exactly as a user does, twice per Prefect setup:
  * embedded: no PREFECT_API_URL, so every command starts Prefect's temporary server;
  * server:   a `prefect server start` already running on loopback (how a team runs it).

Targets (issue 2): cold build <= 0.5 x video duration; re-run <= 0.25 x cold build.
Usage: .venv/bin/python bench/draft_build.py [SCRIPT] [--lang en] [--profile draft] [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import ROOT, bench_arguments, print_table

SOPREEL = ROOT / ".venv" / "bin" / "sopreel"
PREFECT = ROOT / ".venv" / "bin" / "prefect"


def timed_build(script: Path, out: Path, lang: str, env: dict[str, str],
                profile: str = "draft") -> float:
    started = time.perf_counter()
    subprocess.run([str(SOPREEL), "build", str(script), "--lang", lang, "--out", str(out),
                    "--profile", profile], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    import urllib.request
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return server, url
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the Prefect server did not start")


def measure(script: Path, lang: str, profile: str, env: dict[str, str],
            label: str) -> list[str]:
    out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
    try:
        cold = timed_build(script, out, lang, env, profile)
        rerun = timed_build(script, out, lang, env, profile)
        manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
        duration = manifest["outputs"][lang]["duration_s"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return [label, f"{duration:.1f}", f"{cold:.1f}", f"{cold / duration:.2f}", f"{rerun:.1f}",
            f"{rerun / cold:.2f}"]


def main() -> None:
    args = bench_arguments(__doc__)
    home = tempfile.mkdtemp(prefix="sopreel-bench-prefect-")
    env = {**os.environ, "PREFECT_HOME": home}
    env.pop("PREFECT_API_URL", None)
    print(f"cores: {os.cpu_count()}, script: {args.script}, language: {args.lang}, "
          f"profile: {args.profile}")
    # Migrate Prefect's database once, so "cold" means cold media work, not a first install.
    subprocess.run([str(PREFECT), "server", "database", "upgrade", "-y"], env=env,
                   check=True, capture_output=True)
    script = Path(args.script)
    rows = [measure(script, args.lang, args.profile, env, "embedded")]
    server, url = start_server(env)
    try:
        rows.append(measure(script, args.lang, args.profile, {**env, "PREFECT_API_URL": url},
                            "server"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(home, ignore_errors=True)
    print_table(["Prefect", "video s", "cold s", "cold x video (<= 0.50)", "re-run s",
                 "re-run x cold (<= 0.25)"], rows)


if __name__ == "__main__":
    sys.exit(main())
