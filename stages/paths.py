"""Where sopreel's own data lives, and where user data goes by default."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
PROFILES = TEMPLATES / "profiles"
STYLES = TEMPLATES / "styles"


def voices_dir(override: str | Path | None = None) -> Path:
    """`--voices-dir`, else $SOPREEL_VOICES_DIR, else the project's voices/ folder."""
    chosen = override or os.environ.get("SOPREEL_VOICES_DIR") or ROOT / "voices"
    return Path(chosen).expanduser().resolve()
