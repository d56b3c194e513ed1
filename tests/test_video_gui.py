"""Video workbench: demo prediction, one shared timeline, train/predict jobs, export, errors."""
from __future__ import annotations

import numpy as np
import pytest

from engine.fsde.video_data import moving_digits

pytest.importorskip("pytestqt")

TINY = {"size": 32, "latent_dim": 4, "content_dim": 4, "feat_dim": 16, "hidden": 16, "K": 3,
        "context": 4, "horizon": 3, "substeps": 1}


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
    wb = bench
    wb.load_demo()
    assert wb.shown is not None and "mean" in wb.shown
    n_ctx, total = wb.shown["context"], len(wb.shown["truth"])
    assert (n_ctx, total) == (10, 20)
    assert wb.timeline.length == 20 and wb.slider.maximum() == 19
    x, y = wb.psnr_curve.getData()
    assert list(x) == list(range(10, 20)) and np.all(np.isfinite(y))
    # all four panels show an image of the clip's size
    for item in wb.panels.items:
        assert item.image is not None and item.image.shape[:2] == (32, 32)
    # one timeline: slider -> cursor line and panels; cursor line -> slider
    wb.slider.setValue(15)
    assert wb.timeline.index == 15 and int(round(wb.cursor_line.value())) == 15
    assert np.array_equal(wb.panels.items[0].image, wb.shown["truth"][15])
    wb.cursor_line.setValue(3)
    assert wb.timeline.index == 3 and wb.slider.value() == 3
    assert np.allclose(wb.panels.items[1].image, wb.shown["mean"][3])
    assert "context" in wb.time_label.text()


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
    qtbot.waitUntil(lambda: wb.result is not None, timeout=60000)  # predict job after training
    _wait_job(qtbot, wb)
    assert not wb.errors, wb.errors
    assert model.is_file() and wb.model is not None
    x, _ = wb.elbo_curve.getData()
    assert list(x) == [1, 2, 3]
    _, h = wb.h_curve.getData()
    assert np.all((0 < h) & (h < 1))
    assert wb.result["samples"].shape == (2, 3, 32, 32)
    assert wb.shown["samples"].shape == (2, 7, 32, 32)
    out = tmp_path / "exp.mp4"
    wb.export_mp4(out)
    from engine._cv2 import cv2

    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7
    pngs = wb.export_pngs(tmp_path / "frames")
    assert len(pngs) == 7 and cv2.imread(str(pngs[0])) is not None


def test_open_video_is_a_job_capped_at_max_frames(bench, qtbot, tmp_path):
    from engine.fsde.video_data import write_mp4
    from gui.workbenches.video import MAX_FRAMES

    wb = bench
    path = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    write_mp4(path, (rng.random((MAX_FRAMES + 20, 24, 40, 3)) * 255).astype(np.uint8), fps=25)
    assert wb.open_video(path) is not None and wb.jobs.busy  # decoding runs off the GUI thread
    _wait_job(qtbot, wb)
    qtbot.waitUntil(lambda: wb.clip_name == "long.mp4", timeout=10000)
    assert not wb.errors, wb.errors
    assert wb.frames.shape == (MAX_FRAMES, 32, 32) and wb.timeline.length == MAX_FRAMES


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
    wb.frames = None
    wb.predict()
    assert wb.errors and wb.errors[0].endswith(".")
