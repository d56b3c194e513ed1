"""The Tumor workbench's first screen: MNI T1, the demo segmentation and, when the demo
database exists, a fit of that segmentation shown over the scan."""
import numpy as np

from engine.jobs import CancelToken, Progress
from engine.tumor.database import build_database


def test_demo_start_fits_bundled_segmentation(qtbot, tmp_path, monkeypatch):
    db_dir = tmp_path / "db"
    build_database(db_dir, preset="tiny", seed=0, workers=1, progress=Progress(),
                   cancel=CancelToken())
    monkeypatch.setenv("TUMOR_DB", str(db_dir))
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    errors = []
    win.error_shown.connect(errors.append)
    wb = win.workbenches["tumor"]
    wb.load_demo()
    qtbot.waitUntil(lambda: wb.personalize_panel.estimate is not None or bool(errors),
                    timeout=120000)
    assert not errors, errors
    est = wb.personalize_panel.estimate
    assert est.dice_whole > 0.5
    assert "fitted tumor" in wb.viewer.overlays and "segmentation" in wb.viewer.overlays
    # the cursor moved to the fitted origin, which lies inside the observed tumor's bounding box
    seg_vox = np.argwhere(wb.seg_on_scan > 0)
    assert np.all(np.array(wb.cursor.ijk) >= seg_vox.min(0) - 8)
    assert np.all(np.array(wb.cursor.ijk) <= seg_vox.max(0) + 8)
    assert wb.panels.currentWidget() is wb.personalize_panel

    # a growth change made while another job runs is applied when that job ends
    import time

    def busy(progress, cancel):
        time.sleep(0.3)

    win.jobs.start("busy", busy)
    wb.personalize_panel.set_growth_days(400)
    qtbot.waitUntil(lambda: wb.personalize_panel.shown_days == 400, timeout=60000)


def test_demo_start_without_database_shows_scan_and_segmentation(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("TUMOR_DB", str(tmp_path / "none"))
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    wb = win.workbenches["tumor"]
    wb.load_demo()
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=30000)
    assert wb.seg is not None and wb.personalize_panel.estimate is None
    assert int((wb.seg_on_scan > 0).sum()) > 1000
