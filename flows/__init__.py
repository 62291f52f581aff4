"""Orchestration: Prefect flows and tasks that put the stages in order. No media logic here."""
