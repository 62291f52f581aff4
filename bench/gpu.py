"""Every GPU benchmark in one go (`make bench-gpu`): studio images, animation, music and
narration, each on random weights at the real models' size, within about 10 minutes on one
H100 or H200.

Each benchmark runs in a process of its own (its GPU memory is free for the next) under a time
limit that keeps the whole run inside 11 minutes; one that overruns is stopped and reported, and
the others still run. Tables and figures land in bench/out/gpu/ (NAME.md as printed, NAME.json),
then a summary is printed, ready for bench/RESULTS.md. torch.compile runs are left out (their
compilation alone takes minutes): run `bench/images_gpu.py`, `bench/animate_gpu.py --compile`
and `bench/music_gpu.py --compile` for those.

`--quick`: every benchmark's scaled-down check on the CPU, as `make test` runs it.
Usage: .venv/bin/python bench/gpu.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_args import ROOT, add_quick, print_provenance, print_table

# name: (script, its arguments for this run, seconds it may take on the GPU)
BENCHMARKS: dict[str, tuple[str, list[str], int]] = {
    "images": ("images_gpu.py", ["--runs", "2", "--no-compile"], 150),
    "animate": ("animate_gpu.py", ["--runs", "1", "--cache-steps", "10"], 200),
    "music": ("music_gpu.py", ["--models", "small,ace-step", "--runs", "1"], 200),
    "narrate": ("narrate_gpu.py", ["--runs", "2"], 90),
}
QUICK_LIMIT_S = 180


def run(name: str, quick: bool, out: Path) -> tuple[str, float, dict | list | None]:
    """Run one benchmark; its state ('done', 'failed (exit N)', 'stopped at its limit'), its
    seconds and its figures."""
    script, arguments, limit = BENCHMARKS[name]
    figures = out / f"{name}.json"
    figures.unlink(missing_ok=True)
    command = [sys.executable, str(ROOT / "bench" / script),
               *(["--quick", "--runs", "1"] if quick else arguments), "--json", str(figures)]
    started = time.perf_counter()
    with (out / f"{name}.md").open("w", encoding="utf-8") as printed:
        try:
            done = subprocess.run(command, stdout=printed, stderr=subprocess.STDOUT,
                                  timeout=QUICK_LIMIT_S if quick else limit, check=False)
            state = "done" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            state = f"stopped at its limit of {QUICK_LIMIT_S if quick else limit} s"
    seconds = time.perf_counter() - started
    found = json.loads(figures.read_text(encoding="utf-8")) if figures.is_file() else None
    return state, seconds, found


def headline(name: str, figures: dict | list | None) -> str:
    """The figures a reader wants first, from a benchmark's JSON."""
    if not figures:
        return "-"
    if name == "images":
        return "; ".join(f"{r['case']} {r['median_s']} s/image ({r['per_step_s']} s/step)"
                         for r in figures)
    if name == "animate":
        return "; ".join(f"{r['model']}: guided step {r['guided']['median_s']} s "
                         f"({r['guided']['x_floor']}x floor), 81-frame clip "
                         + ", ".join(f"{c['s']} s {setting}" for setting, c in r["clip"].items())
                         + f", cache hook {r['cache']['speedup']}x" for r in figures)
    if name == "narrate":
        return "OmniVoice " + "; ".join(f"{r['language']} {r['x_real_time']}x real time"
                                        for r in figures["languages"])
    return "; ".join(f"{r['model']}: {r['fresh']['x_real_time']}x real time fresh, "
                     f"{r['continued']['x_real_time']}x continued" for r in figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick(parser)
    args = parser.parse_args()
    print_provenance()
    out = ROOT / "bench" / "out" / ("gpu-quick" if args.quick else "gpu")
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], False
    for name in BENCHMARKS:
        print(f"{name} ...", flush=True)
        state, seconds, figures = run(name, args.quick, out)
        failed |= state != "done"
        rows.append([name, state, f"{seconds:.0f}", headline(name, figures)])
    print_table(["benchmark", "state", "seconds", "figures"], rows)
    print(f"tables: {out.relative_to(ROOT)}/*.md, figures: {out.relative_to(ROOT)}/*.json")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
