"""`sopreel serve`: the deployments a team runs from the Prefect UI and on a schedule.

- build-video/build: one script, started from the UI with a form;
- dub-batch/dub: many scripts into more languages;
- build-all/nightly: every script under a folder, on a cron schedule;
- review-translation/review: a person approves a machine translation in the UI;
- import-sop/import: a Word, PowerPoint, PDF, Markdown or HTML SOP becomes a draft script
  (and, rewritten by an LLM, waits for its reviewer); review-import/review approves it later;
- package-video/package: a built script as a SCORM 1.2, SCORM 2004, xAPI or HTML zip.

Served runs execute on this machine, each in its own process. For work pools (runs on other
machines), prefect.yaml beside this project declares the same deployments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from flows.settings import Nightly
from stages.errors import SopreelError

SERVER_START_TIMEOUT_S = 300   # a new Prefect home migrates its database first


@dataclass(frozen=True)
class LocalServer:
    """A Prefect server this command started (and stops), or None when one was running."""

    url: str
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def deployments(nightly: Nightly) -> list:
    """The deployments, named as DESIGN.md fixes them."""
    from prefect.schedules import Cron

    from flows.build import build_all, build_video, dub_batch
    from flows.importing import import_sop
    from flows.packaging import package_video
    from flows.review import review_import, review_translation

    tags = ["sopreel"]
    return [
        build_video.to_deployment(
            name="build", tags=tags,
            description="Build one script's training video in every language (or some)."),
        dub_batch.to_deployment(
            name="dub", tags=tags,
            description="Add languages to many scripts; images and clips come from the cache."),
        build_all.to_deployment(
            name="nightly", tags=tags,
            schedules=[Cron(nightly.cron, timezone=nightly.timezone)],
            parameters={"folder": str(Path(nightly.folder).absolute()),
                        "profile": nightly.profile, "out": str(Path(nightly.out).absolute())},
            description=f"Every script under {nightly.folder}, on the schedule "
                        f"'{nightly.cron}' ({nightly.timezone}); unchanged ones cost nothing."),
        review_translation.to_deployment(
            name="review", tags=tags,
            description="Pause for a reviewer to correct and approve a machine translation."),
        import_sop.to_deployment(
            name="import", tags=tags,
            description="Make a draft script from an SOP document (a path on this machine); "
                        "an LLM rewrite waits here for its reviewer."),
        review_import.to_deployment(
            name="review", tags=tags,
            description="Pause for a reviewer to approve an imported script's LLM rewrite."),
        package_video.to_deployment(
            name="package", tags=tags,
            description="Package a built script for the LMS: SCORM 1.2/2004, xAPI or HTML."),
    ]


def serve(nightly: Nightly, api_url: str, limit: int | None = None) -> None:
    """Serve the deployments against `api_url` until interrupted (runs are executed here)."""
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ["PREFECT_API_URL"] = api_url   # for the processes that execute the runs
    with temporary_settings(updates={PREFECT_API_URL: api_url}):   # Prefect is imported already
        prefect_serve(*deployments(nightly), limit=limit)


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_local_server(host: str, port: int) -> LocalServer:
    """A Prefect server with its UI on host:port: the one already there, or a new one.

    It keeps its database in PREFECT_HOME, so run history and schedules survive a restart."""
    url = f"http://{host}:{port}/api"
    if healthy(url):
        return LocalServer(url, None)
    from prefect.settings import get_current_settings

    log = Path(get_current_settings().home) / "sopreel-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", host,
               "--port", str(port)]
    with log.open("ab") as sink:
        # Its own session: Ctrl-C reaches serve, which pauses the schedules and then stops it.
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PREFECT_API_URL": url},
                                   start_new_session=True)
    server = LocalServer(url, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not healthy(url):
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-4:]
            raise SopreelError(f"The Prefect server did not start on {host}:{port} "
                               f"(log: {log}): " + " | ".join(tail))
        if time.monotonic() > deadline:
            server.stop()
            raise SopreelError(f"The Prefect server on {host}:{port} did not answer within "
                               f"{SERVER_START_TIMEOUT_S} s.")
        time.sleep(0.5)
    return server
