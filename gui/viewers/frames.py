"""Frame views for video: titled image panels bound to one shared :class:`gui.models.Timeline`."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from gui.models import Timeline


class FramePanels(pg.GraphicsLayoutWidget):
    """A row of titled image panels showing frame ``timeline.index`` of each clip.

    ``set_clip(i, frames, levels, cmap)`` gives panel ``i`` its frames (T, H, W) or
    (T, H, W, 3) in display units (or None for an empty panel); the shared timeline picks the
    frame. All panels share one zoom (linked views).
    """

    def __init__(self, titles: list[str], timeline: Timeline, parent=None):
        super().__init__(parent)
        self.setBackground("k")
        self.timeline = timeline
        self.views, self.items, self.labels = [], [], []
        self.clips: list[np.ndarray | None] = [None] * len(titles)
        for i, title in enumerate(titles):
            label = self.addLabel(title, row=0, col=i)
            vb = self.addViewBox(row=1, col=i, lockAspect=True, invertY=True,
                                 enableMouse=True)
            item = pg.ImageItem()
            vb.addItem(item)
            self.ci.layout.setColumnStretchFactor(i, 1)
            for w in (label, vb):  # equal columns whatever the title lengths
                w.setMinimumWidth(20)
                w.setPreferredWidth(100)
            self.labels.append(label)
            self.views.append(vb)
            self.items.append(item)
        timeline.changed.connect(self._show)

    def set_title(self, i: int, title: str) -> None:
        self.labels[i].setText(title)

    def set_clip(self, i: int, frames: np.ndarray | None, levels=(0.0, 1.0),
                 cmap: str | None = None) -> None:
        self.clips[i] = frames
        item = self.items[i]
        if cmap:
            item.setColorMap(pg.colormap.get(cmap))
        item.setLevels(levels)
        self._levels = getattr(self, "_levels", {})
        self._levels[i] = levels
        self._show(self.timeline.index)
        self.fit()

    def fit(self) -> None:
        """Show each panel's whole frame."""
        for vb, clip in zip(getattr(self, "views", []), getattr(self, "clips", [])):
            if clip is not None:
                h, w = clip.shape[1:3]
                vb.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.fit()

    def frame(self, i: int) -> np.ndarray | None:
        """The frame panel ``i`` shows now, or None."""
        clip = self.clips[i]
        if clip is None or self.timeline.index >= len(clip):
            return None
        return clip[self.timeline.index]

    def _show(self, _index: int = 0) -> None:
        for i, item in enumerate(self.items):
            f = self.frame(i)
            if f is None:
                item.clear()
            else:
                item.setImage(np.asarray(f, np.float32), autoLevels=False,
                              levels=self._levels.get(i, (0.0, 1.0)))
