"""The Tumor workbench's first screen: the bundled native demo patient (resources/native_demo/),
or, without it, the MNI T1 with the demo segmentation; when the demo database exists, a fit
shown over the scan (both fits, MNI and native, with a tiny database: tests/test_tumor_gui.py)."""


def test_demo_start_without_database_shows_the_native_demo_patient(qtbot, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("TUMOR_DB", str(tmp_path / "none"))
    from gui.main_window import MainWindow
    from gui.workbenches.tumor import NATIVE_DEMO

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    wb = win.workbenches["tumor"]
    wb.load_demo()
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=30000)
    assert wb.seg is not None and wb.personalize_panel.estimate is None
    assert wb.space == "native" and wb.scan.path == NATIVE_DEMO / "scan_t1.nii.gz"
    assert int((wb.seg_on_scan > 0).sum()) > 1000
    assert "MNI (not registered)" in wb.viewer.readout_text
    file_menu = win.menuBar().actions()[0].menu()
    texts = [a.text().replace("&", "") for a in file_menu.actions()]
    for wanted in ("Open patient folder (BraTS)...", "Open scan + segmentation files...",
                   "Import DICOM series..."):
        assert wanted in texts
