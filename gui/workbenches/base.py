"""What every workbench shares: access to the job runner, status readout, error dialogs."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget


class Workbench(QWidget):
    """Base class. Subclasses set ``title`` and may override the hooks below.

    ``jobs`` is the main window's :class:`gui.workers.JobRunner` (one progress bar
    with a Cancel button for the whole window); ``readout`` carries the status-bar text (the
    cursor readout), ``status`` a message shown beside it until the next one.
    """

    title = "Workbench"
    readout = Signal(str)
    status = Signal(str)  # a message for the status bar (e.g. "previous fit cleared: ...")
    error = Signal(str)  # one sentence, shown by the main window as a dialog

    def __init__(self, jobs, parent=None):
        super().__init__(parent)
        self.jobs = jobs

    def load_demo(self) -> None:
        """Show the bundled demo data (called at start-up and for --screenshot)."""

    def export(self) -> None:
        """File > Export for this workbench."""
        self.error.emit(f"The {self.title} workbench has nothing to export yet.")

    def open_paths(self, paths: list[str], kind: str) -> None:
        """Open files chosen from the File menu or the recent-files list."""
        self.error.emit(f"The {self.title} workbench cannot open {kind} files.")
