"""Video workbench: demo prediction, one shared timeline, train/predict jobs, export, errors."""
from __future__ import annotations

import numpy as np
import pytest

from engine.fsde.video_data import moving_digits

TINY = {"size": 32, "slots": 1, "K": 3, "context": 4, "horizon": 3, "substeps": 1}


@pytest.fixture
def bench(qtbot):
    from gui.main_window import JobRunner
    from gui.workbenches.video import VideoWorkbench

    runner = JobRunner()
    wb = VideoWorkbench(runner)
    qtbot.addWidget(wb)
    wb.resize(1200, 800)
    errors: list[str] = []
    wb.error.connect(errors.append)
    runner.failed.connect(errors.append)
    wb.errors = errors
    yield wb
    runner.cancel()
    runner.wait(10000)


def _wait_job(qtbot, wb, timeout=60000):
    qtbot.waitUntil(lambda: not wb.jobs.busy, timeout=timeout)


def test_demo_prediction_shown_and_timeline_shared(bench):
    from engine.fsde.render import render_frame

    wb = bench
    wb.load_demo()
    pred = wb.result
    assert pred is not None
    n_ctx, total = pred.context, pred.n_frames
    assert (n_ctx, total) == (10, 20)
    assert wb.timeline.length == 20 and wb.slider.maximum() == 19
    x, y = wb.psnr_curve.getData()
    assert list(x) == list(range(10, 20)) and np.all(np.isfinite(y))
    # every baseline is plotted, for PSNR and for SSIM, with the engine's numbers
    for kind in ("psnr", "ssim"):
        for name in ("model", "copy_last", "black", "context_mean"):
            xs, ys = wb.metrics.curves[kind, name].getData()
            assert list(xs) == list(range(10, 20))
            assert np.allclose(ys, np.minimum(pred.metrics[kind][name], 60.0))
    # one timeline: slider -> both cursor lines and the canvas; cursor line -> slider
    wb.slider.setValue(15)
    assert wb.timeline.index == 15
    assert [int(round(c.value())) for c in wb.metrics.cursors] == [15, 15]
    assert np.array_equal(wb.canvas.image, render_frame(pred, 15, 0, wb.canvas.scale))
    assert "PREDICTED t+6" in wb.time_label.text()
    wb.metrics.cursors[1].setValue(3)
    assert wb.timeline.index == 3 and wb.slider.value() == 3
    assert "context" in wb.time_label.text()


def test_frames_fill_the_canvas(bench, qtbot):
    """The rendered panels fill the canvas (aspect kept), not ~50 px in an empty panel."""
    wb = bench
    wb.show()
    wb.load_demo()
    qtbot.waitUntil(lambda: wb.canvas.image is not None)
    h, w = wb.canvas.image.shape[:2]
    ch, cw = wb.canvas.height(), wb.canvas.width()
    assert h <= ch and w <= cw
    assert h >= 0.9 * ch or w >= 0.9 * cw          # one side of the canvas is filled
    side = wb.result.frames.shape[2]
    assert wb.canvas.scale * side > 150            # each frame drawn > 150 px wide (was ~50)
    wb.resize(900, 600)
    qtbot.waitUntil(lambda: wb.canvas.image.shape[1] <= wb.canvas.width())
    assert wb.canvas.image.shape[1] >= 0.9 * wb.canvas.width() or \
        wb.canvas.image.shape[0] >= 0.9 * wb.canvas.height()


def test_smooth_toggle_changes_the_pixels_not_the_layout(bench):
    wb = bench
    wb.load_demo()
    wb.timeline.set_index(12)
    sharp = wb.canvas.image.copy()
    wb.forecast_panel.smooth_check.setChecked(True)
    assert wb.canvas.image.shape == sharp.shape and not np.array_equal(wb.canvas.image, sharp)


def test_resized_video_is_said_in_the_gui(bench, qtbot, tmp_path):
    from engine.fsde.prediction import Prediction

    wb = bench
    big = tmp_path / "big.npz"
    np.savez(big, frames=(np.random.default_rng(1).random((5, 150, 200)) * 255).astype(np.uint8))
    assert wb.open_video(big) is not None
    _wait_job(qtbot, wb)
    qtbot.waitUntil(lambda: wb.clip_name == "big.npz", timeout=10000)
    assert wb.clip.resized and not wb.resize_label.isHidden()
    assert "150 x 200" in wb.resize_label.text()
    rng = np.random.default_rng(0)
    frames = rng.random((6, 16, 16)).astype(np.float32)
    pred = Prediction.from_samples(frames, rng.random((2, 2, 16, 16)), 4, resized=True,
                                   resize_reason="the video is 480 x 640 pixels")
    wb.show_result(pred)
    assert not wb.resize_label.isHidden() and "480 x 640" in wb.resize_label.text()
    wb.set_clip(frames, "plain", "moving-digits")
    assert wb.resize_label.isHidden()


