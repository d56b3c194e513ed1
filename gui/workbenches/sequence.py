"""Sequence workbench: train a PV-RNN, run online error regression, scrub the result.

Left (panels in sequence_*_panel.py): data, configuration (TOML, editable) with Train /
Load / Save model, error-regression settings and actions. Right (sequence_plots.py):
training curves (live while training), one plot per channel (observed, the window's
reconstruction, the prediction fan H steps ahead), KL per layer and the latency of each
step, driven by one shared :class:`gui.models.Timeline`.

The workbench only wires panels to engine calls: engine.pvrnn.train (train,
load_checkpoint, model_from_checkpoint), engine.pvrnn.prediction (predict, Prediction).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QScrollArea, QSplitter, QVBoxLayout, QWidget

from engine.jobs import InputError
from gui.models import Timeline
from gui.save_dialog import save_to, save_with_dialog
from gui.workbenches.base import Workbench
from gui.workbenches.sequence_data_panel import DataPanel
from gui.workbenches.sequence_er_panel import ERPanel
from gui.workbenches.sequence_model_panel import ModelPanel
from gui.workbenches.sequence_plots import SequencePlots

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / "resources"
BUNDLED = {
    "Synthetic PFSM patterns": (RES / "pvrnn" / "synthetic_train.npy",
                                RES / "pvrnn" / "synthetic_test.npy"),
    "BasicMotions (smartwatch)": (RES / "basicmotions" / "train.npy",
                                  RES / "basicmotions" / "test.npy"),
}


class SequenceWorkbench(Workbench):
    title = "Sequence"

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.timeline = Timeline(1)
        self.train_data = None   # (X (N, T, D), lengths, name)
        self.test_data = None
        self.checkpoint = None   # dict as saved by engine.pvrnn.train
        self.result = None       # engine.pvrnn.prediction.Prediction
        self._live: list = []    # (epoch, loss, rec, kls) appended by the training thread
        self._build()
        self.timeline.changed.connect(self._on_time)
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(250)
        self._live_timer.timeout.connect(self._draw_live)

    def _build(self) -> None:
        self.data_panel = DataPanel(list(BUNDLED))
        self.data_panel.bundled_requested.connect(self.load_bundled)
        self.data_panel.file_chosen.connect(lambda p: self.open_paths([p], "sequences"))
        self.model_panel = ModelPanel()
        self.model_panel.train_requested.connect(self.start_training)
        self.model_panel.model_chosen.connect(self.load_model)
        self.model_panel.save_requested.connect(self._save_model_dialog)
        self.er_panel = ERPanel()
        self.er_panel.run_requested.connect(self.start_er)
        self.er_panel.export_requested.connect(self.export)
        self.er_panel.sequence_changed.connect(lambda _: self._show_result())
        left = QWidget()
        lv = QVBoxLayout(left)
        for panel in (self.data_panel, self.model_panel, self.er_panel):
            lv.addWidget(panel)
        lv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(290)
        self.plots = SequencePlots(self.timeline)
        split = QSplitter()
        split.addWidget(scroll)
        split.addWidget(self.plots)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 1100])
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(split)

    # ------------------------------------------------------------------ data
    def load_bundled(self, name: str) -> None:
        self.data_panel.bundled.setCurrentText(name)
        self._load_bundled_now(*BUNDLED[name], name)

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
        self.data_panel.show_data(name, X.shape, test[0].shape[0], bool(test_path))
        self.readout.emit(f"data: {name}")
        if then is not None:
            then()

    def open_paths(self, paths: list[str], kind: str) -> None:
        for p in paths:
            if p.endswith(".pt"):
                self.load_model(p)
            elif p.endswith(".npz"):
                self.load_result(p)
            else:
                self.set_data(p)

    # ------------------------------------------------------------------ model
    def load_model(self, path) -> bool:
        from engine.pvrnn.train import load_checkpoint

        try:
            ck = load_checkpoint(path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        return self._set_checkpoint(ck, Path(path).name)

    def _set_checkpoint(self, ck: dict, name: str) -> bool:
        from engine.pvrnn.train import model_from_checkpoint

        try:
            cfg = model_from_checkpoint(ck, name)[1]
        except InputError as err:
            self.error.emit(str(err))
            return False
        self.checkpoint = ck
        self.model_panel.show_model(ck, cfg, name)
        self.er_panel.show_settings(cfg.er)
        h = ck["history"]
        self.plots.draw_history(h["loss"].numpy(), h["rec"].numpy(), h["kl"].numpy())
        return True

    def _save_model_dialog(self) -> None:
        if self.checkpoint is None:
            self.error.emit("There is no model to save yet: train or load one first.")
            return
        save_with_dialog(self, "Save PV-RNN model", "model.pt", "PV-RNN model (*.pt)",
                         self._write_model, what="the model")

    def save_model(self, path) -> bool:
        return save_to(self, path, self._write_model, what="the model") is not None

    def _write_model(self, path) -> None:
        from engine.pvrnn.train import save_checkpoint

        save_checkpoint(self.checkpoint, path)

    # ------------------------------------------------------------------ training
    def start_training(self) -> None:
        from engine.pvrnn.train import train

        if self.train_data is None:
            self.error.emit("Load data before training.")
            return
        try:
            cfg = self.model_panel.config()
        except InputError as err:
            self.error.emit(str(err))
            return
        X, lengths, _ = self.train_data
        self._live = []
        job = self.jobs.start("Training PV-RNN", train, X, lengths, cfg, None,
                              on_epoch=lambda *a: self._live.append(a),
                              on_done=self._training_done,
                              on_cancelled=lambda: self._live_timer.stop())
        if job is not None:
            self._live_timer.start()

    def _draw_live(self) -> None:
        live = list(self._live)
        if live:
            self.plots.draw_history(np.array([x[1] for x in live]),
                                    np.array([x[2] for x in live]),
                                    np.array([x[3] for x in live]))

    def _training_done(self, ck) -> None:
        self._live_timer.stop()
        self._set_checkpoint(ck, "trained here")
        self.readout.emit(f"trained {ck['epoch']} epochs: loss {ck['history']['loss'][-1]:.5f}")

    # ------------------------------------------------------------------ error regression
    def start_er(self) -> None:
        from engine.pvrnn.data import check_dim
        from engine.pvrnn.prediction import predict

        if self.checkpoint is None or self.test_data is None:
            self.error.emit("Error regression needs a model and data: train or load a model, "
                            "and load data.")
            return
        X, lengths, name = self.test_data
        try:  # checked here too, so the message comes before any job starts
            check_dim(X, self.checkpoint["params"]["Wo"].shape[1], name, "in the workbench")
        except InputError as err:
            self.error.emit(str(err))
            return
        self.jobs.start("Error regression", predict, self.checkpoint, X, lengths,
                        self.er_panel.settings(), data_name=name,
                        model_name="in the workbench", on_done=self.set_result)

    def load_result(self, path) -> bool:
        from engine.pvrnn.prediction import Prediction

        try:
            self.set_result(Prediction.load(path))
        except InputError as err:
            self.error.emit(str(err))
            return False
        return True

    def set_result(self, pred) -> None:
        """Show a :class:`engine.pvrnn.prediction.Prediction`."""
        self.result = pred
        self.er_panel.set_sequences(pred.shape[0])
        self.er_panel.summary.setText(pred.summary())
        self._show_result()

    def _show_result(self) -> None:
        if self.result is not None:
            self.plots.show(self.result, self.er_panel.seq_spin.value())

    def _on_time(self, t: int) -> None:
        if self.result is not None:
            n = self.er_panel.seq_spin.value()
            lat = self.result.latency_ms[n, t]
            kl = self.result.kl[n, t]
            self.readout.emit(f"sequence {n} step {t}: KL per layer "
                              + ", ".join(f"{k:.3g}" for k in kl) + f"; latency {lat:.1f} ms")

    def set_playing(self, on: bool) -> None:
        self.plots.scrub.set_playing(on)

    # ------------------------------------------------------------------ hooks
    def export(self) -> None:
        if self.result is None:
            self.error.emit("There are no predictions to export yet: run error regression.")
            return
        save_with_dialog(self, "Export predictions", "predictions.npz",
                         "NumPy archive (*.npz)", self.result.save, what="the predictions")

    def export_to(self, path) -> bool:
        return save_to(self, path, self.result.save, what="the predictions") is not None

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

        self.data_panel.bundled.setCurrentText(name)
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
