"""Sequence workbench: demo run, shared cursor, play, training and ER jobs, export."""
import numpy as np
import pytest

from gui.main_window import MainWindow

TINY = """seed = 1
epochs = 25
lr = 0.01
beta = 0.001
checkpoint_every = 1000
[[layers]]
d = 6
z = 1
tau = 2.0
w = 0.01
[er]
window = 3
iterations = 2
lr = 0.1
horizon = 4
"""


@pytest.fixture
def bench(qtbot):
    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    wb = win.workbenches["sequence"]
    errors = []
    win.error_shown.connect(errors.append)
    yield win, wb, errors
    win.jobs.cancel()
    win.jobs.wait(10000)


def test_demo_shows_a_finished_run_and_every_plot_follows_the_cursor(bench, qtbot):
    win, wb, errors = bench
    wb.load_demo()
    assert wb.result is not None and wb.checkpoint is not None and not errors
    N, T, D = wb.result["observed"].shape
    assert len(wb.channel_plots) == D == 2
    assert wb.timeline.length == T
    wb.timeline.set_index(42)
    cursors = [p.cursor.value() for p in wb.channel_plots + [wb.kl_plot, wb.lat_plot]]
    assert cursors == [42] * len(cursors)
    assert wb.slider.value() == 42
    # the prediction curve starts at the cursor and reaches H steps ahead
    H = wb.result["predictions"].shape[2]
    x, y = wb.channel_plots[0].pred.getData()
    assert x[0] == 42 and x[-1] == 42 + H
    np.testing.assert_allclose(y[1:], wb.result["predictions"][0, 42, :, 0], rtol=1e-6)
    rx, _ = wb.channel_plots[1].recon.getData()
    assert rx[-1] == 42 and len(rx) == int(wb.result["window"])
    wb.slider.setValue(10)  # the slider drives the same timeline
    assert wb.timeline.index == 10 and wb.kl_plot.cursor.value() == 10
    wb.set_playing(True)
    qtbot.waitUntil(lambda: wb.timeline.index >= 12, timeout=5000)
    wb.set_playing(False)
    assert wb.play_btn.text() == "Play"
    # the loss history of the demo model is drawn
    assert len(wb.loss_plot.curves[0].getData()[0]) == wb.checkpoint["epoch"]


def test_train_and_error_regression_jobs_then_save_and_export(bench, qtbot, tmp_path):
    win, wb, errors = bench
    t = np.arange(30)
    X = np.stack([np.sin(t / 3 + p)[:, None] for p in (0.0, 1.0)])
    np.save(tmp_path / "s.npy", X)
    assert wb.set_data(tmp_path / "s.npy")
    wb.config_edit.setPlainText(TINY)
    wb.start_training()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.checkpoint is not None
                    and wb.checkpoint["epoch"] == 25, timeout=60000)
    assert not errors
    assert len(wb.loss_plot.curves[0].getData()[0]) == 25
    assert wb.window_spin.value() == 3 and wb.horizon_spin.value() == 4
    wb.start_er()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.result is not None, timeout=60000)
    assert wb.result["predictions"].shape == (2, 30, 4, 1)
    assert wb.timeline.length == 30
    wb.save_model(tmp_path / "m.pt")
    assert wb.load_model(tmp_path / "m.pt")
    wb.export_to(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        np.testing.assert_array_equal(z["predictions"], wb.result["predictions"])
    assert not errors


def test_bad_inputs_are_reported_as_one_sentence(bench, tmp_path):
    win, wb, errors = bench
    np.save(tmp_path / "rank.npy", np.zeros((4, 2)))
    assert not wb.set_data(tmp_path / "rank.npy")
    assert errors and "rank.npy" in errors[-1]
    wb.load_bundled("Synthetic PFSM patterns")
    wb.config_edit.setPlainText("epochs = [")
    wb.start_training()
    assert "not valid TOML" in errors[-1] and not win.jobs.busy
    np.save(tmp_path / "three.npy", np.zeros((1, 8, 3)))
    wb.load_demo()
    wb.set_data(tmp_path / "three.npy")
    wb.start_er()
    assert "3 dimensions" in errors[-1] and not win.jobs.busy
