"""Atlas check: the patient's scan registered to MNI152, shown over the template, so a user can
judge the registration by eye (blend or checkerboard, on the template's linked views).

``AtlasCheckView()``; ``set_registration(scan01, template)`` with ``scan01`` (X, Y, Z) float32
in 0..1 on the template grid (``prepare(scan_mni, template)``, run it in the job: it scans the
whole volume) and ``template`` the template Volume; ``clear()``. The overlay is one layer
(:data:`gui.viewers.REGISTERED`) of the view's layer model; the mode and the slider change it.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from gui.models import Cursor3D
from gui.viewers import REGISTERED
from gui.viewers.ortho import OrthoViewer

MODES = ("Blend", "Checkerboard")


def unit_range(data: np.ndarray, mask=None) -> np.ndarray:
    """(X, Y, Z) -> float32 scaled so the 1st..99th percentile (inside ``mask``) maps to 0..1."""
    data = np.asarray(data, np.float32)
    sample = data[mask] if mask is not None and mask.any() else data[data > data.min()]
    if sample.size == 0:
        return np.zeros_like(data)
    lo, hi = np.percentile(sample[:: max(1, sample.size // 200000)], [1, 99])
    return np.clip((data - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def prepare(scan_mni, template) -> np.ndarray:
    """The registered scan scaled 0..1 inside the template's brain (for the overlay)."""
    data = np.asarray(template.data)
    brain = data > np.percentile(data[::4, ::4, ::4], 50)
    return unit_range(scan_mni, brain)


def checkerboard(shape, tiles: int) -> np.ndarray:
    """(X, Y, Z) bool: 3-D checkerboard with ``tiles`` tiles along the longest axis."""
    size = max(1, int(np.ceil(max(shape) / max(1, tiles))))
    idx = [np.arange(n) // size for n in shape]
    return ((idx[0][:, None, None] + idx[1][None, :, None] + idx[2][None, None, :]) % 2) == 0


class AtlasCheckView(QWidget):
    """Template (grey) with the registered scan over it: blend (opacity) or checkerboard."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.cursor = Cursor3D()
        self.viewer = OrthoViewer(self.cursor)
        self.scan01 = None
        self.template = None
        self._boards: dict[int, np.ndarray] = {}   # tile count -> checkerboard data (cached)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.note = QLabel("No registration yet: Personalize a native scan to see it here.")
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.mode.currentTextChanged.connect(lambda _t: self._update())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(50)
        self.slider.setToolTip("Blend: opacity of the registered scan; Checkerboard: tile count")
        self.slider.valueChanged.connect(lambda _v: self._update())
        row.addWidget(self.note, 1)
        row.addWidget(QLabel("View"))
        row.addWidget(self.mode)
        row.addWidget(self.slider)
        lay.addLayout(row)
        lay.addWidget(self.viewer, 1)

    @property
    def has_registration(self) -> bool:
        return self.scan01 is not None

    def set_registration(self, scan01, template) -> None:
        """Show ``template`` (Volume) with ``scan01`` ((X, Y, Z) in 0..1 on its grid)."""
        if self.template is not template:
            self.template = template
            self.viewer.set_volume(template)
        self.scan01 = np.asarray(scan01, np.float32)
        self._boards = {}
        self.note.setText("Registered scan over the MNI152 template: edges and ventricles "
                          "should line up.")
        self._update()

    def clear(self) -> None:
        self.scan01 = None
        self._boards = {}
        self.viewer.remove_overlay(REGISTERED)
        self.note.setText("No registration yet: Personalize a native scan to see it here.")

    def _update(self) -> None:
        if self.scan01 is None:
            return
        value = self.slider.value()
        if self.mode.currentText() == "Blend":
            data, opacity, cmap = self.scan01, value / 100.0, "CET-L3"
        else:
            tiles = 2 + int(round(value / 100.0 * 22))
            if tiles not in self._boards:
                if len(self._boards) > 3:
                    self._boards.clear()
                self._boards[tiles] = np.where(checkerboard(self.scan01.shape, tiles),
                                               self.scan01, np.float32(-1))
            data = self._boards[tiles]
            opacity, cmap = 1.0, "CET-L1"
        layer = self.viewer.layers.get(REGISTERED)
        if layer is None or layer.colors != cmap:
            self.viewer.add_overlay(REGISTERED, data, kind="scalar", colors=cmap,
                                    opacity=opacity, levels=(0.0, 1.0))
        else:
            layer.data = data
            layer.opacity = opacity
