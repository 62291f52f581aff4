"""What a run shows in the Prefect UI: a summary, a table of assets, links, live progress."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.progress import PROGRESS, StageProgress
from stages.manifest import Manifest
from stages.summary import asset_rows, output_links, summary_markdown


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys are lowercase letters, digits and dashes."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() and c.isascii() else "-" for c in text)


def publish_build(manifest: Manifest, out_dir: Path, base_url: str | None) -> None:
    """The build's summary, its assets (new or reused) and links to every output."""
    script_id = manifest.script["id"]
    links = output_links(manifest, out_dir, base_url)
    create_markdown_artifact(key=artifact_key(script_id, "summary"),
                             markdown=summary_markdown(manifest, links),
                             description=f"{script_id}: videos, voice and consent, warnings")
    create_table_artifact(key=artifact_key(script_id, "assets"), table=asset_rows(manifest),
                          description=f"{script_id}: every asset, new or reused")
    for label, link in links.items():
        create_link_artifact(key=artifact_key(script_id, label), link=link,
                             link_text=f"{script_id} {label}",
                             description=f"{script_id}: {label}")


def publish_problems(problems: list[str]) -> None:
    create_markdown_artifact(key="build-problems", description="scripts that were not built",
                             markdown="# Not built\n\n" + "\n".join(
                                 f"- {line}" for p in problems for line in p.splitlines()))


class ProgressArtifacts:
    """Progress artifacts for long stages, updated in place as their tasks report.

    Updates are throttled: every 5% at most twice a second, and any change after 5 s. Tasks
    on Dask workers report in their own process, so there the flow advances the artifact per
    finished item.
    """

    MIN_STEP = 5.0
    STEP_INTERVAL_S = 0.5
    QUIET_INTERVAL_S = 5.0

    def __init__(self, run_label: str) -> None:
        self.run_label = run_label
        self._ids: dict[str, UUID] = {}
        self._shown: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = PROGRESS.listen(self._update)

    def track(self, stage: str) -> None:
        self._ids[stage] = create_progress_artifact(
            progress=0.0, key=artifact_key(self.run_label, stage, "progress"),
            description=f"{self.run_label}: {stage}")
        self._shown[stage] = (0.0, time.monotonic())

    def finish(self, stage: str) -> None:
        self._send(stage, 100.0, force=True)

    def close(self) -> None:
        self._stop()

    def _update(self, stage: StageProgress) -> None:
        if stage.key in self._ids:
            self._send(stage.key, 100.0 * stage.completed / stage.total)

    def _send(self, stage: str, percent: float, force: bool = False) -> None:
        with self._lock:
            shown, at = self._shown[stage]
            now = time.monotonic()
            waited = now - at
            due = (percent - shown >= self.MIN_STEP and waited >= self.STEP_INTERVAL_S) or (
                percent > shown and waited >= self.QUIET_INTERVAL_S)
            if not (force or due):
                return
            self._shown[stage] = (percent, now)
        update_progress_artifact(self._ids[stage], progress=percent)
