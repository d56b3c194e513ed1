"""Sequence workbench: train a PV-RNN, run online error regression, scrub the result.

Left: data, configuration (TOML, editable), error-regression settings and actions.
Right: training curves (loss, KL per layer; live while training), one plot per channel
(observed, the window's reconstruction, the prediction fan H steps ahead), KL per layer
and the latency of each step. A slider and play/pause drive one shared
:class:`gui.models.Timeline`; every plot's cursor follows it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QScrollArea,
                               QSpinBox, QSplitter, QVBoxLayout, QWidget)

from engine.jobs import InputError
from gui.models import Timeline
from gui.viewers.timeseries import ChannelPlot, HistoryPlot, TracePlot
from gui.viewers.timeline_bar import TimelineBar
from gui.workbenches.base import Workbench

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "resources"
BUNDLED = {
    "Synthetic PFSM patterns": (RES / "pvrnn" / "synthetic_train.npy",
                                RES / "pvrnn" / "synthetic_test.npy"),
    "BasicMotions (smartwatch)": (RES / "basicmotions" / "train.npy",
                                  RES / "basicmotions" / "test.npy"),
}
MAX_CHANNELS = 6
PLAY_INTERVAL_MS = 80


class SequenceWorkbench(Workbench):
    title = "Sequence"

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.timeline = Timeline(1)
        self.train_data = None   # (X (N, T, D), lengths, name)
        self.test_data = None
        self.checkpoint = None   # dict as saved by engine.pvrnn.train
        self.result = None       # dict as returned by error_regression / PRED.npz
        self._live: list = []    # (epoch, loss, rec, kls) appended by the training thread
        self._build()
        self.timeline.changed.connect(self._on_time)
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(250)
        self._live_timer.timeout.connect(self._draw_live)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        from engine.pvrnn.config import Config

        left = QWidget()
        lv = QVBoxLayout(left)
        data_box = QGroupBox("Data")
        dv = QVBoxLayout(data_box)
        self.bundled = QComboBox()
        self.bundled.addItems(list(BUNDLED))
        load_bundled = QPushButton("Use bundled set")
        load_bundled.clicked.connect(lambda: self.load_bundled(self.bundled.currentText()))
        open_btn = QPushButton("Open data file (.npy / .csv)...")
        open_btn.clicked.connect(self._open_data_dialog)
        self.data_label = QLabel("no data")
        self.data_label.setWordWrap(True)
        for w in (self.bundled, load_bundled, open_btn, self.data_label):
            dv.addWidget(w)
        lv.addWidget(data_box)

        cfg_box = QGroupBox("Configuration (TOML)")
        cv = QVBoxLayout(cfg_box)
        self.config_edit = QPlainTextEdit(Config().to_toml())
        self.config_edit.setMinimumHeight(160)
        font = self.config_edit.font()
        font.setFamily("monospace")
        font.setPointSize(8)
        self.config_edit.setFont(font)
        cv.addWidget(self.config_edit)
        row = QHBoxLayout()
        self.train_btn = QPushButton("Train")
        self.train_btn.clicked.connect(self.start_training)
        defaults = QPushButton("Defaults")
        defaults.clicked.connect(lambda: self.config_edit.setPlainText(Config().to_toml()))
        row.addWidget(self.train_btn)
        row.addWidget(defaults)
        cv.addLayout(row)
        row = QHBoxLayout()
        load_model = QPushButton("Load model...")
        load_model.clicked.connect(self._open_model_dialog)
        self.save_btn = QPushButton("Save model...")
        self.save_btn.clicked.connect(self._save_model_dialog)
        row.addWidget(load_model)
        row.addWidget(self.save_btn)
        cv.addLayout(row)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        cv.addWidget(self.model_label)
        lv.addWidget(cfg_box)

        er_box = QGroupBox("Error regression")
        form = QFormLayout(er_box)
        self.window_spin = _spin(1, 500, 15)
        self.iter_spin = _spin(0, 1000, 15)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(3)
        self.lr_spin.setRange(0.001, 10.0)
        self.lr_spin.setSingleStep(0.01)
        self.lr_spin.setValue(0.1)
        self.horizon_spin = _spin(1, 200, 10)
        form.addRow("window", self.window_spin)
        form.addRow("iterations", self.iter_spin)
        form.addRow("lr", self.lr_spin)
        form.addRow("horizon", self.horizon_spin)
        self.er_btn = QPushButton("Run error regression")
        self.er_btn.clicked.connect(self.start_er)
        export_btn = QPushButton("Export predictions...")
        export_btn.clicked.connect(self.export)
        form.addRow(self.er_btn)
        form.addRow(export_btn)
        self.seq_spin = _spin(0, 0, 0)
        self.seq_spin.valueChanged.connect(lambda _: self._show_result())
        form.addRow("sequence", self.seq_spin)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        form.addRow(self.summary)
        lv.addWidget(er_box)
        lv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(290)

        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        self.loss_plot = HistoryPlot("loss / reconstruction")
        self.kl_hist_plot = HistoryPlot("KL per z unit")
        for p in (self.loss_plot, self.kl_hist_plot):
            p.setMaximumHeight(170)
            top.addWidget(p)
        rv.addLayout(top)
        self.channel_box = QVBoxLayout()
        self.channel_box.setSpacing(2)
        self.channel_plots: list[ChannelPlot] = []
        rv.addLayout(self.channel_box, 4)
        bottom = QHBoxLayout()
        self.kl_plot = TracePlot("KL at step t")
        self.lat_plot = TracePlot("latency (ms)")
        for p in (self.kl_plot, self.lat_plot):
            p.setMaximumHeight(150)
            bottom.addWidget(p)
        rv.addLayout(bottom, 1)
        self.scrub = TimelineBar(self.timeline, PLAY_INTERVAL_MS)
        self.play_btn, self.slider, self.time_label = (self.scrub.play_button, self.scrub.slider,
                                                       self.scrub.label)
        rv.addWidget(self.scrub)
        legend = QLabel("<span style='color:#9e9e9e'>observed</span> &nbsp; "
                        "<span style='color:#66bb6a'>window reconstruction</span> &nbsp; "
                        "<span style='color:#ff9800'>prediction fan (made at the cursor; "
                        "fainter: the steps before)</span> &nbsp; "
                        "<span style='color:#ffeb3b'>cursor</span>")
        rv.addWidget(legend)

        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 1100])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(split)

    # ------------------------------------------------------------------ data and model
    def load_bundled(self, name: str) -> None:
        train_path, test_path = BUNDLED[name]
        self.bundled.setCurrentText(name)
        self._load_bundled_now(train_path, test_path, name)

    def _load_bundled_now(self, train_path, test_path, name, then=None) -> bool:
        """Bundled sets are small .npy files (milliseconds): load them here, not as a job,
        so the demo shows at once instead of queueing behind the other workbenches' jobs."""
        try:
            res = _load_pair(train_path, test_path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        self._data_loaded(res, test_path, name, then)
        return True

    def set_data(self, train_path, test_path=None, name=None, then=None) -> bool:
        """Load the sequences in a job (CSV parsing can be slow); ``then()`` runs after a
        successful load. Returns whether the job started; errors arrive as one sentence."""
        name = name or Path(train_path).name
        job = self.jobs.start("Loading sequences", _load_pair, train_path, test_path,
                              on_done=lambda res: self._data_loaded(res, test_path, name, then))
        return job is not None

    def _data_loaded(self, res, test_path, name, then=None) -> None:
        (X, lengths), test = res
        self.train_data = (X, lengths, name)
        self.test_data = (test[0], test[1], name + (" (test split)" if test_path else ""))
        self.data_label.setText(
            f"{name}: training {X.shape[0]} sequences x up to {X.shape[1]} steps x "
            f"{X.shape[2]} channels; error regression on {test[0].shape[0]} sequences"
            + (" (the held-out split)" if test_path else " (the same file)"))
        self.readout.emit(f"data: {name}")
        if then is not None:
            then()

    def _open_data_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open sequences", "",
                                              "Sequences (*.npy *.csv);;All files (*)")
        if path:
            self.open_paths([path], "sequences")

    def open_paths(self, paths: list[str], kind: str) -> None:
        for p in paths:
            if p.endswith(".pt"):
                self.load_model(p)
            elif p.endswith(".npz"):
                self.load_result(p)
            else:
                self.set_data(p)

    def _open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open PV-RNN model", "",
                                              "PV-RNN model (*.pt);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path) -> bool:
        from engine.pvrnn.train import load_checkpoint

        try:
            ck = load_checkpoint(path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        self._set_checkpoint(ck, Path(path).name)
        return True

    def _set_checkpoint(self, ck: dict, name: str) -> None:
        from engine.pvrnn.config import Config

        self.checkpoint = ck
        cfg = Config.from_dict(ck["config"])
        self.config_edit.setPlainText(cfg.to_toml())
        self.window_spin.setValue(cfg.er.window)
        self.iter_spin.setValue(cfg.er.iterations)
        self.lr_spin.setValue(cfg.er.lr)
        self.horizon_spin.setValue(cfg.er.horizon)
        h = ck["history"]
        self._draw_history(h["loss"].numpy(), h["rec"].numpy(), h["kl"].numpy())
        dims = ck["params"]["Wo"].shape[1]
        self.model_label.setText(f"model: {name}, {ck['epoch']} epochs"
                                 f"{'' if ck['finished'] else ' (unfinished)'}, {dims} channels, "
                                 + " / ".join(f"d{lay.d} z{lay.z} tau{lay.tau:g}"
                                              for lay in cfg.layers))

    def _save_model_dialog(self) -> None:
        if self.checkpoint is None:
            self.error.emit("There is no model to save yet: train or load one first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save PV-RNN model", "model.pt",
                                              "PV-RNN model (*.pt)")
        if path:
            self.save_model(path)

    def save_model(self, path) -> bool:
        from engine.pvrnn.train import save_checkpoint

        try:
            save_checkpoint(self.checkpoint, path)
        except OSError as err:
            self.error.emit(f"Cannot save the model to '{path}': {err.strerror or err}.")
            return False
        self.readout.emit(f"saved the model to {path}")
        return True

    # ------------------------------------------------------------------ training
    def current_config(self):
        import tomllib

        from engine.pvrnn.config import Config

        try:
            data = tomllib.loads(self.config_edit.toPlainText())
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"The configuration is not valid TOML: {err}.") from None
        return Config.from_dict(data, source="The configuration")

    def start_training(self) -> None:
        from engine.pvrnn.train import train

        if self.train_data is None:
            self.error.emit("Load data before training.")
            return
        try:
            cfg = self.current_config()
        except InputError as err:
            self.error.emit(str(err))
            return
        X, lengths, _ = self.train_data
        self._live = []
        self._live_layers = len(cfg.layers)
        job = self.jobs.start("Training PV-RNN", train, X, lengths, cfg, None,
                              on_epoch=lambda *a: self._live.append(a),
                              on_done=self._training_done,
                              on_cancelled=lambda: self._live_timer.stop())
        if job is not None:
            self._live_timer.start()

    def _draw_live(self) -> None:
        live = list(self._live)
        if not live:
            return
        arr = np.array([(e, lo, r) for e, lo, r, _ in live])
        kl = np.array([k for *_, k in live])
        self._draw_history(arr[:, 1], arr[:, 2], kl)

    def _draw_history(self, loss, rec, kl) -> None:
        kl = np.asarray(kl).reshape(len(loss), -1)
        self.loss_plot.set_curves([loss, rec], ["loss", "reconstruction"])
        self.kl_hist_plot.set_curves([kl[:, i] for i in range(kl.shape[1])],
                                     [f"layer {i + 1}" for i in range(kl.shape[1])])

    def _training_done(self, ck) -> None:
        self._live_timer.stop()
        self._set_checkpoint(ck, "trained here")
        self.readout.emit(f"trained {ck['epoch']} epochs: loss {ck['history']['loss'][-1]:.5f}")

    # ------------------------------------------------------------------ error regression
    def start_er(self) -> None:
        from engine.pvrnn.config import Config
        from engine.pvrnn.data import check_dim
        from engine.pvrnn.er import error_regression
        from engine.pvrnn.model import PVRNN

        if self.checkpoint is None or self.test_data is None:
            self.error.emit("Error regression needs a model and data: train or load a model, "
                            "and load data.")
            return
        ck = self.checkpoint
        cfg = Config.from_dict(ck["config"])
        model = PVRNN(cfg.layers, {k: v.numpy().astype(np.float64)
                                   for k, v in ck["params"].items()}, cfg.beta)
        X, lengths, name = self.test_data
        try:
            check_dim(X, model.dim, name, "in the workbench")
        except InputError as err:
            self.error.emit(str(err))
            return
        settings = dict(window=self.window_spin.value(), iterations=self.iter_spin.value(),
                        lr=self.lr_spin.value(), horizon=self.horizon_spin.value())
        self._er_settings = settings
        self.jobs.start("Error regression", error_regression, model, ck["scale_lo"].numpy(),
                        ck["scale_hi"].numpy(), X, lengths, on_done=self._er_done, **settings)

    def _er_done(self, res: dict) -> None:
        X, lengths, _ = self.test_data
        res = dict(res, lengths=lengths, **{k: np.asarray(v) for k, v in
                                            self._er_settings.items()})
        self.set_result(res)

    def load_result(self, path) -> bool:
        try:
            with np.load(path) as z:
                res = {k: z[k] for k in z.files}
        except Exception:
            self.error.emit(f"Prediction file '{path}' is not a readable .npz file.")
            return False
        if not {"observed", "predictions", "kl", "latency_ms"} <= set(res):
            self.error.emit(f"Prediction file '{path}' lacks the arrays written by "
                            "'pvrnn predict'.")
            return False
        self.set_result(res)
        return True

    def set_result(self, res: dict) -> None:
        self.result = res
        N, T, D = res["observed"].shape
        self.seq_spin.blockSignals(True)
        self.seq_spin.setRange(0, N - 1)
        self.seq_spin.blockSignals(False)
        while len(self.channel_plots) < min(D, MAX_CHANNELS):
            p = ChannelPlot(f"ch {len(self.channel_plots) + 1}")
            self.channel_plots.append(p)
            self.channel_box.addWidget(p)
        while len(self.channel_plots) > min(D, MAX_CHANNELS):
            self.channel_plots.pop().setParent(None)
        from engine.pvrnn.er import horizon_rmse, persistence

        lengths = res.get("lengths", np.full(N, T))
        err = horizon_rmse(res["observed"], res["predictions"])
        pers = horizon_rmse(res["observed"], persistence(res["observed"], lengths,
                                                          res["predictions"].shape[2]))
        lat = res["latency_ms"]
        self.summary.setText(
            f"{N} sequences; RMSE h=1: {err[0]:.3g} (persistence {pers[0]:.3g}), "
            f"h={len(err)}: {err[-1]:.3g} ({pers[-1]:.3g}); latency median "
            f"{np.nanmedian(lat):.1f} ms, p95 {np.nanpercentile(lat, 95):.1f} ms per step")
        self._show_result()

    def _show_result(self) -> None:
        res = self.result
        if res is None:
            return
        n = self.seq_spin.value()
        obs = res["observed"][n]
        length = int(np.isfinite(obs).all(-1).sum())
        for c, plot in enumerate(self.channel_plots):
            rec = res.get("reconstruction")
            plot.set_series(obs[:, c], res["predictions"][n, :, :, c],
                            None if rec is None else rec[n, :, :, c])
        L = res["kl"].shape[2]
        self.kl_plot.set_traces([res["kl"][n, :, l] for l in range(L)],
                                [f"layer {l + 1}" for l in range(L)])
        self.lat_plot.set_traces([res["latency_ms"][n]], ["per step"])
        self.timeline.set_length(max(1, length))
        self._on_time(self.timeline.index)

    def _on_time(self, t: int) -> None:
        for p in self.channel_plots + [self.kl_plot, self.lat_plot]:
            p.set_cursor(t)
        self.time_label.setText(f"t = {t} / {self.timeline.length - 1}")
        if self.result is not None:
            n = self.seq_spin.value()
            lat = self.result["latency_ms"][n, t]
            kl = self.result["kl"][n, t]
            self.readout.emit(f"sequence {n} step {t}: KL per layer "
                              + ", ".join(f"{k:.3g}" for k in kl) + f"; latency {lat:.1f} ms")

    def set_playing(self, on: bool) -> None:
        self.scrub.set_playing(on)

    # ------------------------------------------------------------------ hooks
    def export(self) -> None:
        if self.result is None:
            self.error.emit("There are no predictions to export yet: run error regression.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export predictions", "predictions.npz",
                                              "NumPy archive (*.npz)")
        if path:
            self.export_to(path)

    def export_to(self, path) -> bool:
        from db.atomic import write_npz

        try:
            write_npz(path, **{k: np.asarray(v) for k, v in self.result.items()})
        except OSError as err:
            self.error.emit(f"Cannot export the predictions to '{path}': {err.strerror or err}.")
            return False
        self.readout.emit(f"exported predictions to {path}")
        return True

    def load_demo(self) -> None:
        """The bundled synthetic set, the demo model and its precomputed ER run."""
        pv = RES / "pvrnn"
        name = "Synthetic PFSM patterns"

        def then() -> None:
            if (pv / "demo_model.pt").exists():
                self.load_model(pv / "demo_model.pt")
            if (pv / "demo_pred.npz").exists():
                self.load_result(pv / "demo_pred.npz")
                self.timeline.set_index(min(70, self.timeline.length - 1))

        self.bundled.setCurrentText(name)
        self._load_bundled_now(*BUNDLED[name], name, then=then)


def _load_pair(train_path, test_path, *, progress=None, cancel=None):
    """Job: ((X (N, T, D), lengths (N,)), test pair); the test pair is the training one
    when ``test_path`` is None."""
    from engine.jobs import CancelToken, Progress
    from engine.pvrnn.data import load_sequences

    progress = progress or Progress()
    cancel = cancel or CancelToken()

    progress.update(0.0, "reading the training sequences")
    train = load_sequences(train_path)
    cancel.check()
    progress.update(0.5, "reading the test sequences")
    test = load_sequences(test_path) if test_path else train
    progress.done()
    return train, test


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s
