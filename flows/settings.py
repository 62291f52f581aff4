"""Operations settings (templates/operations.yaml): how builds run under Prefect.

Retries, time limits, the GPU lock, the nightly schedule, the Dask address and the outputs URL
are a site's choices, not a script's or a profile's, so they live in one declarative file.
They are read when a flow starts, so a served deployment picks up an edited file on its next
run. Environment variables win over the file for the two things a machine decides.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.errors import DataFileError
from stages.paths import TEMPLATES
from stages.yamlfile import load_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StagePolicy(_Strict):
    retries: int = Field(0, ge=0, le=10)
    retry_delays_s: list[float] = Field(default_factory=list, description="one per retry")
    timeout_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _delays_per_retry(self) -> StagePolicy:
        if len(self.retry_delays_s) > max(self.retries, 1):
            raise ValueError(f"{len(self.retry_delays_s)} retry delays for {self.retries} "
                             "retries; give one delay per retry")
        if any(delay < 0 for delay in self.retry_delays_s):
            raise ValueError("retry delays are seconds, 0 or more")
        return self

    def task_options(self) -> dict[str, Any]:
        """Prefect task options: retries with their backoff, and the time limit."""
        delays = self.retry_delays_s or [0.0]
        return {"retries": self.retries,
                "retry_delay_seconds": [delays[min(i, len(delays) - 1)]
                                        for i in range(self.retries)] or 0,
                "timeout_seconds": self.timeout_s}


class StagePolicies(_Strict):
    images: StagePolicy = Field(default_factory=StagePolicy)
    narrate: StagePolicy = Field(default_factory=StagePolicy)
    animate: StagePolicy = Field(default_factory=StagePolicy)
    music: StagePolicy = Field(default_factory=StagePolicy)
    compose: StagePolicy = Field(default_factory=StagePolicy)
    multitrack: StagePolicy = Field(default_factory=StagePolicy)


class GpuLimit(_Strict):
    limit: str = Field("sopreel-gpu-{host}", pattern=r"^[A-Za-z0-9_.{}-]+$")
    slots: int = Field(1, ge=1, le=64)

    @property
    def name(self) -> str:
        return self.limit.replace("{host}", socket.gethostname())


class Nightly(_Strict):
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    folder: str = "templates"
    profile: str = "draft"
    out: str = "outputs"


class Dask(_Strict):
    address: str | None = None


class Operations(_Strict):
    stages: StagePolicies = Field(default_factory=StagePolicies)
    gpu: GpuLimit = Field(default_factory=GpuLimit)
    nightly: Nightly = Field(default_factory=Nightly)
    dask: Dask = Field(default_factory=Dask)
    outputs_url: str | None = Field(None, pattern=r"^(https?|file)://\S+$")

    def policy(self, stage: str) -> StagePolicy:
        return getattr(self.stages, stage)

    @property
    def dask_address(self) -> str | None:
        return os.environ.get("SOPREEL_DASK_ADDRESS") or self.dask.address

    @property
    def outputs_link_base(self) -> str | None:
        return os.environ.get("SOPREEL_OUTPUTS_URL") or self.outputs_url


def operations_file() -> Path:
    return Path(os.environ.get("SOPREEL_OPERATIONS") or TEMPLATES / "operations.yaml")


def load_operations(path: Path | None = None) -> Operations:
    """The site's operations settings; a mistake is reported at its file and line."""
    path = path or operations_file()
    return validate(Operations, load_yaml(path, DataFileError), DataFileError)
