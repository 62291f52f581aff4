"""Benchmark: what running on Prefect costs and saves, with the draft profile.

Against one `prefect server start` on loopback:
  * threads vs dask: a cold build and an unchanged re-run, in the flow's threads and on a
    dask.distributed LocalCluster of two one-thread worker processes on this machine (the
    cost of shipping tasks; on one 2-core machine Dask cannot be faster);
  * resume: a cold build killed with SIGKILL once its first clip exists, then started again;
  * nightly: build-all over templates/, first night and an unchanged second night.

Usage: .venv/bin/python bench/prefect_ops.py [SCRIPT]
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench_args import ROOT, bench_arguments, print_table
from draft_build import SOPREEL, start_server

PYTHON = ROOT / ".venv" / "bin" / "python"


def build(script: Path, out: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(SOPREEL), "build", str(script), "--out", str(out)], env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - started


def killed_then_resumed(script: Path, env: dict[str, str]) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
    started = time.perf_counter()
    process = subprocess.Popen([str(SOPREEL), "build", str(script), "--out", str(out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while not list(out.glob("*/assets/animate/*.json")):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = time.perf_counter() - started
    return killed_at, build(script, out, env)


def nightly(env: dict[str, str]) -> list[float]:
    out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
    code = ("from flows.build import build_all; "
            f"build_all(folder={str(ROOT / 'templates')!r}, out={str(out)!r})")
    times = []
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run([str(PYTHON), "-c", code], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    args = bench_arguments(__doc__)
    script = Path(args.script).absolute()
    env = {**os.environ, "PREFECT_HOME": tempfile.mkdtemp(prefix="sopreel-bench-home-"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false"}
    server, url = start_server(env)
    env["PREFECT_API_URL"] = url
    rows = []
    try:
        out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
        rows.append(["threads (2)", f"{build(script, out, env):.1f} s",
                     f"{build(script, out, env):.1f} s"])
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None, env={"PREFECT_API_URL": url}) as cluster:
            dask_env = {**env, "SOPREEL_DASK_ADDRESS": cluster.scheduler_address}
            out = Path(tempfile.mkdtemp(prefix="sopreel-bench-"))
            rows.append(["dask, 2 worker processes", f"{build(script, out, dask_env):.1f} s",
                         f"{build(script, out, dask_env):.1f} s"])
        print_table(["tasks run in", "cold build", "unchanged re-run"], rows)
        killed_at, resumed = killed_then_resumed(script, env)
        print(f"\nresume: killed {killed_at:.1f} s into a cold build (first clip made); "
              f"the restarted build took {resumed:.1f} s")
        first, second = nightly(env)
        print(f"nightly build-all over templates/: first night {first:.1f} s, "
              f"unchanged second night {second:.1f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
