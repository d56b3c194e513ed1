"""A canvas that shows one rendered video frame, scaled to fill the widget with its aspect
kept, for the frame ``timeline.index`` of a shared :class:`gui.models.Timeline`.

The pixels come from a render function (engine/fsde/render.py for the Video workbench), called
at the widget's size, so what is on screen is exactly what the exporter writes (only the scale
differs). ``smooth`` chooses bilinear instead of nearest-neighbour pixels.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from gui.models import Timeline

# render(t, scale, smooth) -> uint8 RGB (h, w, 3)
Render = Callable[[int, float, bool], np.ndarray]


class FrameCanvas(QWidget):
    """Shows ``render(timeline.index, scale, smooth)``; ``scale`` fills the widget.

    ``set_source(render, fit)``: ``fit(box_h, box_w) -> scale`` (e.g. render.fit_scale for the
    panel layout); ``set_source(None)`` clears. ``image``: the uint8 RGB array shown now.
    """

    def __init__(self, timeline: Timeline, parent=None):
        super().__init__(parent)
        self.timeline = timeline
        self.smooth = False
        self.image: np.ndarray | None = None
        self.scale = 1.0
        self._render: Render | None = None
        self._fit: Callable[[int, int], float] | None = None
        self._qimage: QImage | None = None
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(200, 120)
        timeline.changed.connect(lambda _i: self.refresh())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(900, 360)

    def set_source(self, render: Render | None,
                   fit: Callable[[int, int], float] | None = None) -> None:
        self._render, self._fit = render, fit
        self.refresh()

    def set_smooth(self, on: bool) -> None:
        self.smooth = bool(on)
        self.refresh()

    def refresh(self) -> None:
        """Render the current frame at the scale that fills the widget."""
        if self._render is None:
            self.image, self._qimage = None, None
        else:
            self.scale = self._fit(self.height(), self.width()) if self._fit else 1.0
            img = np.ascontiguousarray(self._render(self.timeline.index, self.scale,
                                                    self.smooth))
            self.image = img
            h, w = img.shape[:2]
            self._qimage = QImage(img.data, w, h, 3 * w, QImage.Format_RGB888).copy()
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self.refresh()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(16, 16, 16))
        if self._qimage is not None:
            img = self._qimage
            if img.width() > self.width() or img.height() > self.height():  # never overflow
                img = img.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            p.drawImage((self.width() - img.width()) // 2, (self.height() - img.height()) // 2,
                        img)
        p.end()
