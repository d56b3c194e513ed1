"""The Video workbench's plots: PSNR and SSIM per frame for the sample mean and every
baseline (copy last frame, black frame, context mean), side by side with one time cursor
each, both bound to the shared Timeline; and the live training curves (ELBO, KL, H)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from engine.fsde.prediction import LABELS, METHODS

STYLES = {  # pen per method: the model bold orange, baselines thin and dashed
    "model": dict(color="#ff9a1a", width=2.5),
    "copy_last": dict(color="#8888ff", width=1.5, style=Qt.DashLine),
    "black": dict(color="#bbbbbb", width=1.5, style=Qt.DotLine),
    "context_mean": dict(color="#55cc77", width=1.5, style=Qt.DashDotLine),
}
PSNR_CAP = 60.0  # dB shown at most (a perfect baseline frame has PSNR 100)


class MetricsPlots(pg.GraphicsLayoutWidget):
    """PSNR | SSIM over the frames; the context frames shaded; a movable cursor line in
    each plot that follows and drives ``timeline``."""

    def __init__(self, timeline, parent=None):
        super().__init__(parent)
        self.timeline = timeline
        self.plots, self.curves, self.cursors, self.regions = {}, {}, [], []
        for col, (kind, title, unit) in enumerate((("psnr", "PSNR per frame", "dB"),
                                                    ("ssim", "SSIM per frame", ""))):
            p = self.addPlot(row=0, col=col, title=title)
            p.setLabel("bottom", "frame")
            p.setLabel("left", kind.upper(), units=unit or None)
            p.getAxis("left").enableAutoSIPrefix(False)
            if col == 0:
                p.addLegend(offset=(8, 8), labelTextSize="8pt")
            region = pg.LinearRegionItem((0, 1), movable=False,
                                         brush=pg.mkBrush(120, 120, 120, 50),
                                         pen=pg.mkPen(90, 90, 90))
            p.addItem(region)
            for name in METHODS:
                symbol = dict(symbol="o", symbolSize=5) if name == "model" else {}
                self.curves[kind, name] = p.plot([], [], pen=pg.mkPen(**STYLES[name]),
                                                 name=LABELS[name], **symbol)
            line = pg.InfiniteLine(0, angle=90, movable=True, pen=pg.mkPen("#ffff55", width=2))
            line.sigPositionChanged.connect(
                lambda ln: self.timeline.set_index(int(round(ln.value()))))
            p.addItem(line)
            self.plots[kind], self.regions = p, self.regions + [region]
            self.cursors.append(line)
        timeline.changed.connect(self.set_cursor)

    def clear(self) -> None:
        for c in self.curves.values():
            c.setData([], [])

    def set_prediction(self, pred) -> None:
        """Show the metrics of a :class:`engine.fsde.prediction.Prediction`."""
        t = np.arange(pred.context, pred.n_frames)
        for (kind, name), curve in self.curves.items():
            y = np.asarray(pred.metrics[kind][name], float)
            curve.setData(t, np.minimum(y, PSNR_CAP) if kind == "psnr" else y)
        for region in self.regions:
            region.setRegion((-0.5, pred.context - 0.5))
        for p in self.plots.values():
            p.setXRange(-0.5, pred.n_frames - 0.5, padding=0.02)

    def set_cursor(self, index: int) -> None:
        for line in self.cursors:
            if int(round(line.value())) != index:
                line.blockSignals(True)
                line.setValue(index)
                line.blockSignals(False)


class TrainingPlots(pg.GraphicsLayoutWidget):
    """ELBO, KL and the Hurst index per training step."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.elbo_plot = self.addPlot(row=0, col=0, title="ELBO (nats / clip)")
        self.kl_plot = self.addPlot(row=0, col=1, title="KL (nats / clip)")
        self.h_plot = self.addPlot(row=0, col=2, title="Hurst index H")
        self.elbo_curve = self.elbo_plot.plot([], [], pen=pg.mkPen("#55ccff"))
        self.kl_curve = self.kl_plot.plot([], [], pen=pg.mkPen("#ff7777"))
        self.h_curve = self.h_plot.plot([], [], pen=pg.mkPen("#77ff77", width=2))
        for p in (self.elbo_plot, self.kl_plot, self.h_plot):
            p.setLabel("bottom", "step")

    def clear(self) -> None:
        for c in (self.elbo_curve, self.kl_curve, self.h_curve):
            c.setData([], [])

    def set_history(self, steps, elbo, kl, hurst) -> None:
        self.elbo_curve.setData(steps, elbo)
        self.kl_curve.setData(steps, kl)
        self.h_curve.setData(steps, hurst)
