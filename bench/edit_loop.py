"""Benchmark: the edit loop, as ratios to the video's length. A cold build, the same build again
unchanged, the build after one sentence of one scene is edited, and one more language dubbed
into the built script (as a ratio to that language's video).

Runs `sopreel build` and `sopreel dub` exactly as a user does, in three Prefect setups:
  * background: no PREFECT_API_URL: sopreel's local background server, which the first
    command of a session starts (`sopreel server start`, timed on its own) and every later
    command reuses;
  * server:     PREFECT_API_URL names a `prefect server start` on loopback (a team's server);
  * temporary:  SOPREEL_PREFECT_SERVER=temporary, Prefect's per-command temporary server (what
                every command cost before the background server).

Targets (issue 19): unchanged rebuild <= 0.05x, one sentence edited <= 0.12x, cold build
<= 0.30x, one more language <= 0.15x of that language's video.
Usage: .venv/bin/python bench/edit_loop.py [SCRIPT] [--lang en] [--profile draft] [--quick]
(--quick: the background setup only.)
(SCRIPT's first scene's first sentence is the one edited; its second language is dubbed.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from bench_args import (
    SOPREEL,
    bench_arguments,
    prefect_environment,
    print_table,
    start_server,
    stop_background_server,
)

TARGETS = {"cold": 0.30, "unchanged": 0.05, "edited": 0.12, "dubbed": 0.15}


def copy_script(script: Path, folder: Path) -> Path:
    """The script and the files beside it (photos), so editing it touches no original."""
    shutil.copytree(script.parent, folder, dirs_exist_ok=True)
    return folder / script.name


def edit_one_sentence(script: Path, lang: str) -> None:
    """Change one word of the first sentence of the first scene's narration."""
    data = yaml.safe_load(script.read_text(encoding="utf-8"))
    scene = data["scenes"][0]
    if lang != data["language"]:
        scene = data["translations"][lang]["scenes"][scene["id"]]
    scene["narration"] = scene["narration"].replace(" the ", " the whole ", 1) \
        if " the " in scene["narration"] else "Now: " + scene["narration"]
    script.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")


def second_language(script: Path, lang: str) -> str:
    data = yaml.safe_load(script.read_text(encoding="utf-8"))
    return next(code for code in data.get("languages", []) if code != lang)


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(SOPREEL), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"sopreel {' '.join(args)} failed:\n{done.stderr}")
    return time.perf_counter() - started


def measure(original: Path, lang: str, profile: str, env: dict[str, str]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-edit-"))
    try:
        script, out = copy_script(original, work / "script"), work / "out"
        build = ["build", str(script), "--lang", lang, "--profile", profile, "--out", str(out)]
        seconds = {"cold": timed(build, env), "unchanged": timed(build, env)}
        edit_one_sentence(script, lang)
        seconds["edited"] = timed(build, env)
        other = second_language(script, lang)
        seconds["dubbed"] = timed(["dub", str(script), "--lang", other, "--profile", profile,
                                   "--out", str(out)], env)
        manifest = json.loads(next(out.glob("*/manifest.json")).read_text(encoding="utf-8"))
        seconds["video"] = manifest["outputs"][lang]["duration_s"]
        seconds["dubbed_video"] = manifest["outputs"][other]["duration_s"]
        return seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)


def row(setup: str, s: dict[str, float]) -> list[str]:
    ratios = {case: s[case] / (s["dubbed_video"] if case == "dubbed" else s["video"])
              for case in TARGETS}
    return [setup, f"{s['video']:.1f}",
            *(f"{s[case]:.1f} s = {ratios[case]:.3f}x" for case in TARGETS),
            f"{s['dubbed_video']:.1f}"]


def main() -> None:
    args = bench_arguments(__doc__)
    script = Path(args.script).absolute()
    print(f"script: {script}, language: {args.lang}, profile: {args.profile}")
    env = prefect_environment()
    try:
        server_start = timed(["server", "start"], env)
        rows = [row("background", measure(script, args.lang, args.profile, env))]
    finally:
        stop_background_server(env)
    if args.quick:   # the suite's check that the script runs: one setup is enough
        rows += ROWS_SKIPPED
    else:
        rows += other_setups(script, args.lang, args.profile, env)
    shutil.rmtree(env["PREFECT_HOME"], ignore_errors=True)
    print_table(["Prefect", "video s", *(f"{case} (<= {target:.2f}x)"
                                         for case, target in TARGETS.items()),
                 "dubbed video s"], rows)
    print(f"background: starting the server, once per session, took {server_start:.1f} s")


ROWS_SKIPPED = [[setup, "not run with --quick", *([""] * len(TARGETS)), ""]
                for setup in ("server", "temporary")]


def other_setups(script: Path, lang: str, profile: str,
                 env: dict[str, str]) -> list[list[str]]:
    """A team's Prefect server on loopback, and Prefect's per-command temporary server."""
    rows = []
    server, url = start_server(env)
    try:
        rows.append(row("server", measure(script, lang, profile,
                                          {**env, "PREFECT_API_URL": url})))
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows.append(row("temporary", measure(script, lang, profile,
                                         {**env, "SOPREEL_PREFECT_SERVER": "temporary"})))
    return rows


if __name__ == "__main__":
    main()
