"""Orchestration: Prefect flows and tasks that put the stages in order. No media logic here."""

from flows import consent_key  # noqa: F401  (the Prefect Secret home for the consent key)
