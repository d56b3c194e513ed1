"""Sequence workbench, right: training curves, one plot per channel (observed, window
reconstruction, prediction fan), KL per layer and latency per step, and the scrub bar.
Every plot's cursor follows one :class:`gui.models.Timeline`."""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.viewers.timeline_bar import TimelineBar
from gui.viewers.timeseries import ChannelPlot, HistoryPlot, TracePlot

MAX_CHANNELS = 6
PLAY_INTERVAL_MS = 80


class SequencePlots(QWidget):
    def __init__(self, timeline, parent=None):
        super().__init__(parent)
        self.timeline = timeline
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.loss_plot = HistoryPlot("loss / reconstruction")
        self.kl_hist_plot = HistoryPlot("KL per z unit")
        for p in (self.loss_plot, self.kl_hist_plot):
            p.setMaximumHeight(170)
            top.addWidget(p)
        layout.addLayout(top)
        self.channel_box = QVBoxLayout()
        self.channel_box.setSpacing(2)
        self.channel_plots: list[ChannelPlot] = []
        layout.addLayout(self.channel_box, 4)
        bottom = QHBoxLayout()
        self.kl_plot = TracePlot("KL at step t")
        self.lat_plot = TracePlot("latency (ms)")
        for p in (self.kl_plot, self.lat_plot):
            p.setMaximumHeight(150)
            bottom.addWidget(p)
        layout.addLayout(bottom, 1)
        self.scrub = TimelineBar(timeline, PLAY_INTERVAL_MS)
        layout.addWidget(self.scrub)
        layout.addWidget(QLabel(
            "<span style='color:#9e9e9e'>observed</span> &nbsp; "
            "<span style='color:#66bb6a'>window reconstruction</span> &nbsp; "
            "<span style='color:#ff9800'>prediction fan (made at the cursor; fainter: the "
            "steps before)</span> &nbsp; <span style='color:#ffeb3b'>cursor</span>"))
        timeline.changed.connect(self.set_cursor)

    def draw_history(self, loss, rec, kl) -> None:
        """loss (E,), rec (E,), kl (E, L) per epoch."""
        kl = np.asarray(kl).reshape(len(loss), -1)
        self.loss_plot.set_curves([loss, rec], ["loss", "reconstruction"])
        self.kl_hist_plot.set_curves([kl[:, i] for i in range(kl.shape[1])],
                                     [f"layer {i + 1}" for i in range(kl.shape[1])])

    def show(self, pred, n: int) -> None:
        """Sequence ``n`` of a :class:`engine.pvrnn.prediction.Prediction`."""
        N, T, H, D, L = pred.shape
        while len(self.channel_plots) < min(D, MAX_CHANNELS):
            p = ChannelPlot(f"ch {len(self.channel_plots) + 1}")
            self.channel_plots.append(p)
            self.channel_box.addWidget(p)
        while len(self.channel_plots) > min(D, MAX_CHANNELS):
            self.channel_plots.pop().setParent(None)
        rec = pred.reconstruction
        for c, plot in enumerate(self.channel_plots):
            plot.set_series(pred.observed[n, :, c], pred.predictions[n, :, :, c],
                            None if rec is None else rec[n, :, :, c])
        self.kl_plot.set_traces([pred.kl[n, :, l] for l in range(L)],
                                [f"layer {l + 1}" for l in range(L)])
        self.lat_plot.set_traces([pred.latency_ms[n]], ["per step"])
        self.timeline.set_length(max(1, int(pred.lengths[n])))  # emits: cursors redraw

    def set_cursor(self, t: int) -> None:
        for p in self.channel_plots + [self.kl_plot, self.lat_plot]:
            p.set_cursor(t)
        self.scrub.label.setText(f"t = {t} / {self.timeline.length - 1}")
