"""The work of a build: plain functions and small classes, importable without Prefect."""
