"""Benchmarks that cannot rot: every script in bench/ runs in its quick mode (seconds, tiny
inputs, the CPU) and prints its table. Figures are never asserted: speed is measured by
`make bench` and `make bench-gpu`, and written down in bench/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
HELPERS = {"bench_args.py"}
sys.path.insert(0, str(BENCH))

from gpu import BENCHMARKS  # noqa: E402

GPU = {script for script, _, _ in BENCHMARKS.values()}   # run by gpu.py, in its quick mode
# The two that run Prefect servers most are tests/test_bench_prefect.py's: a file is one
# unit of `--dist loadfile`, so the benchmarks then share the two workers.
PREFECT_HEAVY = ("edit_loop.py", "prefect_ops.py")
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py")
                 if p.name not in HELPERS | GPU | set(PREFECT_HEAVY))


def test_gpu_py_runs_every_gpu_benchmark():
    assert {p.name for p in BENCH.glob("*_gpu.py")} == GPU


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_in_its_quick_mode_and_prints_its_table(script, tmp_path):
    runs_quick_and_prints_its_table(script, tmp_path)


def runs_quick_and_prints_its_table(script: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("date: ") and " commit: " in lines[0] and " machine: " in lines[0]
    assert any(line.startswith("|---") for line in lines), done.stdout
    assert "Traceback" not in done.stderr, done.stderr
