"""A build's manifest told for people: a markdown summary, a table of assets, output links.

The Prefect flows publish these as run artifacts; they are plain text and rows here, so what a
reviewer reads in the UI is tested without a server.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from stages.manifest import Manifest


def output_links(manifest: Manifest, out_dir: Path, base_url: str | None) -> dict[str, str]:
    """Label -> URL of every video and the manifest: under `base_url` (the outputs folder as
    a web server shows it) when set, else as file:// URLs."""
    files = {f"{lang} video": entry.video for lang, entry in manifest.outputs.items()}
    files["manifest"] = "manifest.json"
    if base_url:
        prefix = f"{base_url.rstrip('/')}/{quote(out_dir.name)}"
        return {label: f"{prefix}/{quote(path)}" for label, path in files.items()}
    return {label: (out_dir / path).absolute().as_uri() for label, path in files.items()}


def asset_rows(manifest: Manifest) -> list[dict[str, str]]:
    """One row per asset: which scene, stage and language, who made it, and whether this run
    made it (`new`) or found it in the cache (`reused`)."""
    rows = []
    for scene in manifest.scenes:
        for asset in scene.assets:
            rows.append({"scene": scene.id, "stage": asset.stage,
                         "language": asset.language or "all", "backend": asset.backend,
                         "model": asset.model or "", "state": _state(asset.cached),
                         "path": asset.path})
    if manifest.music:
        rows.append({"scene": "(whole video)", "stage": "music", "language": "all",
                     "backend": manifest.music.backend, "model": manifest.music.model or "",
                     "state": _state(manifest.music.cached), "path": manifest.music.path})
    return rows


def _state(cached: bool) -> str:
    return "reused" if cached else "new"


def _cost_lines(cost: dict | None) -> list[str]:
    """Hosted services: estimated before the build, spent by it, and the usage they reported."""
    if not cost:
        return []
    estimate, spent = cost.get("estimate") or {}, cost["spent"]
    lines = ["", "## Hosted services", "",
             f"Spent ${spent['total_usd']:.2f} (estimated ${estimate.get('total_usd', 0):.2f} "
             f"at the prices of {estimate.get('prices_as_of', '-')}).", "",
             "| service | spent | estimated | new | reused | usage reported |",
             "|---|---|---|---|---|---|"]
    for name in sorted({*estimate.get("services", {}), *spent["services"]}):
        planned = estimate.get("services", {}).get(name, {})
        made = spent["services"].get(name, {})
        usage = ", ".join(f"{k} {v:g}" for k, v in spent["usage"].get(name, {}).items())
        lines.append(f"| {name} | ${made.get('usd', 0):.2f} | ${planned.get('usd', 0):.2f} | "
                     f"{made.get('new', 0)} | {planned.get('cached', 0)} | {usage or '-'} |")
    return lines


def summary_markdown(manifest: Manifest, links: dict[str, str]) -> str:
    """What a reviewer checks first: the videos, their lengths and loudness, warnings, whose
    voice speaks and on what consent, what was made anew, and the disclosure."""
    script = manifest.script
    rows = asset_rows(manifest)
    made = sum(row["state"] == "new" for row in rows)
    lines = [f"# {script.get('title') or script['id']}", "",
             f"Script `{script['id']}` ({script.get('path', '')}), profile "
             f"`{manifest.profile.get('name', '')}`, built {manifest.built_at}.", "",
             f"Assets: {made} new, {len(rows) - made} reused from the cache.", "",
             "| language | video | duration | loudness | subtitles |",
             "|---|---|---|---|---|"]
    for lang, entry in manifest.outputs.items():
        loudness = (f"{entry.loudness_lufs:.1f} LUFS, {entry.true_peak_dbtp:.1f} dBTP"
                    if entry.loudness_lufs is not None and entry.true_peak_dbtp is not None
                    else "-")
        video = f"[{entry.video}]({links[f'{lang} video']})" if f"{lang} video" in links \
            else entry.video
        lines.append(f"| {lang} | {video} | {entry.duration_s:.1f} s | {loudness} | "
                     f"{entry.cues} cues |")
    voice = manifest.voice
    lines += ["", "## Voice and consent", "",
              f"Voice `{voice.get('id')}` for use `{voice.get('use')}`: "
              f"{voice.get('consent', '')}", ""]
    for lang, spoken in voice.get("spoken", {}).items():
        lines.append(f"- {lang}: {spoken.get('voice')}"
                     + (" (cloned)" if spoken.get("cloned") else ""))
    lines += _cost_lines(manifest.cost)
    lines += ["", "## Warnings", ""]
    lines += [f"- {warning}" for warning in manifest.warnings] or ["None."]
    lines += ["", "## Disclosure", "", manifest.disclosure]
    if "manifest" in links:
        lines += ["", f"Full record: [manifest.json]({links['manifest']})"]
    return "\n".join(lines) + "\n"
