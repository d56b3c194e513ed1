"""Video workbench: latent fractional-SDE video prediction with uncertainty.

Open a video (or a PRED.npz written by ``fsde predict``) or generate Stochastic Moving Digits;
train the model as a job with live plots of the forecast loss, the ELBO and H; predict. The
forecast is an engine :class:`engine.fsde.prediction.Prediction` (mean, std and every metric
computed there); the frames are drawn by the one renderer, engine/fsde/render.py (ground truth
| sample mean | one sample | per-pixel std, predicted frames marked), scaled to fill the
canvas, and Export writes the same images. One :class:`gui.models.Timeline` drives the canvas,
the scrub bar and the cursors of the PSNR and SSIM plots. Side panels:
gui/workbenches/video_panels.py; plots: gui/workbenches/video_plots.py; export:
gui/workbenches/video_export.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QSplitter, QVBoxLayout,
                               QWidget)

from gui.models import Timeline
from gui.viewers.frames import FrameCanvas
from gui.viewers.timeline_bar import TimelineBar
from gui.workbenches.base import Workbench
from gui.workbenches.video_export import ExportMixin
from gui.workbenches.video_panels import DataPanel, ExportPanel, ForecastPanel, ModelPanel
from gui.workbenches.video_plots import MetricsPlots, TrainingPlots

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "fsde"
DEMO_MODEL = RESOURCES / "demo_model.pt"
DEMO_PREDICTION = RESOURCES / "demo_prediction.npz"
MAX_FRAMES = 600  # frames read from an opened video (the clip is held in memory)
VIDEO_FILTER = ("Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.gif);;"
                "Clips and predictions (*.npz *.npy);;All files (*)")
PREDICTED_STYLE = "color: #ff8c14; font-weight: bold;"


class VideoWorkbench(ExportMixin, Workbench):
    title = "Video"

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.timeline = Timeline(1)
        self.clip = None  # engine.fsde.prediction.Clip: the current video
        self.clip_name = ""
        self.source: str = "moving-digits"  # training data: "moving-digits" or a video path
        self.model = None
        self.model_path: Path | None = None
        self.result = None  # the last Prediction
        self._monitor: list = []
        self._digit_seed = 100
        self._build()
        self.timeline.changed.connect(self._on_time)
        self._poll = QTimer(self)
        self._poll.setInterval(250)
        self._poll.timeout.connect(self._update_training_plots)

    @property
    def frames(self) -> np.ndarray | None:
        return None if self.clip is None else self.clip.frames

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.data_panel, self.model_panel = DataPanel(), ModelPanel()
        self.forecast_panel, self.export_panel = ForecastPanel(), ExportPanel()
        side = QWidget()
        side.setFixedWidth(270)
        sl = QVBoxLayout(side)
        for panel in (self.data_panel, self.model_panel, self.forecast_panel,
                      self.export_panel):
            sl.addWidget(panel)
        sl.addStretch(1)
        d, m, f, e = self.data_panel, self.model_panel, self.forecast_panel, self.export_panel
        self.digits_spin, self.clip_label = d.digits_spin, d.clip_label
        self.model_label, self.steps_spin, self.brownian_check = (
            m.model_label, m.steps_spin, m.brownian_check)
        self.context_spin, self.horizon_spin, self.samples_spin, self.sample_spin = (
            f.context_spin, f.horizon_spin, f.samples_spin, f.sample_spin)
        d.open_button.clicked.connect(self._open_video_dialog)
        d.generate_button.clicked.connect(self.generate_digits)
        m.open_model_button.clicked.connect(self._open_model_dialog)
        m.train_button.clicked.connect(self._train_dialog)
        f.predict_button.clicked.connect(self.predict)
        f.sample_spin.valueChanged.connect(lambda _v: self._show_frames())
        f.smooth_check.toggled.connect(lambda on: self.canvas.set_smooth(on))
        e.export_mp4_button.clicked.connect(self.export)
        e.export_png_button.clicked.connect(self._export_png_dialog)

        self.canvas = FrameCanvas(self.timeline)
        self.resize_label = QLabel("")
        self.resize_label.setWordWrap(True)
        self.resize_label.setStyleSheet("color: #ffb347;")
        self.resize_label.hide()
        self.scrub = TimelineBar(self.timeline, 200, label_width=260)
        self.play_button, self.slider, self.time_label = (
            self.scrub.play_button, self.scrub.slider, self.scrub.label)
        self.metrics = MetricsPlots(self.timeline)
        self.cursor_line = self.metrics.cursors[0]
        self.psnr_curve = self.metrics.curves["psnr", "model"]
        self.train_plots = TrainingPlots()

        top = QWidget()
        tv = QVBoxLayout(top)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.addWidget(self.resize_label)
        tv.addWidget(self.canvas, 1)
        tv.addWidget(self.scrub)
        right = QSplitter(Qt.Vertical)
        for w in (top, self.metrics, self.train_plots):
            right.addWidget(w)
        right.setStretchFactor(0, 3)
        right.setSizes([470, 220, 170])
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

    def set_clip(self, clip, name: str, source: str) -> None:
        """Show a clip (a prediction.Clip, or frames (T, H, W[, 3]) in [0, 1])."""
        from engine.fsde.prediction import Clip
        from engine.fsde.render import render_clip_frame

        clip = clip if isinstance(clip, Clip) else Clip(np.asarray(clip, np.float32))
        self.clip, self.clip_name, self.source, self.result = clip, name, source, None
        frames = clip.frames
        kind = "colour" if frames.ndim == 4 else "grey"
        self.clip_label.setText(f"{name}: {len(frames)} frames, {frames.shape[1]} x "
                                f"{frames.shape[2]} px, {kind}")
        self._show_resize(clip.resized, clip.resize_reason)
        self.metrics.clear()
        self.timeline.set_length(len(frames))
        h, w = frames.shape[1:3]
        self.canvas.set_source(lambda t, s, smooth: render_clip_frame(frames, t, s, smooth),
                               self._fit(h, w, 1))
        self._on_time(self.timeline.index)
        self.readout.emit(f"{name}: {len(frames)} frames")

    @staticmethod
    def _fit(h: int, w: int, n: int):
        from engine.fsde.render import fit_scale

        return lambda box_h, box_w: fit_scale(h, w, box_h, box_w, n)

    def _show_resize(self, resized: bool, reason: str) -> None:
        self.resize_label.setText(f"Resized: {reason}." if resized else "")
        self.resize_label.setVisible(bool(resized))

    def generate_digits(self) -> None:
        from engine.fsde.video_data import moving_digits

        cfg = self._model_config()
        size = cfg["size"] if cfg and cfg["size"] in (32, 64) else 64
        n = self.context_spin.value() + self.horizon_spin.value()
        self._digit_seed += 1
        clip = moving_digits(1, n, size, self.digits_spin.value(), seed=self._digit_seed,
                             split="test").frames[0]
        self.set_clip(clip, f"moving digits (seed {self._digit_seed})", "moving-digits")
        if self.model_path is not None:
            self.predict()

    def open_video(self, path: str | Path):
        """Show a prediction file at once, or read a video (at most ``MAX_FRAMES`` frames)
        as a job: returns the job, True/False for a prediction file."""
        from engine.fsde.prediction import is_prediction_file, read_clip

        path = Path(path)
        if path.suffix == ".npz" and is_prediction_file(path):
            return self.show_prediction_file(path)
        cfg = self._model_config() or {"size": 32, "channels": 1}

        def job(progress, cancel):
            progress.update(0.0, f"reading {path.name}")
            clip = read_clip(path, cfg, max_frames=MAX_FRAMES, cancel=cancel)
            progress.done(f"{len(clip.frames)} frames")
            return clip

        return self.jobs.start("Open video", job, on_failed=self.error.emit,
                               on_done=lambda clip: self.set_clip(clip, path.name, str(path)))

    def show_prediction_file(self, path: str | Path, name: str | None = None) -> bool:
        """Show a PRED.npz from ``fsde predict`` (or the bundled demo)."""
        from engine.fsde.prediction import Clip, Prediction
        from engine.jobs import InputError

        path = Path(path)
        try:
            pred = Prediction.load(path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        self.clip = Clip(pred.frames, pred.resized, pred.resize_reason, pred.source_size)
        self.clip_name = name or path.name
        self.clip_label.setText(f"{self.clip_name}: {pred.n_frames} frames, "
                                f"{pred.frames.shape[1]} x {pred.frames.shape[2]} px")
        self.show_result(pred)
        h = pred.history  # the demo carries its training curves
        if h:
            self.train_plots.set_history(np.arange(1, len(next(iter(h.values()))) + 1), h)
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
        self.model_label.setText(f"{self.model_path.name}: {kind}, trained at {cfg['size']} px")
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
        """Start training on the current data source as a job; live plots poll the monitor.
        The file dialog already asked before replacing ``out``, so a model of another run
        there is replaced (force); the same run resumes."""
        from engine.fsde.video_cli import train_checked

        cfg = {"brownian": self.brownian_check.isChecked(), **(model_overrides or {})}
        train = {"steps": steps or self.steps_spin.value(), "n_digits": self.digits_spin.value(),
                 **(train_overrides or {})}
        self._monitor = []
        self.train_plots.clear()
        job = self.jobs.start("Train video model", train_checked, self.source, Path(out), cfg,
                              train, True, monitor=self._monitor,
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
            if self.clip is not None:
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
        col = {k: np.array([r[k] for r in recs]) for k in recs[0]}
        self.train_plots.set_history(col["step"], col)
        r = recs[-1]
        self.readout.emit(f"step {r['step']}: forecast loss {r['forecast']:.3f}, ELBO "
                          f"{r['elbo']:.0f}, H {r['hurst']:.3f}, {r['frames_per_s']:.0f} frames/s")

    def predict(self):
        """Forecast the current clip with the current model as a (short) job."""
        if self.clip is None:
            self.error.emit("Open a video or generate moving digits first.")
            return None
        if self._model_config() is None:
            self.error.emit("Open or train a model first.")
            return None
        from engine.fsde.prediction import Clip, forecast

        n, m, s = self.context_spin.value(), self.horizon_spin.value(), self.samples_spin.value()
        if len(self.clip.frames) < n + m:
            self.error.emit(f"The clip '{self.clip_name}' has {len(self.clip.frames)} frames "
                            f"but {n + m} are needed (context + horizon).")
            return None
        c = self.clip
        clip = Clip(c.frames[:n + m], c.resized, c.resize_reason, c.source_size)
        model, settings = self.model, {"model": str(self.model_path), "video": self.clip_name}

        def job(progress, cancel):
            progress.update(0.1, f"sampling {s} forecasts")
            cancel.check()
            pred = forecast(model, clip, n, m, s, settings=settings)
            progress.done()
            return pred

        return self.jobs.start("Predict", job, on_done=self.show_result,
                               on_failed=self.error.emit)

    # ------------------------------------------------------------------ display
    def show_result(self, pred) -> None:
        """Show a :class:`engine.fsde.prediction.Prediction`."""
        self.result = pred
        self.sample_spin.setRange(0, len(pred.samples) - 1)
        self._show_resize(pred.resized, pred.resize_reason)
        self.timeline.set_length(pred.n_frames)
        self.metrics.set_prediction(pred)
        self._show_frames()
        self.timeline.set_index(pred.context, force=True)
        from engine.fsde.prediction import LABELS

        s = pred.summary()["psnr"]
        best = max(("copy_last", "black", "context_mean"), key=lambda k: s[k])
        self.readout.emit(f"{self.clip_name}: context {pred.context}, horizon {pred.horizon}, "
                          f"mean PSNR {s['model']:.2f} dB (best baseline, {LABELS[best]}: "
                          f"{s[best]:.2f} dB)")

    def _show_frames(self) -> None:
        from engine.fsde.render import render_frame

        pred = self.result
        if pred is None:
            return
        h, w = pred.frames.shape[1:3]
        self.canvas.set_source(
            lambda t, scale, smooth: render_frame(pred, t, self.sample_spin.value(), scale,
                                                  smooth), self._fit(h, w, 4))

    def _on_time(self, index: int) -> None:
        pred = self.result
        n_ctx = pred.context if pred is not None else self.timeline.length
        if index >= n_ctx:
            text = f"frame {index + 1} / {self.timeline.length}: PREDICTED t+{index - n_ctx + 1}"
            text += f"  PSNR {float(pred.psnr[index - n_ctx]):.1f} dB"
            self.time_label.setStyleSheet(PREDICTED_STYLE)
        else:
            text = f"frame {index + 1} / {self.timeline.length} (context)"
            self.time_label.setStyleSheet("")
        self.time_label.setText(text)

    def set_playing(self, on: bool) -> None:
        self.scrub.set_playing(on)
