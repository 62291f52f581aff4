"""The environment is the lock: pyproject.toml and uv.lock agree, and what is installed is
exactly what uv.lock pins (a new release upstream can never change what a fresh machine gets)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "uv.lock"


def locked_versions() -> dict[str, str]:
    packages = tomllib.loads(LOCK.read_text(encoding="utf-8"))["package"]
    return {canonicalize_name(p["name"]): p["version"] for p in packages
            if "registry" in p.get("source", {})}


def test_pyproject_and_lock_agree():
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run([str(uv), "lock", "--check", "--offline"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, (
        "pyproject.toml and uv.lock disagree; run `make lock` and commit uv.lock:\n"
        + done.stderr)


def test_every_locked_package_is_pinned_with_hashes():
    packages = tomllib.loads(LOCK.read_text(encoding="utf-8"))["package"]
    for package in packages:
        if "registry" not in package.get("source", {}):
            continue
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), \
            package["name"]


def test_the_environment_is_exactly_the_lock():
    locked = locked_versions()
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in metadata.distributions()}
    wrong = {name: (installed[name], locked[name]) for name in installed
             if name in locked and installed[name] != locked[name]}
    extra = sorted(set(installed) - set(locked) - {"sopreel", "pip"})   # pip: the venv's own
    assert not wrong, f"installed versions differ from uv.lock (installed, locked): {wrong}"
    assert not extra, f"installed but not in uv.lock: {extra}; run `make setup`"


def test_the_makefile_installs_the_locked_uv():
    pinned = re.search(r"^UV_VERSION\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert pinned and pinned.group(1) == locked_versions()["uv"]
