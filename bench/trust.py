"""Benchmark: what trust costs a build. Signing and verifying a finished video (C2PA, with
every generated ingredient), the allowlist check of a supplied file, the script loader under
generated input, the length the spoken AI notice adds, and the consent ledger (one signed
append, verifying a long ledger cold, and the check a build repeats per narration).

Builds the script with the draft profile first (cached assets are reused), then times the
steps on its videos. Usage: .venv/bin/python bench/trust.py [SCRIPT] [--lang en] [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_args import (
    ROOT,
    SOPREEL,
    bench_arguments,
    prefect_environment,
    print_table,
    stop_background_server,
)

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from certs import make_ca  # noqa: E402

from stages import ledger  # noqa: E402
from stages.media import MUSIC, PHOTO, check_supplied  # noqa: E402
from stages.provenance import Ingredient, Signing, check_signing, sign_mp4, verify  # noqa: E402


def best_of(runs: int, call) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    args = bench_arguments(__doc__)
    out = ROOT / "bench" / "out"
    env = prefect_environment()
    try:
        subprocess.run([str(SOPREEL), "build", str(args.script), "--lang", args.lang, "--out",
                        str(out), "--profile", args.profile], env=env, check=True,
                       capture_output=True)
    finally:
        stop_background_server(env)
        shutil.rmtree(env["PREFECT_HOME"], ignore_errors=True)
    root = out / yaml.safe_load(Path(args.script).read_text(encoding="utf-8"))["id"]
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assets = [a for scene in manifest["scenes"] for a in scene["assets"]
              if a["language"] in (None, args.lang)]
    assets += [manifest["music"]] if manifest["music"] else []
    assets += [manifest["notices"][args.lang]] if args.lang in manifest["notices"] else []
    ingredients = [Ingredient(root / a["path"], f"{a['stage']} {Path(a['path']).name}",
                              "algorithmicMedia", a["stage"]) for a in assets]
    video = root / args.lang / "video.mp4"
    with tempfile.TemporaryDirectory() as folder:
        pki = make_ca(Path(folder))
        signing = Signing(pki["certificate"], pki["key"])
        work = Path(folder) / "video.mp4"

        def sign() -> None:
            shutil.copy(video, work)
            sign_mp4(work, signing, title="bench", source_type="compositeSynthetic",
                     ingredients=ingredients, generator="bench")

        check = best_of(3, lambda: check_signing(signing))
        signed = best_of(3, sign)
        checked = best_of(3, lambda: verify(work, [pki["ca"]]))
        grew = work.stat().st_size - video.stat().st_size
        assert verify(work, [pki["ca"]]).trusted
    notice = manifest["outputs"][args.lang]
    photo = next((a for a in assets if a["stage"] == "images"), None)
    rows = [["signer check before the build (incl. trial signature)", f"{check * 1000:.0f} ms"],
            [f"sign one video ({len(ingredients)} ingredients, "
             f"{video.stat().st_size / 1e6:.1f} MB)", f"{signed * 1000:.0f} ms"],
            ["manifest size added to the file", f"{grew / 1000:.0f} kB"],
            ["verify one video", f"{checked * 1000:.0f} ms"],
            ["video length with the spoken notice",
             f"{notice['duration_s']:.1f} s (notice "
             f"{manifest['notices'][args.lang]['info']['seconds']:.1f} s spoken)"]]
    if photo:
        rows.append(["ffprobe allowlist check, one photo",
                     f"{best_of(5, lambda: check_supplied(root / photo['path'], PHOTO)) * 1000:.0f}"
                     " ms"])
    if manifest["music"]:
        bed = root / manifest["music"]["path"]
        rows.append(["ffprobe allowlist check, one music file",
                     f"{best_of(5, lambda: check_supplied(bed, MUSIC)) * 1000:.0f} ms"])
    rows += ledger_rows(100 if args.quick else 2000)
    print_table(["step", "time"], rows)


def ledger_rows(entries: int) -> list[list[str]]:
    """A ledger of `entries` syntheses in a temporary folder, with a temporary key."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ["SOPREEL_CONSENT_KEY"] = str(Path(folder) / "key.pem")
        os.environ["XDG_STATE_HOME"] = str(Path(folder) / "state")
        voices = Path(folder) / "voices"
        key = ledger.signing_key(voices, create=True)
        ledger.start_ledger(voices, key, "bench")
        fields = {"voice": "anna", "language": "en", "use": "training", "script": "bench"}
        started = time.perf_counter()
        for i in range(entries):
            ledger.append(voices, key, "synthesis", scene=f"s{i}", **fields,
                          narration_sha256=f"{i:064x}")
        append = (time.perf_counter() - started) / entries

        def cold() -> None:
            ledger._verified.clear()
            ledger.open_ledger(voices)

        return [[f"consent ledger: one signed append (fsync), at {entries} entries",
                 f"{append * 1000:.1f} ms"],
                [f"consent ledger: verify {entries + 1} entries cold",
                 f"{best_of(3, cold) * 1000:.0f} ms"],
                ["consent ledger: check again, unchanged (per narration)",
                 f"{best_of(5, lambda: ledger.open_ledger(voices)) * 1000:.2f} ms"]]


if __name__ == "__main__":
    main()
