"""The Video workbench's plots: PSNR and SSIM per frame for the sample mean and every
baseline (copy last frame, black frame, context mean), side by side with one time cursor
each, both bound to the shared Timeline; and the live training curves (forecast loss, ELBO, H)."""
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


def trailing_mean(y, window: int) -> np.ndarray:
    """Mean of the finite values among the last ``window`` values at each step (NaN if none)."""
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    total = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    count = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(i - window, 0)
    n = count[i] - count[lo]
    return np.where(n > 0, (total[i] - total[lo]) / np.maximum(n, 1), np.nan)


class TrainingPlots(pg.GraphicsLayoutWidget):
    """Per training step: the forecast loss (what fits H and the noise; each step's batch, faint,
    and its mean over the last ``SMOOTH`` steps, which shows the trend through the noise of the
    batches), the ELBO and H."""

    SMOOTH = 25

    def __init__(self, parent=None):
        super().__init__(parent)
        specs = (("forecast", f"forecast loss (fits H, noise; {self.SMOOTH}-step mean)",
                  pg.mkPen(255, 170, 51, 90)),
                 ("elbo", "ELBO (nats / clip)", pg.mkPen("#55ccff")),
                 ("hurst", "Hurst index H", pg.mkPen("#77ff77", width=2)))
        self.plots, self.curves = {}, {}  # the plots referenced here, or Python frees them
        for col, (key, title, pen) in enumerate(specs):
            plot = self.plots[key] = self.addPlot(row=0, col=col, title=title)
            plot.setLabel("bottom", "step")
            self.curves[key] = plot.plot([], [], pen=pen, connect="finite")
            if key == "forecast":
                self.curves["forecast_mean"] = plot.plot([], [], pen=pg.mkPen("#ffaa33", width=2),
                                                         connect="finite")
            if key == "elbo":
                plot.setToolTip("The ELBO falls while the forecast term tightens the noise: the "
                                "posterior then pays more path KL to follow the tracked digits.")

    def clear(self) -> None:
        for c in self.curves.values():
            c.setData([], [])

    def set_history(self, steps, history: dict) -> None:
        """``history``: curve name -> values per step; a missing curve is left empty."""
        if history.get("forecast") is not None:
            history = {**history, "forecast_mean": trailing_mean(history["forecast"],
                                                                  self.SMOOTH)}
        for key, curve in self.curves.items():
            y = history.get(key)
            curve.setData(steps, y) if y is not None else curve.setData([], [])
