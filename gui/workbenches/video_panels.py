"""The Video workbench's side panels (Data, Model, Forecast, Export): widgets only; the
workbench (gui/workbenches/video.py) connects their buttons to its actions."""
from __future__ import annotations

from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSpinBox, QVBoxLayout)


def _spin(lo: int, hi: int, value: int, prefix: str = "") -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    if prefix:
        s.setPrefix(prefix)
    return s


class DataPanel(QGroupBox):
    """Open a video, or generate a held-out Stochastic Moving Digits clip."""

    def __init__(self, parent=None):
        super().__init__("Data", parent)
        self.open_button = QPushButton("Open video...")
        self.generate_button = QPushButton("Moving digits")
        self.generate_button.setToolTip("Generate a held-out Stochastic Moving Digits clip")
        self.digits_spin = _spin(1, 2, 1, "digits: ")
        self.clip_label = QLabel("no clip")
        self.clip_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.generate_button)
        row.addWidget(self.digits_spin)
        lay = QVBoxLayout(self)
        lay.addWidget(self.open_button)
        lay.addLayout(row)
        lay.addWidget(self.clip_label)


class ModelPanel(QGroupBox):
    """Open a model file or train one as a job."""

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        self.open_model_button = QPushButton("Open model...")
        self.steps_spin = _spin(10, 100000, 1500)
        self.brownian_check = QCheckBox("Brownian baseline (H = 1/2)")
        self.train_button = QPushButton("Train...")
        self.train_button.setToolTip("Train a new model on the current data source as a job")
        lay = QFormLayout(self)
        lay.addRow(self.model_label)
        lay.addRow(self.open_model_button)
        lay.addRow("Steps", self.steps_spin)
        lay.addRow(self.brownian_check)
        lay.addRow(self.train_button)


class ForecastPanel(QGroupBox):
    """Context N, horizon M, samples S, Predict, and which sample the panels show."""

    def __init__(self, parent=None):
        super().__init__("Forecast", parent)
        self.context_spin = _spin(3, 200, 10)
        self.horizon_spin = _spin(1, 200, 10)
        self.samples_spin = _spin(1, 64, 8)
        self.predict_button = QPushButton("Predict")
        self.sample_spin = _spin(0, 0, 0)
        self.smooth_check = QCheckBox("Smooth pixels (bilinear)")
        self.smooth_check.setToolTip("Off: nearest-neighbour pixels, as the model sees them")
        lay = QFormLayout(self)
        lay.addRow("Context N", self.context_spin)
        lay.addRow("Horizon M", self.horizon_spin)
        lay.addRow("Samples S", self.samples_spin)
        lay.addRow(self.predict_button)
        lay.addRow("Shown sample", self.sample_spin)
        lay.addRow(self.smooth_check)


class ExportPanel(QGroupBox):
    """Export the rendered panels (the same images as on screen) as MP4 or PNG frames."""

    def __init__(self, parent=None):
        super().__init__("Export", parent)
        self.export_mp4_button = QPushButton("Export MP4...")
        self.export_png_button = QPushButton("Export PNG frames...")
        lay = QVBoxLayout(self)
        lay.addWidget(self.export_mp4_button)
        lay.addWidget(self.export_png_button)
