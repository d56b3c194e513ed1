"""Display controls bound to an :class:`~gui.viewers.ortho.OrthoViewer`: window/level fields and
presets, overlay choice + opacity slider + visibility, radiological/neurological toggle.

The overlay controls edit the viewer's layer model (``viewer.layers``) and follow its events."""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox,
                               QPushButton, QRadioButton, QSlider, QVBoxLayout, QWidget)


class DisplayPanel(QWidget):
    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        layout = QVBoxLayout(self)

        wl = QGroupBox("Window / level")
        form = QFormLayout(wl)
        self.window = QDoubleSpinBox()
        self.level = QDoubleSpinBox()
        for box in (self.window, self.level):
            box.setRange(-1e9, 1e9)
            box.setDecimals(2)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._fields_changed)
        self.window.setMinimum(1e-6)
        self.preset = QComboBox()
        self.preset.activated.connect(lambda _i: self._preset_chosen())
        form.addRow("Window", self.window)
        form.addRow("Level", self.level)
        form.addRow("Preset", self.preset)
        hint = QPushButton("Reset zoom")
        hint.setToolTip("Shift + left drag: window/level; right drag: zoom; middle drag: pan; "
                        "wheel/arrows: slice; double click: maximize")
        hint.clicked.connect(lambda: [v.reset_zoom() for v in viewer.views.values()])
        form.addRow(hint)
        layout.addWidget(wl)

        ov = QGroupBox("Overlay")
        form = QFormLayout(ov)
        self.overlay = QComboBox()
        self.overlay.currentTextChanged.connect(lambda _t: self._sync_overlay_controls())
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.visible = QCheckBox("Visible")
        self.visible.toggled.connect(self._visible_changed)
        form.addRow("Layer", self.overlay)
        form.addRow("Opacity", self.opacity)
        form.addRow(self.visible)
        layout.addWidget(ov)

        orient = QGroupBox("Orientation")
        col = QVBoxLayout(orient)
        self.radiological = QRadioButton("Radiological (patient left on screen right)")
        self.neurological = QRadioButton("Neurological (patient left on screen left)")
        self.radiological.setChecked(viewer.radiological)
        self.neurological.setChecked(not viewer.radiological)
        self.radiological.toggled.connect(lambda on: viewer.set_radiological(on))
        col.addWidget(self.radiological)
        col.addWidget(self.neurological)
        layout.addWidget(orient)
        layout.addStretch(1)

        viewer.levels_changed.connect(self._levels_changed)
        viewer.overlays_changed.connect(self._overlays_changed)
        viewer.layers.changed.connect(self._layer_changed)
        viewer.radiological_changed.connect(self._radiological_changed)
        self._overlays_changed()
        self._levels_changed(*viewer.levels)

    def _levels_changed(self, lo: float, hi: float) -> None:
        with QSignalBlocker(self.window), QSignalBlocker(self.level):
            self.window.setValue(hi - lo)
            self.level.setValue((hi + lo) / 2.0)
        names = list(self.viewer.presets)
        with QSignalBlocker(self.preset):
            if [self.preset.itemText(i) for i in range(self.preset.count())] != names:
                self.preset.clear()
                self.preset.addItems(names)
            current = [n for n, lv in self.viewer.presets.items() if lv == (lo, hi)]
            self.preset.setCurrentIndex(names.index(current[0]) if current else -1)
            self.preset.setPlaceholderText("custom")

    def _fields_changed(self) -> None:
        w, c = self.window.value(), self.level.value()
        self.viewer.set_levels(c - w / 2.0, c + w / 2.0)

    def _preset_chosen(self) -> None:
        name = self.preset.currentText()
        if name in self.viewer.presets:
            self.viewer.apply_preset(name)

    def _overlays_changed(self) -> None:
        current = self.overlay.currentText()
        names = list(self.viewer.layers)
        with QSignalBlocker(self.overlay):
            self.overlay.clear()
            self.overlay.addItems(names)
            if current in names:
                self.overlay.setCurrentText(current)
        self._sync_overlay_controls()

    def _sync_overlay_controls(self) -> None:
        ov = self.viewer.layers.get(self.overlay.currentText())
        for w in (self.opacity, self.visible):
            w.setEnabled(ov is not None)
        if ov is not None:
            with QSignalBlocker(self.opacity), QSignalBlocker(self.visible):
                self.opacity.setValue(int(round(100 * ov.opacity)))
                self.visible.setChecked(ov.visible)

    def _layer_changed(self, layer, what: str) -> None:
        if layer.name == self.overlay.currentText() and what in ("opacity", "visible"):
            self._sync_overlay_controls()

    def _opacity_changed(self, value: int) -> None:
        layer = self.viewer.layers.get(self.overlay.currentText())
        if layer is not None:
            layer.opacity = value / 100.0

    def _visible_changed(self, on: bool) -> None:
        layer = self.viewer.layers.get(self.overlay.currentText())
        if layer is not None:
            layer.visible = on

    def _radiological_changed(self, on: bool) -> None:
        with QSignalBlocker(self.radiological), QSignalBlocker(self.neurological):
            self.radiological.setChecked(on)
            self.neurological.setChecked(not on)