def test_play_advances_timeline(bench, qtbot):
    wb = bench
    wb.load_demo()
    wb.timeline.set_index(0)
    wb.set_playing(True)
    qtbot.waitUntil(lambda: wb.timeline.index >= 2, timeout=5000)
    wb.set_playing(False)
    assert wb.play_button.text() == "Play"


def test_train_then_predict_then_export(bench, qtbot, tmp_path):
    wb = bench
    clip = moving_digits(1, 7, seed=3, split="test").frames[0]
    wb.set_clip(clip, "test clip", "moving-digits")
    wb.context_spin.setValue(4)
    wb.horizon_spin.setValue(3)
    wb.samples_spin.setValue(2)
    model = tmp_path / "m.pt"
    assert wb.train(model, steps=3, model_overrides=TINY,
                    train_overrides={"batch_size": 2}) is not None
    _wait_job(qtbot, wb)
    # the predict job starts after training
    qtbot.waitUntil(lambda: wb.result is not None or bool(wb.errors), timeout=60000)
    _wait_job(qtbot, wb)
    assert not wb.errors, wb.errors
    assert model.is_file() and wb.model is not None
    curves = wb.train_plots.curves
    x, _ = curves["elbo"].getData()
    assert list(x) == [1, 2, 3]
    _, h = curves["hurst"].getData()
    assert np.all((0 < h) & (h < 1))
    _, f = curves["forecast"].getData()  # the term that fits H: positive, finite
    assert np.all(np.isfinite(f) & (f > 0))
    _, fm = curves["forecast_mean"].getData()  # its trailing mean over the steps so far
    assert np.allclose(fm, np.cumsum(f) / np.arange(1, 4))
    assert wb.result.samples.shape == (2, 3, 32, 32) and wb.result.std.shape == (7, 32, 32)
    out = tmp_path / "exp.mp4"
    assert wb.export_mp4(out)
    from engine._cv2 import cv2

    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7
    pngs = wb.export_pngs(tmp_path / "frames")
    assert len(pngs) == 7
    # the exported PNG is the on-screen renderer's image (one render path), only scaled
    from engine.fsde.render import export_scale, render_frame

    png = cv2.imread(str(pngs[5]))[..., ::-1]
    assert np.array_equal(png, render_frame(wb.result, 5, 0, export_scale(32, 32)))


def test_open_video_is_a_job_capped_at_max_frames(bench, qtbot, tmp_path):
    from engine.fsde.render import write_mp4
    from gui.workbenches.video import MAX_FRAMES

    wb = bench
    path = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    write_mp4(path, (rng.random((MAX_FRAMES + 20, 24, 40, 3)) * 255).astype(np.uint8), fps=25)
    assert wb.open_video(path) is not None and wb.jobs.busy  # decoding runs off the GUI thread
    _wait_job(qtbot, wb)
    qtbot.waitUntil(lambda: wb.clip_name == "long.mp4", timeout=10000)
    assert not wb.errors, wb.errors
    # the model works at the clip's own resolution (docs/dev/fsde_video_api.md)
    assert wb.frames.shape == (MAX_FRAMES, 24, 40) and wb.timeline.length == MAX_FRAMES
    assert not wb.clip.resized and wb.resize_label.isHidden()


def test_export_write_error_is_one_sentence(bench, tmp_path):
    wb = bench
    wb.load_demo()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    assert not wb.export_mp4(blocker / "out.mp4")
    assert len(wb.errors) == 1 and "out.mp4" in wb.errors[0] and wb.errors[0].endswith(".")
    assert wb.export_pngs(blocker) == [] and len(wb.errors) == 2
    assert "not_a_folder" in wb.errors[1]


def test_bad_video_is_one_sentence(bench, qtbot, tmp_path):
    wb = bench
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00garbage" * 100)
    assert wb.open_video(bad) is not None
    _wait_job(qtbot, wb)
    qtbot.waitUntil(lambda: bool(wb.errors), timeout=10000)
    assert len(wb.errors) == 1 and "bad.avi" in wb.errors[0]
    assert wb.frames is None
    wb.errors.clear()
    wb.clip = None
    wb.predict()
    assert wb.errors and wb.errors[0].endswith(".")


def test_trailing_mean_skips_missing_steps():
    from gui.workbenches.video_plots import trailing_mean

    y = [0.0, 2.0, 4.0, np.nan, 6.0, np.nan, np.nan]  # NaN: a step of an older checkpoint
    assert np.allclose(trailing_mean(y, 2), [0, 1, 3, 4, 6, 6, np.nan], equal_nan=True)
