"""gui/viewers/ortho.py and the Tumor workbench: linking, slicing, readout, overlays (pytest-qt)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from engine.imaging import load_volume
from gui.viewers.ortho import OrthoViewer

FILE_SHAPE = (12, 10, 8)
SPACING = (2.0, 3.0, 4.0)


def _lps_file(tmp_path):
    """A small LPS-stored scan whose file voxel (a, b, c) holds 100 a + 10 b + c."""
    a, b, c = np.meshgrid(*[np.arange(n) for n in FILE_SHAPE], indexing="ij")
    data = (100 * a + 10 * b + c).astype(np.float32)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = (30.0, 20.0, -10.0)
    path = tmp_path / "lps_scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path, data, affine


@pytest.fixture
def viewer(qtbot, tmp_path):
    path, data, affine = _lps_file(tmp_path)
    v = OrthoViewer()
    qtbot.addWidget(v)
    v.resize(800, 700)
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(load_volume(path))
    QApplication.processEvents()
    v.file_data, v.file_affine = data, affine
    return v


def _viewport_pos(view, h, v) -> QPoint:
    return view.mapFromScene(view.plane_to_scene(h, v))


def _pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    buf = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return buf.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()].copy()


def test_click_in_axial_moves_coronal_and_sagittal_slices(viewer, qtbot):
    axial = viewer.views["axial"]
    k0 = viewer.cursor.ijk[2]
    qtbot.mouseClick(axial.viewport(), Qt.MouseButton.LeftButton, pos=_viewport_pos(axial, 3, 7))
    assert viewer.cursor.ijk == (3, 7, k0)
    assert viewer.slice_index("coronal") == 7
    assert viewer.slice_index("sagittal") == 3
    assert viewer.slice_index("axial") == k0
    data = viewer.volume.data
    np.testing.assert_array_equal(viewer.views["coronal"].image.image, data[:, 7, :].T)
    np.testing.assert_array_equal(viewer.views["sagittal"].image.image, data[3, :, :].T)
    # the cross-hair in the coronal view sits on the clicked i and the current k
    assert viewer.views["coronal"].vline.value() == pytest.approx(3 * SPACING[0])
    assert viewer.views["coronal"].hline.value() == pytest.approx(k0 * SPACING[2])


def test_wheel_changes_only_that_views_slice(viewer):
    axial = viewer.views["axial"]
    before = {name: viewer.slice_index(name) for name in viewer.views}
    pos = QPointF(_viewport_pos(axial, 5, 5))

    def wheel(dy):
        ev = QWheelEvent(pos, QPointF(axial.viewport().mapToGlobal(pos.toPoint())), QPoint(0, 0),
                         QPoint(0, dy), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                         Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(axial.viewport(), ev)

    wheel(120)
    assert viewer.slice_index("axial") == before["axial"] + 1
    assert viewer.slice_index("coronal") == before["coronal"]
    assert viewer.slice_index("sagittal") == before["sagittal"]
    wheel(-120)
    wheel(-120)
    assert viewer.slice_index("axial") == before["axial"] - 1
    assert viewer.cursor.ijk[2] == before["axial"] - 1
    assert (viewer.slice_index("coronal"), viewer.slice_index("sagittal")) == \
        (before["coronal"], before["sagittal"])
    np.testing.assert_array_equal(axial.image.image,
                                  viewer.volume.data[:, :, before["axial"] - 1].T)


def test_arrow_keys_change_slice(viewer, qtbot):
    sagittal = viewer.views["sagittal"]
    i0 = viewer.slice_index("sagittal")
    qtbot.keyClick(sagittal, Qt.Key.Key_Up)
    qtbot.keyClick(sagittal, Qt.Key.Key_Up)
    qtbot.keyClick(sagittal, Qt.Key.Key_Down)
    assert viewer.slice_index("sagittal") == i0 + 1
    assert viewer.cursor.ijk[0] == i0 + 1


def test_readout_shows_file_ijk_ras_and_value(viewer, qtbot):
    ijk = (2, 8, 5)  # RAS+ displayed index
    nx, ny, _ = FILE_SHAPE
    fi, fj, fk = nx - 1 - ijk[0], ny - 1 - ijk[1], ijk[2]  # LPS file: i and j flipped
    with qtbot.waitSignal(viewer.readout) as blocker:
        viewer.cursor.set_ijk(ijk)
    text = blocker.args[0]
    x, y, z = nib.affines.apply_affine(viewer.file_affine, (fi, fj, fk))
    value = viewer.file_data[fi, fj, fk]
    assert value == 100 * fi + 10 * fj + fk
    assert f"[{fi}, {fj}, {fk}]" in text
    assert f"({x:.1f}, {y:.1f}, {z:.1f}) mm" in text
    assert f"value {value:g}" in text
    labels = np.zeros(viewer.volume.shape, np.int16)
    labels[ijk] = 2
    viewer.add_overlay("segmentation", labels, kind="labels")
    assert "segmentation: edema" in viewer.readout_text
    viewer.cursor.set_ijk((0, 0, 0))
    assert "segmentation: background" in viewer.readout_text


def test_overlay_opacity_changes_rendered_pixels(viewer):
    labels = np.zeros(viewer.volume.shape, np.int16)
    labels[2:8, 2:8, :] = 1
    base = _pixels(viewer.render_views())
    viewer.add_overlay("segmentation", labels, kind="labels", opacity=0.2)
    faint = _pixels(viewer.render_views())
    viewer.set_overlay_opacity("segmentation", 0.9)
    strong = _pixels(viewer.render_views())
    changed = np.any(strong != faint, axis=-1)
    assert changed.sum() > 500  # the overlay region in the views
    # stronger opacity pushes the red channel up relative to green (necrosis is red)
    red_gain = (strong[..., 0].astype(int) - strong[..., 1]
                - (faint[..., 0].astype(int) - faint[..., 1]))
    assert red_gain[changed].mean() > 20
    viewer.set_overlay_visible("segmentation", False)
    hidden = _pixels(viewer.render_views())
    diff = np.any(hidden != base, axis=-1)
    # only the info text (it says the overlay is hidden) may differ from no overlay at all
    info = viewer.info.geometry()
    diff[info.top():info.bottom() + 1, info.left():info.right() + 1] = False
    assert not diff.any()


def test_radiological_display_and_neurological_toggle(viewer):
    axial = viewer.views["axial"]
    left_of = _viewport_pos(axial, 9, 5).x() < _viewport_pos(axial, 1, 5).x()
    assert left_of  # larger i = patient right is on the screen left
    assert axial.letters["left"].text() == "R" and axial.letters["right"].text() == "L"
    assert axial.letters["top"].text() == "A"
    assert viewer.views["coronal"].letters["top"].text() == "S"
    assert viewer.views["sagittal"].letters["left"].text() == "A"
    viewer.set_radiological(False)
    QApplication.processEvents()
    assert _viewport_pos(axial, 9, 5).x() > _viewport_pos(axial, 1, 5).x()
    assert axial.letters["left"].text() == "L"


def test_double_click_maximizes_and_restores(viewer, qtbot):
    coronal = viewer.views["coronal"]
    pos = _viewport_pos(coronal, 4, 4)
    # what a real double click delivers: press, release, double-click, release
    qtbot.mouseClick(coronal.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseDClick(coronal.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.mouseRelease(coronal.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert viewer.maximized is coronal
    assert coronal.isVisible() and not viewer.views["axial"].isVisible()
    assert not viewer.views["sagittal"].isVisible()
    viewer.toggle_maximize(coronal)
    assert all(v.isVisible() for v in viewer.views.values())


def test_points_drawn_near_current_slice(viewer):
    k = viewer.cursor.ijk[2]
    pts = np.array([[1, 1, k], [2, 2, k + 1], [3, 3, k + 6]], float)
    viewer.set_points("origins", pts, color=(0, 255, 255), size=5, slab=2)
    assert len(viewer.views["axial"].point_items["origins"].data) == 2
    viewer.set_points("origins", None)
    assert "origins" not in viewer.views["axial"].point_items


def test_workbench_opens_scan_and_segmentation_in_jobs(qtbot, tmp_path):
    from gui.workbenches.tumor import TumorWorkbench
    from gui.workers import JobRunner

    path, _, affine = _lps_file(tmp_path)
    seg = np.zeros(FILE_SHAPE, np.uint8)
    seg[2:5, 3:6, 2:4] = 2
    seg_path = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(seg, affine), str(seg_path))
    runner = JobRunner()
    wb = TumorWorkbench(runner)
    qtbot.addWidget(wb)
    wb.load_mni_demo()
    assert wb.scan is not None and wb.scan.shape == (197, 233, 189)
    qtbot.waitUntil(lambda: not runner.busy, timeout=30000)  # the demo segmentation's job
    assert wb.seg is not None
    with qtbot.waitSignal(wb.scan_loaded, timeout=10000):
        wb.open_paths([str(path)], "scan")
    qtbot.waitUntil(lambda: not runner.busy)  # one job at a time
    assert wb.viewer.volume is wb.scan and wb.scan.shape == FILE_SHAPE
    with qtbot.waitSignal(wb.segmentation_loaded, timeout=10000):
        wb.open_paths([str(seg_path)], "segmentation")
    qtbot.waitUntil(lambda: not runner.busy)
    assert "segmentation" in wb.viewer.overlays
    assert int((wb.seg_on_scan == 2).sum()) == int((seg == 2).sum())
    assert wb.seg_on_scan[wb.cursor.ijk] == 2  # cursor moved into the tumor
    # a new scan keeps the open segmentation, resampled onto the new grid in the job
    with qtbot.waitSignal(wb.segmentation_loaded, timeout=10000):
        wb.open_paths([str(path)], "scan")
    qtbot.waitUntil(lambda: not runner.busy)
    assert wb.viewer.overlays["segmentation"].data.shape == FILE_SHAPE
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with qtbot.waitSignal(wb.error, timeout=10000) as blocker:
        wb.open_paths([str(bad)], "scan")
    assert str(bad) in blocker.args[0] and "NIfTI" in blocker.args[0]


def test_display_panel_drives_levels_opacity_and_orientation(viewer, qtbot):
    from gui.viewers.display_panel import DisplayPanel

    panel = DisplayPanel(viewer)
    qtbot.addWidget(panel)
    panel.window.setValue(100.0)
    panel.level.setValue(400.0)
    assert viewer.levels == pytest.approx((350.0, 450.0))
    assert viewer.views["axial"].image.levels.tolist() == pytest.approx([350.0, 450.0])
    panel.preset.setCurrentText("Full range")
    panel._preset_chosen()
    data = viewer.volume.data
    assert viewer.levels == pytest.approx((float(data.min()), float(data.max())))
    assert panel.window.value() == pytest.approx(viewer.levels[1] - viewer.levels[0], abs=0.01)
    viewer.add_overlay("tumor", np.ones(viewer.volume.shape, np.int16), kind="labels", opacity=0.5)
    assert panel.overlay.currentText() == "tumor" and panel.opacity.value() == 50
    panel.opacity.setValue(80)
    assert viewer.overlays["tumor"].opacity == pytest.approx(0.8)
    assert viewer.views["axial"].overlay_items["tumor"].opacity() == pytest.approx(0.8)
    panel.neurological.setChecked(True)
    assert viewer.radiological is False
    assert viewer.views["axial"].letters["left"].text() == "L"
    # Shift-drag arithmetic: dragging right widens the window, up raises the level
    start = viewer.levels
    viewer.window_level_drag(start, 40, 0)
    assert viewer.levels[1] - viewer.levels[0] > start[1] - start[0]
    viewer.window_level_drag(start, 0, 40)
    assert sum(viewer.levels) / 2 > sum(start) / 2


def test_mouse_drags_cursor_window_level_zoom_and_pan(viewer, qtbot, monkeypatch):
    import pyqtgraph as pg
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QMouseEvent

    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", 0)  # synthetic moves come fast
    axial = viewer.views["axial"]

    def send(kind, hv, button, buttons, mods):
        p = QPointF(_viewport_pos(axial, *hv))
        QApplication.sendEvent(axial.viewport(), QMouseEvent(
            kind, p, QPointF(axial.viewport().mapToGlobal(p.toPoint())), button, buttons, mods))

    def drag(path, button, mods=Qt.KeyboardModifier.NoModifier):
        send(QEvent.Type.MouseButtonPress, path[0], button, button, mods)
        for hv in path[1:]:
            send(QEvent.Type.MouseMove, hv, Qt.MouseButton.NoButton, button, mods)
        send(QEvent.Type.MouseButtonRelease, path[-1], button, Qt.MouseButton.NoButton, mods)

    k = viewer.cursor.ijk[2]
    drag([(5, 5), (7, 6), (9, 8)], Qt.MouseButton.LeftButton)
    assert viewer.cursor.ijk == (9, 8, k)
    assert viewer.slice_index("sagittal") == 9 and viewer.slice_index("coronal") == 8
    levels = viewer.levels
    drag([(5, 5), (5, 6), (5, 7)], Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier)
    assert viewer.levels != levels and viewer.cursor.ijk == (9, 8, k)
    (x0, x1), _ = axial.vb.viewRange()
    drag([(5, 3), (5, 4), (5, 5)], Qt.MouseButton.RightButton)  # drag up: zoom in
    (z0, z1), _ = axial.vb.viewRange()
    assert z1 - z0 < x1 - x0
    drag([(5, 5), (6, 5), (7, 5)], Qt.MouseButton.MiddleButton)
    (p0, p1), _ = axial.vb.viewRange()
    assert p0 != pytest.approx(z0) and p1 - p0 == pytest.approx(z1 - z0)
    assert viewer.cursor.ijk == (9, 8, k)  # zoom and pan leave the cursor alone
