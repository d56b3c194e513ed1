"""One save-dialog-then-write path for every Save/Export button.

``save_with_dialog(parent, title, default_name, file_filter, write)`` asks for a path, calls
``write(path)`` and turns an OSError into one sentence on ``parent.error`` (a Workbench
signal); success goes to ``parent.readout``. Returns the written path or None.
``choose_folder(parent, title)`` asks for an output folder (exports that write several files).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog


def save_to(parent, path, write, what: str = "the file") -> Path | None:
    """Write ``path`` with ``write(path)``; report success or the error on the parent's signals."""
    path = Path(path)
    try:
        write(path)
    except OSError as err:
        parent.error.emit(f"Cannot write {what} to '{path}': {err.strerror or err}.")
        return None
    parent.readout.emit(f"wrote {path}")
    return path


def save_with_dialog(parent, title: str, default_name: str, file_filter: str, write,
                     what: str = "the file") -> Path | None:
    """Ask for a path (cancel -> None), then :func:`save_to`."""
    path, _ = QFileDialog.getSaveFileName(parent, title, default_name, file_filter)
    return save_to(parent, path, write, what) if path else None


def choose_folder(parent, title: str, start: str = "") -> str | None:
    """Ask for an output folder (Export buttons that write several files); cancel -> None."""
    path = QFileDialog.getExistingDirectory(parent, title, start)
    return path or None
