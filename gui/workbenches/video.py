"""Video workbench: latent fractional-SDE video prediction with uncertainty.

Open a video (or a PRED.npz written by ``fsde predict``) or generate Stochastic Moving Digits;
train the model as a job with live ELBO, KL and Hurst plots; predict; ground truth, sample
mean, one sample and the per-pixel spread side by side, all driven by one shared
:class:`gui.models.Timeline` (slider, play/pause, and the PSNR plot's cursor line);
export the panels as MP4 or PNG frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QPushButton, QSpinBox, QSplitter, QVBoxLayout,
                               QWidget)

from gui.models import Timeline
from gui.viewers.frames import FramePanels
from gui.viewers.timeline_bar import TimelineBar
from gui.workbenches.base import Workbench

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "fsde"
DEMO_MODEL = RESOURCES / "demo_model.pt"
DEMO_CLIP = RESOURCES / "demo_clip.npz"
DEMO_PREDICTION = RESOURCES / "demo_prediction.npz"
MAX_FRAMES = 600  # frames read from an opened video (the clip is held in memory)
VIDEO_FILTER = ("Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.gif);;"
                "Clips and predictions (*.npz *.npy);;All files (*)")


def display_arrays(res: dict) -> dict:
    """From a prediction (``frames`` (N+M, ...), ``samples`` (S, M, ...), optional ``recon``
    (S, N, ...)) build the panel clips over all N+M frames: ``truth``, ``mean``, ``samples``
    (S, N+M, ...), ``std``. Without reconstructions the context shows the ground truth."""
    frames, samples = res["frames"], res["samples"]
    n_ctx = len(frames) - samples.shape[1]
    recon = res.get("recon")
    if recon is None or recon.shape[1] != n_ctx:
        recon = np.repeat(frames[None, :n_ctx], len(samples), axis=0)
    full = np.concatenate([recon, samples], axis=1)
    return {"truth": frames, "mean": full.mean(0), "samples": full, "std": full.std(0),
            "context": n_ctx}


class VideoWorkbench(Workbench):
    title = "Video"

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.timeline = Timeline(1)
        self.frames: np.ndarray | None = None  # the current clip (T, H, W[, 3])
        self.source: str = "moving-digits"  # training data: "moving-digits" or a video path
        self.clip_name = ""
        self.model = None
        self.model_path: Path | None = None
        self.result: dict | None = None  # last prediction (see display_arrays)
        self.shown: dict | None = None
        self._monitor: list = []
        self._digit_seed = 100
        self._build()
        self.timeline.changed.connect(self._on_time)
        self._poll = QTimer(self)
        self._poll.setInterval(250)
        self._poll.timeout.connect(self._update_training_plots)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        side = QWidget()
        side.setFixedWidth(270)
        sl = QVBoxLayout(side)

        data = QGroupBox("Data")
        dl = QVBoxLayout(data)
        self.open_button = QPushButton("Open video...")
        self.open_button.clicked.connect(self._open_video_dialog)
        row = QHBoxLayout()
        self.digits_spin = QSpinBox()
        self.digits_spin.setRange(1, 2)
        self.digits_spin.setPrefix("digits: ")
        self.generate_button = QPushButton("Moving digits")
        self.generate_button.setToolTip("Generate a held-out Stochastic Moving Digits clip")
        self.generate_button.clicked.connect(self.generate_digits)
        row.addWidget(self.generate_button)
        row.addWidget(self.digits_spin)
        self.clip_label = QLabel("no clip")
        self.clip_label.setWordWrap(True)
        dl.addWidget(self.open_button)
        dl.addLayout(row)
        dl.addWidget(self.clip_label)
        sl.addWidget(data)

        model = QGroupBox("Model")
        ml = QFormLayout(model)
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        self.open_model_button = QPushButton("Open model...")
        self.open_model_button.clicked.connect(self._open_model_dialog)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(10, 100000)
        self.steps_spin.setValue(1500)
        self.brownian_check = QCheckBox("Brownian baseline (H = 1/2)")
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a new model on the current data source as a job")
        self.train_button.clicked.connect(self._train_dialog)
        ml.addRow(self.model_label)
        ml.addRow(self.open_model_button)
        ml.addRow("Steps", self.steps_spin)
        ml.addRow(self.brownian_check)
        ml.addRow(self.train_button)
        sl.addWidget(model)

        fc = QGroupBox("Forecast")
        fl = QFormLayout(fc)
        self.context_spin, self.horizon_spin, self.samples_spin = QSpinBox(), QSpinBox(), QSpinBox()
        for spin, lo, hi, val in ((self.context_spin, 3, 200, 10), (self.horizon_spin, 1, 200, 10),
                                  (self.samples_spin, 1, 64, 8)):
            spin.setRange(lo, hi)
            spin.setValue(val)
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.predict)
        self.sample_spin = QSpinBox()
        self.sample_spin.setRange(0, 0)
        self.sample_spin.valueChanged.connect(lambda _v: self._show_result())
        fl.addRow("Context N", self.context_spin)
        fl.addRow("Horizon M", self.horizon_spin)
        fl.addRow("Samples S", self.samples_spin)
        fl.addRow(self.predict_button)
        fl.addRow("Shown sample", self.sample_spin)
        sl.addWidget(fc)

        ex = QGroupBox("Export")
        el = QVBoxLayout(ex)
        self.export_mp4_button = QPushButton("Export MP4...")
        self.export_mp4_button.clicked.connect(self.export)
        self.export_png_button = QPushButton("Export PNG frames...")
        self.export_png_button.clicked.connect(self._export_png_dialog)
        el.addWidget(self.export_mp4_button)
        el.addWidget(self.export_png_button)
        sl.addWidget(ex)
        sl.addStretch(1)

        # right: panels, timeline, plots
        self.panels = FramePanels(["ground truth", "sample mean", "sample 0",
                                   "per-pixel std"], self.timeline)
        self.scrub = TimelineBar(self.timeline, 200, label_width=190)
        self.play_button, self.slider, self.time_label = (
            self.scrub.play_button, self.scrub.slider, self.scrub.label)

        self.psnr_plot = pg.PlotWidget(title="PSNR of the sample mean over time")
        self.psnr_plot.setLabel("bottom", "frame")
        self.psnr_plot.setLabel("left", "PSNR", units="dB")
        self.psnr_plot.addLegend(offset=(10, -10))
        self.psnr_curve = self.psnr_plot.plot([], [], pen=pg.mkPen("#ff9a1a", width=2),
                                              symbol="o", symbolSize=5, name="model")
        self.copy_curve = self.psnr_plot.plot([], [], pen=pg.mkPen("#8888ff", width=1,
                                                                   style=Qt.DashLine),
                                              name="copy last frame")
        self.context_region = pg.LinearRegionItem((0, 1), movable=False,
                                                  brush=pg.mkBrush(120, 120, 120, 50))
        self.psnr_plot.addItem(self.context_region)
        self.cursor_line = pg.InfiniteLine(0, angle=90, movable=True,
                                           pen=pg.mkPen("#ffff55", width=2))
        self.cursor_line.sigPositionChanged.connect(
            lambda line: self.timeline.set_index(int(round(line.value()))))
        self.psnr_plot.addItem(self.cursor_line)

        self.train_plots = pg.GraphicsLayoutWidget()
        self.elbo_plot = self.train_plots.addPlot(row=0, col=0, title="ELBO (nats / clip)")
        self.kl_plot = self.train_plots.addPlot(row=0, col=1, title="KL (nats / clip)")
        self.h_plot = self.train_plots.addPlot(row=0, col=2, title="Hurst index H")
        self.elbo_curve = self.elbo_plot.plot([], [], pen=pg.mkPen("#55ccff"))
        self.kl_curve = self.kl_plot.plot([], [], pen=pg.mkPen("#ff7777"))
        self.h_curve = self.h_plot.plot([], [], pen=pg.mkPen("#77ff77", width=2))
        for p in (self.elbo_plot, self.kl_plot, self.h_plot):
            p.setLabel("bottom", "step")

        right = QSplitter(Qt.Vertical)
        top = QWidget()
        tv = QVBoxLayout(top)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.addWidget(self.panels, 1)
        tv.addWidget(self.scrub)
        right.addWidget(top)
        right.addWidget(self.psnr_plot)
        right.addWidget(self.train_plots)
        right.setSizes([430, 230, 200])

        layout = QHBoxLayout(self)
        layout.addWidget(side)
        layout.addWidget(right, 1)

    # ------------------------------------------------------------------ data and model
    def load_demo(self) -> None:
        """Show the bundled demo prediction (precomputed by resources/train_fsde_demo.py)."""
        if DEMO_PREDICTION.is_file():
            self.show_prediction_file(DEMO_PREDICTION, name="bundled demo clip")
        if DEMO_MODEL.is_file():
            self.model_path = DEMO_MODEL
            self.model_label.setText(f"{DEMO_MODEL.name} (bundled demo; loaded on first use)")

    def set_clip(self, frames: np.ndarray, name: str, source: str) -> None:
        self.frames, self.clip_name, self.source = frames, name, source
        kind = "colour" if frames.ndim == 4 else "grey"
        self.clip_label.setText(f"{name}: {len(frames)} frames, {frames.shape[1]} px, {kind}")
        self.result = None
        self.shown = {"truth": frames, "context": len(frames)}
        self._set_length(len(frames))
        self.panels.set_clip(0, frames)
        for i in (1, 2, 3):
            self.panels.set_clip(i, None)
        self.psnr_curve.setData([], [])
        self.copy_curve.setData([], [])
        self.readout.emit(f"{name}: {len(frames)} frames")

    def generate_digits(self) -> None:
        from engine.fsde.video_data import moving_digits

        size = self._model_config()["size"] if self._model_config() else 32
        n = self.context_spin.value() + self.horizon_spin.value()
        self._digit_seed += 1
        clip = moving_digits(1, n, size, self.digits_spin.value(), seed=self._digit_seed,
                             split="test").frames[0]
        self.set_clip(clip, f"moving digits (seed {self._digit_seed})", "moving-digits")
        if self.model_path is not None:
            self.predict()

    def open_video(self, path: str | Path):
        """Show a prediction file at once, or read a video (at most ``MAX_FRAMES`` frames,
        fitted to the model's size) as a job: returns the job, True/False for a prediction."""
        from engine.fsde.video_data import load_video

        path = Path(path)
        if path.suffix == ".npz" and self._is_prediction(path):
            return self.show_prediction_file(path)
        cfg = self._model_config() or {"size": 32, "channels": 1}

        def job(progress, cancel):
            progress.update(0.0, f"reading {path.name}")
            frames = load_video(path, size=cfg["size"], color=cfg["channels"] == 3,
                                max_frames=MAX_FRAMES, cancel=cancel)
            progress.done(f"{len(frames)} frames")
            return frames

        return self.jobs.start("Open video", job, on_failed=self.error.emit,
                               on_done=lambda frames: self.set_clip(frames, path.name, str(path)))

    @staticmethod
    def _is_prediction(path: Path) -> bool:
        try:
            with np.load(path) as z:
                return "samples" in z and "frames" in z
        except Exception:
            return False

    def show_prediction_file(self, path: str | Path, name: str | None = None) -> bool:
        """Show a PRED.npz (``frames``, ``samples``[, ``recon``]) from ``fsde predict``."""
        path = Path(path)
        try:
            with np.load(path) as z:
                res = {k: np.asarray(z[k]) for k in z.files}
        except Exception:
            self.error.emit(f"The prediction '{path}' could not be read.")
            return False
        self.frames, self.clip_name = res["frames"], name or path.name
        self.clip_label.setText(f"{self.clip_name}: {len(self.frames)} frames")
        self.show_result(res)
        if "history_elbo" in res:  # the demo also carries its training curves
            steps = np.arange(1, len(res["history_elbo"]) + 1)
            for curve, key in ((self.elbo_curve, "elbo"), (self.kl_curve, "kl"),
                               (self.h_curve, "hurst")):
                curve.setData(steps, res[f"history_{key}"])
        return True

    def load_model(self, path: str | Path) -> bool:
        from engine.fsde.video_model import load_model
        from engine.jobs import InputError

        try:
            self.model = load_model(path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        self.model_path = Path(path)
        cfg = self.model.config
        kind = "Brownian" if cfg["brownian"] else f"fractional, H = {self.model.hurst:.3f}"
        self.model_label.setText(f"{self.model_path.name}: {kind}, {cfg['size']} px, "
                                 f"latent {cfg['latent_dim']}")
        return True

    def _model_config(self) -> dict | None:
        if self.model is None and self.model_path is not None:
            self.load_model(self.model_path)
        return self.model.config if self.model is not None else None

    def open_paths(self, paths: list[str], kind: str) -> None:
        for p in paths:
            if kind == "model" or str(p).endswith(".pt"):
                self.load_model(p)
            else:
                self.open_video(p)

    def _open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_video(path)

    def _open_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "", "Models (*.pt)")
        if path:
            self.load_model(path)

    # ------------------------------------------------------------------ jobs
    def _train_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Train into model file", "video_model.pt",
                                              "Models (*.pt)")
        if path:
            self.train(path)

    def train(self, out: str | Path, steps: int | None = None, model_overrides: dict | None = None,
              train_overrides: dict | None = None):
        """Start training on the current data source as a job; live plots poll the monitor."""
        from engine.fsde.video_train import train_video

        cfg = {"brownian": self.brownian_check.isChecked(), **(model_overrides or {})}
        train = {"steps": steps or self.steps_spin.value(), "n_digits": self.digits_spin.value(),
                 **(train_overrides or {})}
        self._monitor = []
        for c in (self.elbo_curve, self.kl_curve, self.h_curve):
            c.setData([], [])
        job = self.jobs.start("Train video model", train_video, self.source, Path(out), cfg,
                              train, monitor=self._monitor,
                              on_done=lambda _h, p=Path(out): self._trained(p),
                              on_cancelled=self._update_training_plots)
        if job is not None:
            self._poll.start()
            job.finished.connect(self._poll.stop)
        return job

    def _trained(self, path: Path) -> None:
        self._update_training_plots()
        if self.load_model(path):
            self.readout.emit(f"trained {path.name}: H = {self.model.hurst:.3f}")
            if self.frames is not None:
                self._after_job(self.predict)

    def _after_job(self, fn) -> None:
        """Run ``fn`` once the job runner is free (a job's on_done runs before it is)."""
        if not self.jobs.busy:
            fn()
            return

        def once():
            self.jobs.ended.disconnect(once)
            fn()

        self.jobs.ended.connect(once)

    def _update_training_plots(self) -> None:
        recs = list(self._monitor)
        if not recs:
            return
        steps = np.array([r["step"] for r in recs])
        self.elbo_curve.setData(steps, np.array([r["elbo"] for r in recs]))
        self.kl_curve.setData(steps, np.array([r["kl"] for r in recs]))
        self.h_curve.setData(steps, np.array([r["hurst"] for r in recs]))
        r = recs[-1]
        self.readout.emit(f"step {r['step']}: ELBO {r['elbo']:.0f}, KL {r['kl']:.1f}, "
                          f"H {r['hurst']:.3f}, {r['frames_per_s']:.0f} frames/s")

    def predict(self):
        """Forecast the current clip with the current model as a (short) job."""
        if self.frames is None:
            self.error.emit("Open a video or generate moving digits first.")
            return None
        if self._model_config() is None:
            self.error.emit("Open or train a model first.")
            return None
        from engine.fsde.video_model import predict_clip

        n, m, s = self.context_spin.value(), self.horizon_spin.value(), self.samples_spin.value()
        if len(self.frames) < n + m:
            self.error.emit(f"The clip '{self.clip_name}' has {len(self.frames)} frames but "
                            f"{n + m} are needed (context + horizon).")
            return None
        frames = self._frames_for_model(n + m)

        def job(progress, cancel):
            progress.update(0.1, f"sampling {s} forecasts")
            cancel.check()
            res = predict_clip(self.model, frames, n, m, s)
            progress.done()
            return res

        return self.jobs.start("Predict", job, on_done=self.show_result)

    def _frames_for_model(self, n_frames: int) -> np.ndarray:
        """The first ``n_frames`` of the current clip as the model wants them:
        (n_frames, size, size[, 3]) float32 in [0, 1]."""
        from engine.fsde.video_data import fit_frames

        cfg = self.model.config
        return fit_frames(self.frames[:n_frames], cfg["size"], cfg["channels"] == 3)

    # ------------------------------------------------------------------ display
    def show_result(self, res: dict) -> None:
        from engine.fsde.video_data import psnr

        self.result = res
        self.shown = display_arrays(res)
        n_ctx, total = self.shown["context"], len(self.shown["truth"])
        self.sample_spin.setRange(0, len(self.shown["samples"]) - 1)
        self._set_length(total)
        self._show_result()
        truth = self.shown["truth"]
        t = np.arange(n_ctx, total)
        p = res["psnr"] if "psnr" in res else psnr(self.shown["mean"][n_ctx:], truth[n_ctx:])
        copy = psnr(np.repeat(truth[n_ctx - 1:n_ctx], total - n_ctx, axis=0), truth[n_ctx:])
        self.psnr_curve.setData(t, np.asarray(p, float))
        self.copy_curve.setData(t, np.minimum(copy, 60.0))
        self.context_region.setRegion((-0.5, n_ctx - 0.5))
        self.psnr_plot.setXRange(-0.5, total - 0.5, padding=0.02)
        self.timeline.set_index(n_ctx, force=True)
        self.readout.emit(f"{self.clip_name}: context {n_ctx}, horizon {total - n_ctx}, "
                          f"mean PSNR {np.mean(p):.2f} dB")

    def _show_result(self) -> None:
        if not self.shown or "mean" not in self.shown:
            return
        k = min(self.sample_spin.value(), len(self.shown["samples"]) - 1)
        self.panels.set_clip(0, self.shown["truth"])
        self.panels.set_clip(1, self.shown["mean"])
        self.panels.set_clip(2, self.shown["samples"][k])
        self.panels.set_title(2, f"sample {k}")
        std = self.shown["std"]
        self.panels.set_clip(3, std if std.ndim == 3 else std.mean(-1), levels=(0.0, 0.5),
                             cmap="inferno")

    def _set_length(self, n: int) -> None:
        self.timeline.set_length(n)
        self._on_time(self.timeline.index)

    def _on_time(self, index: int) -> None:
        if int(round(self.cursor_line.value())) != index:
            self.cursor_line.blockSignals(True)
            self.cursor_line.setValue(index)
            self.cursor_line.blockSignals(False)
        n_ctx = self.shown["context"] if self.shown else 0
        phase = "context" if index < n_ctx else "predicted"
        text = f"frame {index + 1} / {self.timeline.length} ({phase})"
        if self.result is not None and index >= n_ctx and "psnr" in self.result:
            text += f"  PSNR {float(self.result['psnr'][index - n_ctx]):.1f} dB"
        self.time_label.setText(text)

    def set_playing(self, on: bool) -> None:
        self.scrub.set_playing(on)

    # ------------------------------------------------------------------ export
    def panel_images(self) -> np.ndarray:
        """uint8 RGB panels (T, H', W', 3) of the current prediction (see video_data)."""
        from engine.fsde.video_data import panel_frames

        d = self.shown
        k = self.sample_spin.value()
        return panel_frames(d["truth"], d["mean"], d["samples"][k], d["std"], d["context"])

    def export(self) -> None:
        if not self.shown or "mean" not in self.shown:
            self.error.emit("Predict first: there is no prediction to export.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export MP4", "prediction.mp4",
                                              "MP4 video (*.mp4)")
        if path:
            self.export_mp4(path)

    def _write_failed(self, path, err: OSError) -> None:
        self.error.emit(f"Could not write '{path}' ({err.strerror or err}).")

    def export_mp4(self, path: str | Path) -> bool:
        from engine.fsde.video_data import write_mp4

        try:
            write_mp4(path, self.panel_images())
        except OSError as err:
            self._write_failed(path, err)
            return False
        self.readout.emit(f"wrote {path}")
        return True

    def _export_png_dialog(self) -> None:
        if not self.shown or "mean" not in self.shown:
            self.error.emit("Predict first: there is no prediction to export.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export PNG frames into folder")
        if folder:
            self.export_pngs(folder)

    def export_pngs(self, folder: str | Path) -> list[Path]:
        from engine.fsde.video_data import write_png

        folder = Path(folder)
        paths = []
        for t, img in enumerate(self.panel_images()):
            p = folder / f"frame_{t:03d}.png"
            try:
                write_png(p, img)
            except OSError as err:
                self._write_failed(p, err)
                return paths
            paths.append(p)
        self.readout.emit(f"wrote {len(paths)} PNG frames into {folder}")
        return paths
