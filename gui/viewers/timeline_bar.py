"""The scrub bar shared by the sequence and video workbenches: Play/Pause, a slider and a
label, all bound to one :class:`gui.models.Timeline` (the slider follows the model and drives
it; playing steps it on a timer)."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget


class TimelineBar(QWidget):
    def __init__(self, timeline, interval_ms: int = 100, label_width: int = 110, parent=None):
        super().__init__(parent)
        self.timeline = timeline
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self.set_playing)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, timeline.length - 1)
        self.slider.valueChanged.connect(timeline.set_index)
        self.label = QLabel("")
        self.label.setMinimumWidth(label_width)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(lambda: timeline.step(1))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        timeline.changed.connect(self._sync)

    def _sync(self, index: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, self.timeline.length - 1)
        self.slider.setValue(index)
        self.slider.blockSignals(False)

    def set_playing(self, on: bool) -> None:
        if on:
            self._timer.start()
        else:
            self._timer.stop()
        self.play_button.setText("Pause" if on else "Play")
        if self.play_button.isChecked() != on:
            self.play_button.setChecked(on)
