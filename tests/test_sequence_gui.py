"""Sequence workbench: demo run, shared cursor, play, training and ER jobs, export."""
import numpy as np
import pytest

from gui.main_window import MainWindow
from pvrnn_fixtures import TINY



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
    wb.load_demo()  # data loading runs as a job; the demo model and run follow it
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.result is not None, timeout=30000)
    assert wb.checkpoint is not None and not errors
    N, T, D = wb.result.observed.shape
    assert len(wb.plots.channel_plots) == D == 2
    assert wb.timeline.length == T
    wb.timeline.set_index(42)
    plots = wb.plots
    cursors = [p.cursor.value() for p in plots.channel_plots + [plots.kl_plot, plots.lat_plot]]
    assert cursors == [42] * len(cursors)
    assert wb.plots.scrub.slider.value() == 42
    # the prediction curve starts at the cursor and reaches H steps ahead
    H = wb.result.predictions.shape[2]
    x, y = wb.plots.channel_plots[0].pred.getData()
    assert x[0] == 42 and x[-1] == 42 + H
    np.testing.assert_allclose(y[1:], wb.result.predictions[0, 42, :, 0], rtol=1e-6)
    rx, _ = wb.plots.channel_plots[1].recon.getData()
    assert rx[-1] == 42 and len(rx) == wb.result.settings.window
    wb.plots.scrub.slider.setValue(10)  # the slider drives the same timeline
    assert wb.timeline.index == 10 and wb.plots.kl_plot.cursor.value() == 10
    wb.set_playing(True)
    qtbot.waitUntil(lambda: wb.timeline.index >= 12, timeout=5000)
    wb.set_playing(False)
    assert wb.plots.scrub.play_button.text() == "Play"
    # the loss history of the demo model is drawn
    assert len(wb.plots.loss_plot.curves[0].getData()[0]) == wb.checkpoint["epoch"]


def test_train_and_error_regression_jobs_then_save_and_export(bench, qtbot, tmp_path):
    win, wb, errors = bench
    t = np.arange(30)
    X = np.stack([np.sin(t / 3 + p)[:, None] for p in (0.0, 1.0)])
    np.save(tmp_path / "s.npy", X)
    assert wb.set_data(tmp_path / "s.npy")
    assert win.jobs.busy and wb.train_data is None  # loading runs as a job, off the GUI thread
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=30000)
    assert wb.train_data[0].shape == (2, 30, 1)
    wb.model_panel.config_edit.setPlainText(TINY)
    wb.start_training()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.checkpoint is not None
                    and wb.checkpoint["epoch"] == 15, timeout=60000)
    assert not errors
    assert len(wb.plots.loss_plot.curves[0].getData()[0]) == 15
    assert wb.er_panel.window_spin.value() == 4 and wb.er_panel.horizon_spin.value() == 3
    wb.start_er()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.result is not None, timeout=60000)
    assert wb.result.predictions.shape == (2, 30, 3, 1)
    assert wb.timeline.length == 30
    wb.save_model(tmp_path / "m.pt")
    assert wb.load_model(tmp_path / "m.pt")
    wb.export_to(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as z:
        np.testing.assert_array_equal(z["predictions"], wb.result.predictions)
    assert not errors


def test_bad_inputs_are_reported_as_one_sentence(bench, qtbot, tmp_path):
    win, wb, errors = bench

    def idle():
        qtbot.waitUntil(lambda: not win.jobs.busy, timeout=30000)

    np.save(tmp_path / "rank.npy", np.zeros((4, 2)))
    wb.set_data(tmp_path / "rank.npy")
    idle()
    assert errors and "rank.npy" in errors[-1] and wb.train_data is None
    wb.load_bundled("Synthetic PFSM patterns")
    idle()
    assert wb.train_data is not None
    wb.model_panel.config_edit.setPlainText("epochs = [")
    wb.start_training()
    assert "not valid TOML" in errors[-1] and not win.jobs.busy
    # wrong types and unknown names in the editor: one sentence, no exception out of the slot
    for text, words in (("[train]\nepochs = 3\n", ("unknown", "'train'")),
                        ("er = 3\n", ("'er'", "[er] table")),
                        ("[[layers]]\nd = 4.7\n", ("'d'", "integer", "4.7"))):
        wb.model_panel.config_edit.setPlainText(text)
        n = len(errors)
        wb.model_panel.train_btn.click()
        assert len(errors) == n + 1 and not win.jobs.busy
        assert errors[-1].startswith("The configuration") and "Traceback" not in errors[-1]
        assert all(w in errors[-1] for w in words), errors[-1]
    np.save(tmp_path / "three.npy", np.zeros((1, 8, 3)))
    wb.load_demo()
    idle()
    wb.set_data(tmp_path / "three.npy")
    idle()
    wb.start_er()
    assert "3 dimensions" in errors[-1] and not win.jobs.busy


def test_save_and_export_errors_are_one_sentence(bench, qtbot, tmp_path):
    win, wb, errors = bench
    wb.load_demo()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.result is not None, timeout=30000)
    (tmp_path / "plain_file").write_text("x")
    missing = tmp_path / "plain_file"  # a file where a folder is needed: OSError on write
    assert not wb.save_model(missing / "m.pt")
    assert "Cannot write the model" in errors[-1] and "m.pt" in errors[-1]
    assert not wb.export_to(missing / "p.npz")
    assert "Cannot write the predictions" in errors[-1] and "p.npz" in errors[-1]
    assert (tmp_path / "plain_file").read_text() == "x"


