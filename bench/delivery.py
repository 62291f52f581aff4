"""Benchmark: what delivering a build costs. The script (default: the forklift template, both
its languages) built cold with the profile at 16:9 and again at 9:16 (the vertical frame: text
laid out for it, stills and clips at its aspect); then `--multitrack` on the warm 16:9 build
(what the one file with every language adds); then `sopreel package` in every format. Each is
a `sopreel` command run as a user runs it, the Prefect server already up.

Usage: .venv/bin/python bench/delivery.py [SCRIPT] [--profile P] [--quick]
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from bench_args import SOPREEL, bench_arguments, print_table

from stages.profile import resolve_profile_path


def sopreel(*args: str) -> float:
    """Seconds one command takes."""
    begin = time.perf_counter()
    subprocess.run([str(SOPREEL), *args], check=True, capture_output=True)
    return time.perf_counter() - begin


def vertical(profile: str, folder: Path) -> Path:
    """The profile with its compose frame turned upright (width and height swapped)."""
    data = yaml.safe_load(resolve_profile_path(profile).read_text(encoding="utf-8"))
    compose = data.setdefault("compose", {})
    width, height = compose.get("width", 1280), compose.get("height", 720)
    compose.update(width=min(width, height), height=max(width, height))
    path = folder / "vertical.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def main() -> None:
    args = bench_arguments(__doc__)
    script = str(Path(args.script).absolute())
    sopreel("server", "start")   # up before anything is timed (reused if running)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wide, upright = str(folder / "wide"), str(folder / "upright")
        tall = str(vertical(args.profile, folder))
        timed = [
            ("build, 16:9, cold", ("build", script, "--profile", args.profile, "--out", wide)),
            ("build, 9:16, cold", ("build", script, "--profile", tall, "--out", upright)),
            ("build, 16:9, warm", ("build", script, "--profile", args.profile, "--out", wide)),
            ("build --multitrack, 16:9, warm (only the file with every language is made)",
             ("build", script, "--profile", args.profile, "--out", wide, "--multitrack")),
        ]
        rows += [[what, f"{sopreel(*command):.1f}"] for what, command in timed]
        for kind in ("scorm12", "scorm2004", "xapi", "html"):
            out = folder / f"{kind}.zip"
            seconds = sopreel("package", script, "--format", kind, "--outputs", wide,
                              "--out", str(out))
            rows.append([f"package --format {kind} ({out.stat().st_size / 1e6:.1f} MB)",
                         f"{seconds:.1f}"])
    print_table(["what", "seconds"], rows)


if __name__ == "__main__":
    main()
