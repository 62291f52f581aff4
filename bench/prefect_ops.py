"""Benchmark: what running on Prefect costs and saves, with the draft profile.

Against one `prefect server start` on loopback:
  * threads vs dask: a cold build and an unchanged re-run, in the flow's threads and on a
    dask.distributed LocalCluster of two one-thread worker processes on this machine (the
    cost of shipping tasks; on one 2-core machine Dask cannot be faster);
  * resume: a cold build killed with SIGKILL once its first clip exists, then started again;
  * nightly: build-all over templates/, first night and an unchanged second night.

Usage: .venv/bin/python bench/prefect_ops.py [SCRIPT] [--profile draft] [--quick]
(--quick: the quick script and profile, and the nightly build over bench/quick/)
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench_args import QUICK, ROOT, SOPREEL, bench_arguments, print_table, start_server

PYTHON = ROOT / ".venv" / "bin" / "python"


def command(script: Path, out: Path, profile: str) -> list[str]:
    return [str(SOPREEL), "build", str(script), "--out", str(out), "--profile", profile]


def build(script: Path, out: Path, profile: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command(script, out, profile), env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def killed_then_resumed(script: Path, profile: str, env: dict[str, str]) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
    started = time.perf_counter()
    process = subprocess.Popen(command(script, out, profile), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while not list(out.glob("*/assets/animate/*.json")):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - started
    return killed_at, build(script, out, profile, env)


def nightly(folder: Path, profile: str, env: dict[str, str]) -> list[float]:
    out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
    code = ("from flows.build import build_all; "
            f"build_all(folder={str(folder)!r}, profile={profile!r}, out={str(out)!r})")
    times = []
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run([str(PYTHON), "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    args = bench_arguments(__doc__)
    script, profile = Path(args.script).absolute(), args.profile
    folder = QUICK if args.quick else ROOT / "templates"
    env = {**os.environ, "PREFECT_HOME": tempfile.mkdtemp(prefix="sopreel-bench-home-"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false"}
    server, url = start_server(env)
    env["PREFECT_API_URL"] = url
    rows = []
    try:
        out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
        rows.append(["threads (2)", f"{build(script, out, profile, env):.1f} s",
                     f"{build(script, out, profile, env):.1f} s"])
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None,
                          env={"PREFECT_API_URL": url,   # the workers' task logs stay quiet
                               "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}) as cluster:
            dask_env = {**env, "SOPREEL_DASK_ADDRESS": cluster.scheduler_address}
            out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
            rows.append(["dask, 2 worker processes",
                         f"{build(script, out, profile, dask_env):.1f} s",
                         f"{build(script, out, profile, dask_env):.1f} s"])
        print_table(["tasks run in", "cold build", "unchanged re-run"], rows)
        killed_at, resumed = killed_then_resumed(script, profile, env)
        first, second = nightly(folder, profile, env)
        print_table(["case", "seconds"], [
            ["resume: killed into a cold build (first clip made)", f"{killed_at:.1f}"],
            ["resume: the restarted build", f"{resumed:.1f}"],
            [f"nightly build-all over {folder.relative_to(ROOT)}/: first night", f"{first:.1f}"],
            ["nightly: unchanged second night", f"{second:.1f}"]])
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