def test_error_regression_is_the_engine_predict_with_the_model_settings(bench, qtbot,
                                                                        tmp_path):
    from engine.pvrnn.config import ERSettings
    from engine.pvrnn.prediction import Prediction, predict

    win, wb, errors = bench
    assert wb.er_panel.settings() == ERSettings()  # the spin boxes start at the engine's
    t = np.arange(20)
    X = np.stack([np.sin(t / 3 + p)[:, None] for p in (0.0, 2.0)])
    np.save(tmp_path / "s.npy", X)
    wb.set_data(tmp_path / "s.npy")
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.train_data is not None, timeout=30000)
    wb.model_panel.config_edit.setPlainText(TINY + "meta_prior = 0.5\n")  # inside [er]
    wb.start_training()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.checkpoint is not None, timeout=60000)
    assert wb.er_panel.settings() == ERSettings(window=4, iterations=3, lr=0.1, horizon=3,
                                                meta_prior=0.5)
    wb.er_panel.horizon_spin.setValue(2)
    wb.start_er()
    qtbot.waitUntil(lambda: not win.jobs.busy and wb.result is not None, timeout=60000)
    expect = predict(wb.checkpoint, X, np.array([20, 20]),
                     ERSettings(window=4, iterations=3, lr=0.1, horizon=2, meta_prior=0.5))
    assert isinstance(wb.result, Prediction) and wb.result.settings == expect.settings
    np.testing.assert_array_equal(wb.result.predictions, expect.predictions)
    np.testing.assert_array_equal(wb.result.kl, expect.kl)
    assert wb.export_to(tmp_path / "p.npz")
    assert Prediction.load(tmp_path / "p.npz") == wb.result
    assert not errors
    np.savez(tmp_path / "bad.npz", observed=X)
    assert not wb.load_result(tmp_path / "bad.npz")
    assert "bad.npz" in errors[-1] and "missing" in errors[-1] and "\n" not in errors[-1]
    # a run that diverges is reported, and the shown result stays as it was
    shown = wb.result
    wb.checkpoint["params"]["bsig0"].fill_(-1000.0)  # the prior's sigma underflows to 0
    n = len(errors)
    wb.start_er()
    qtbot.waitUntil(lambda: not win.jobs.busy and len(errors) > n, timeout=60000)
    assert "Error regression diverged" in errors[-1] and wb.result is shown
