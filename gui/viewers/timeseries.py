"""Time-series views that follow one shared :class:`gui.models.Timeline` cursor.

``ChannelPlot``: one data channel: the whole observed sequence (dim), what has been seen up
to the cursor, the error-regression window's reconstruction at the cursor and the
prediction fan (the H-step prediction made at the cursor, plus fainter ones made at the
few steps before). ``TracePlot``: one or more per-step curves (KL per layer, latency)
with the cursor. ``HistoryPlot``: training curves against epoch (log scale).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg

LAYER_COLORS = ["#4fc3f7", "#ffb74d", "#ba68c8", "#81c784", "#e57373"]
FAN_DEPTH = 4  # earlier predictions drawn (fainter) behind the current one


def _setup(plot: pg.PlotWidget, label: str) -> None:
    """Common look: no context menu, a faint grid, the y label, and no automatic SI-prefix
    rescaling (values read as they are)."""
    plot.setMenuEnabled(False)
    plot.showGrid(x=True, y=True, alpha=0.2)
    for name in ("left", "bottom"):
        plot.getAxis(name).enableAutoSIPrefix(False)
    plot.getPlotItem().setLabel("left", label)


def _cursor_line() -> pg.InfiniteLine:
    return pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#ffeb3b", width=1.5))


class ChannelPlot(pg.PlotWidget):
    """Observed vs reconstructed vs predicted for one channel of one sequence."""

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        _setup(self, name)
        self.full = self.plot(pen=pg.mkPen((150, 150, 150, 90), width=1))
        self.seen = self.plot(pen=pg.mkPen("#e0e0e0", width=1.5))
        alphas = [int(200 * (1 - (k + 1) / (FAN_DEPTH + 2))) for k in range(FAN_DEPTH)]
        self.fan = [self.plot(pen=pg.mkPen((255, 152, 0, a), width=1)) for a in alphas]
        self.pred = self.plot(pen=pg.mkPen("#ff9800", width=2.5), symbol="o", symbolSize=4,
                              symbolBrush="#ff9800", symbolPen=None)
        self.recon = self.plot(pen=pg.mkPen("#66bb6a", width=2.5))
        self.cursor = _cursor_line()
        self.addItem(self.cursor)
        self.observed = np.zeros(0)
        self.predictions = None
        self.reconstruction = None

    def set_series(self, observed, predictions=None, reconstruction=None) -> None:
        """observed (T,), predictions (T, H) or None, reconstruction (T, W) or None."""
        self.observed = np.asarray(observed, dtype=float)
        self.predictions = predictions
        self.reconstruction = reconstruction
        t = np.arange(len(self.observed))
        ok = np.isfinite(self.observed)
        self.full.setData(t[ok], self.observed[ok])
        lo, hi = np.nanmin(self.observed), np.nanmax(self.observed)
        pad = 0.1 * (hi - lo + 1e-9)
        self.setYRange(lo - pad, hi + pad, padding=0)
        self.setXRange(0, max(1, len(t) - 1), padding=0.01)

    def set_cursor(self, t: int) -> None:
        self.cursor.setValue(t)
        obs = self.observed
        n = min(t + 1, len(obs))
        self.seen.setData(np.arange(n), obs[:n])
        if self.predictions is None:
            for c in self.fan + [self.pred, self.recon]:
                c.setData([], [])
            return
        H = self.predictions.shape[1]
        for k, curve in enumerate([self.pred] + self.fan):
            s = t - k
            if s < 0 or s >= len(obs) or not np.isfinite(obs[s]):
                curve.setData([], [])
                continue
            y = np.concatenate([[obs[s]], self.predictions[s]])
            x = np.arange(s, s + H + 1)
            ok = np.isfinite(y)
            curve.setData(x[ok], y[ok])
        if self.reconstruction is not None and t < len(self.reconstruction):
            r = self.reconstruction[t]
            x = np.arange(t - len(r) + 1, t + 1)
            ok = np.isfinite(r)
            self.recon.setData(x[ok], r[ok])


class TracePlot(pg.PlotWidget):
    """Per-step curves (T,) with the shared cursor."""

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        _setup(self, label)
        self.legend = self.addLegend(offset=(-5, 5), labelTextSize="8pt")
        self.curves: list = []
        self.cursor = _cursor_line()
        self.addItem(self.cursor)

    def set_traces(self, traces: list[np.ndarray], names: list[str]) -> None:
        for c in self.curves:
            self.removeItem(c)
        self.legend.clear()
        self.curves = []
        for i, (y, name) in enumerate(zip(traces, names)):
            y = np.asarray(y, dtype=float)
            t = np.arange(len(y))
            ok = np.isfinite(y)
            c = self.plot(t[ok], y[ok], pen=pg.mkPen(LAYER_COLORS[i % len(LAYER_COLORS)],
                                                     width=1.5), name=name)
            self.curves.append(c)
        if traces:
            self.setXRange(0, max(1, len(traces[0]) - 1), padding=0.01)

    def set_cursor(self, t: int) -> None:
        self.cursor.setValue(t)


class HistoryPlot(pg.PlotWidget):
    """Training curves against epoch on a log y axis."""

    def __init__(self, label: str, parent=None):
        super().__init__(parent)
        _setup(self, label)
        self.setLogMode(y=True)
        self.getPlotItem().setLabel("bottom", "epoch")
        self.legend = self.addLegend(offset=(-5, 5), labelTextSize="8pt")
        self.curves: list = []

    def set_curves(self, curves: list[np.ndarray], names: list[str]) -> None:
        if len(self.curves) != len(curves):
            for c in self.curves:
                self.removeItem(c)
            self.legend.clear()
            self.curves = [self.plot(pen=pg.mkPen(LAYER_COLORS[i % len(LAYER_COLORS)],
                                                  width=1.5), name=n)
                           for i, n in enumerate(names)]
        for c, y in zip(self.curves, curves):
            y = np.maximum(np.asarray(y, dtype=float), 1e-12)
            c.setData(np.arange(1, len(y) + 1), y)
