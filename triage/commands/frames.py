"""CLI commands: frames (see docs/cli.md)."""
from __future__ import annotations

from triage.cli_app import app  # noqa: F401

