"""The program's name and version (from the installed package metadata)."""
from __future__ import annotations

APP_NAME = "inversion-workbench"


def program_version() -> str:
    """The installed package's version, or "unknown" when running from a bare checkout."""
    try:
        from importlib.metadata import version

        return version(APP_NAME)
    except Exception:  # not installed
        return "unknown"
