"""Video workbench (placeholder until its issue lands)."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QVBoxLayout

from gui.workbenches.base import Workbench


class VideoWorkbench(Workbench):
    title = "Video"

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Video workbench: coming soon."))
