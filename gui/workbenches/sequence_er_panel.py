"""Sequence workbench, left: the error-regression panel: settings (defaults and ranges
from engine.pvrnn.config: ERSettings, LIMITS), Run, Export, the sequence shown, a summary."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QPushButton, QSpinBox

from engine.pvrnn.config import LIMITS, ERSettings


class ERPanel(QGroupBox):
    """Emits ``run_requested``, ``export_requested`` and ``sequence_changed(n)``."""

    run_requested = Signal()
    export_requested = Signal()
    sequence_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__("Error regression", parent)
        self._base = ERSettings()  # fields without a control (meta_prior) come from here
        form = QFormLayout(self)
        self.window_spin = _int_spin("window")
        self.iter_spin = _int_spin("iterations")
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(3)
        lo, hi, _ = LIMITS["er_lr"]
        self.lr_spin.setRange(max(lo, 10 ** -self.lr_spin.decimals()), hi)
        self.lr_spin.setSingleStep(0.01)
        self.horizon_spin = _int_spin("horizon")
        for name, w in (("window", self.window_spin), ("iterations", self.iter_spin),
                        ("lr", self.lr_spin), ("horizon", self.horizon_spin)):
            form.addRow(name, w)
        self.show_settings(self._base)
        self.er_btn = QPushButton("Run error regression")
        self.er_btn.clicked.connect(self.run_requested.emit)
        export = QPushButton("Export predictions...")
        export.clicked.connect(self.export_requested.emit)
        form.addRow(self.er_btn)
        form.addRow(export)
        self.seq_spin = QSpinBox()
        self.seq_spin.setRange(0, 0)
        self.seq_spin.valueChanged.connect(self.sequence_changed.emit)
        form.addRow("sequence", self.seq_spin)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        form.addRow(self.summary)

    def settings(self) -> ERSettings:
        return replace(self._base, window=self.window_spin.value(),
                       iterations=self.iter_spin.value(), lr=self.lr_spin.value(),
                       horizon=self.horizon_spin.value())

    def show_settings(self, er: ERSettings) -> None:
        self._base = er
        self.window_spin.setValue(er.window)
        self.iter_spin.setValue(er.iterations)
        self.lr_spin.setValue(er.lr)
        self.horizon_spin.setValue(er.horizon)

    def set_sequences(self, n: int) -> None:
        """Allow sequence indices 0..n-1 without emitting ``sequence_changed``."""
        self.seq_spin.blockSignals(True)
        self.seq_spin.setRange(0, max(0, n - 1))
        self.seq_spin.blockSignals(False)


def _int_spin(key: str) -> QSpinBox:
    s = QSpinBox()
    lo, hi, _ = LIMITS[key]
    s.setRange(lo, hi)
    return s
