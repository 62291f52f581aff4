"""Pictures a Markdown or HTML document links to: files beside it, or data: URIs.

Web addresses are not fetched (an import reads the document, nothing else); each one is
named in the import's warnings so the team can download it and link the file instead.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, urlparse

from stages.importer.document import Picture

MAX_PICTURE_BYTES = 50 * 1024 * 1024


def local_picture(document: Path, src: str) -> Picture | str:
    """The picture `src` names, relative to `document`, or why it was not used."""
    src = src.strip()
    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        if ";base64" not in header:
            return f"a picture given as a non-base64 data: URI ({header[:40]}) was left out"
        try:
            return Picture(base64.b64decode(payload, validate=False), "an embedded picture")
        except (binascii.Error, ValueError):
            return "an embedded picture (data: URI) could not be decoded; left out"
    parsed = urlparse(src)
    if parsed.scheme in ("http", "https", "ftp"):
        return (f"the picture {src} is on the web and was not downloaded; save it beside "
                f"{document.name} and link the file to use it")
    if parsed.scheme not in ("", "file"):
        return f"the picture {src!r} was left out (not a file)"
    target = (document.parent / unquote(parsed.path)).resolve()
    if not target.is_relative_to(document.parent.resolve()):
        return f"the picture {src} is outside the document's folder; left out"
    if not target.is_file():
        return f"the picture {src} was not found beside {document.name}; left out"
    if target.stat().st_size > MAX_PICTURE_BYTES:
        return f"the picture {src} is larger than 50 MB; left out"
    return Picture(target.read_bytes(), f"the picture {src}")
