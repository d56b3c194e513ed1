"""Tumor workbench GUI: the layer model drives the viewer, panels with explicit dependencies,
clear-on-open, readout in native RAS / IJK / MNI, atlas check, personalize end to end (pytest-qt,
offscreen)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from engine.imaging import from_array
from gui.models import Layer
from gui.viewers import FIT_CORE, FIT_U, FIT_WHOLE, SEGMENTATION
from gui.viewers.ortho import OrthoViewer
from gui.workers import JobRunner

SHAPE = (20, 24, 16)


def _pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    buf = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return buf.reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()].copy()


def _volume(offset=(0.0, 0.0, 0.0)):
    data = np.linspace(0, 100, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = offset
    return from_array(data, affine)


def _shown(qtbot, widget):
    """``widget`` added to qtbot, 700 x 600, shown and exposed."""
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture
def viewer(qtbot):
    v = _shown(qtbot, OrthoViewer())
    v.set_volume(_volume())
    QApplication.processEvents()
    return v


def test_layer_model_events_drive_the_viewer(viewer):
    seen = []
    labels = np.zeros(SHAPE, np.int16)
    labels[5:15, 5:15, :] = 1
    layer = Layer("tumor", labels, kind="labels", opacity=0.3, names={1: "necrosis"})
    layer.changed.connect(lambda lay, what: seen.append(what))
    viewer.cursor.set_ijk((8, 8, 8))
    base = _pixels(viewer.render_views())
    viewer.layers.add(layer)                       # the model, not a viewer method
    items = [view.overlay_items["tumor"] for view in viewer.views.values()]
    assert all(it.opacity() == pytest.approx(0.3) for it in items)
    faint = _pixels(viewer.render_views())
    layer.opacity = 0.9
    layer.opacity = 0.9                            # no change: no event
    assert seen == ["opacity"]
    assert all(it.opacity() == pytest.approx(0.9) for it in items)
    strong = _pixels(viewer.render_views())
    assert (np.any(strong != faint, -1)).sum() > 200
    assert "tumor: necrosis" in viewer.readout_text
    layer.visible = False
    assert not any(it.isVisible() for it in items) and "tumor:" not in viewer.readout_text
    layer.visible = True
    layer.data = np.zeros(SHAPE, np.int16)         # new data: views redraw the slice
    assert viewer.views["axial"].overlay_items["tumor"].image[..., 3].max() == 0
    layer.colors = {1: (0, 0, 255)}
    layer.data = labels
    rgba = viewer.views["axial"].overlay_items["tumor"].image
    assert tuple(rgba[rgba[..., 3] > 0][0][:3]) == (0, 0, 255)
    assert seen == ["opacity", "visible", "visible", "data", "colors", "data"]
    viewer.layers.remove("tumor")
    assert "tumor" not in viewer.views["axial"].overlay_items
    info = viewer.info.geometry()
    after = np.any(_pixels(viewer.render_views()) != base, -1)
    after[info.top():info.bottom() + 1, info.left():info.right() + 1] = False
    assert not after.any()                         # removed: the views look as before
    with pytest.raises(ValueError, match="shape"):
        viewer.layers.add(Layer("bad", np.zeros((3, 3, 3)), kind="labels"))
    assert "bad" not in viewer.layers


def test_layer_order_and_display_panel_edit_the_model(viewer, qtbot):
    from gui.viewers.display_panel import DisplayPanel

    panel = DisplayPanel(viewer)
    qtbot.addWidget(panel)
    viewer.add_overlay("a", np.ones(SHAPE, np.int16), kind="labels")
    viewer.add_overlay("b", np.ones(SHAPE, np.float32), kind="scalar", levels=(0, 2))
    za = viewer.views["axial"].overlay_items["a"].zValue()
    assert viewer.views["axial"].overlay_items["b"].zValue() > za
    viewer.layers.move_to_top("a")
    assert viewer.views["axial"].overlay_items["a"].zValue() > \
        viewer.views["axial"].overlay_items["b"].zValue()
    assert list(viewer.layers) == ["b", "a"]
    panel.overlay.setCurrentText("b")
    panel.opacity.setValue(20)
    assert viewer.layers["b"].opacity == pytest.approx(0.2)
    viewer.layers["b"].opacity = 0.7              # the model changed elsewhere: panel follows
    assert panel.opacity.value() == 70
    viewer.layers["b"].visible = False
    assert not panel.visible.isChecked()


def test_readout_shows_native_ras_file_ijk_and_mni(viewer):
    shift = np.array([10.0, -20.0, 5.0])
    viewer.add_coordinates("MNI", lambda ras: None)
    viewer.cursor.set_ijk((3, 4, 5))
    assert "MNI (not registered)" in viewer.readout_text
    viewer.add_coordinates("MNI", lambda ras: ras + shift)
    viewer.cursor.set_ijk((4, 5, 6))
    ras = np.array([8.0, 10.0, 12.0])
    mni = ras + shift
    text = viewer.readout_text
    assert "IJK (file) [4, 5, 6]" in text and "RAS (8.0, 10.0, 12.0) mm" in text
    assert "MNI ({:.1f}, {:.1f}, {:.1f}) mm".format(*mni) in text
    assert "MNI (18.0, -10.0, 17.0) mm" in viewer.info.text()


def test_atlas_check_blends_and_checkerboards(qtbot):
    from gui.workbenches.tumor_atlas import AtlasCheckView, checkerboard, prepare

    view = _shown(qtbot, AtlasCheckView())
    template = _volume()
    moved = 100.0 - template.data                # a registered scan unlike the template
    view.set_registration(prepare(moved, template), template)
    layer = view.viewer.layers["registered scan"]
    assert layer.opacity == pytest.approx(0.5)
    blend = _pixels(view.viewer.render_views())
    view.slider.setValue(90)
    assert layer.opacity == pytest.approx(0.9)
    view.mode.setCurrentText("Checkerboard")
    layer = view.viewer.layers["registered scan"]
    board = checkerboard(SHAPE, 2 + int(round(0.9 * 22)))
    assert layer.opacity == 1.0 and np.all((layer.data >= 0) == board)
    checker = _pixels(view.viewer.render_views())
    assert np.any(checker != blend, -1).sum() > 1000
    view.clear()
    assert "registered scan" not in view.viewer.layers and not view.has_registration


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="module")
def tiny_db(tiny_db_dir):
    return tiny_db_dir


def test_panels_take_explicit_dependencies_and_fit_end_to_end(qtbot, tiny_db, tmp_path):
    """The Personalize panel with only a viewer, a cursor, a job runner and an OPEN database (no
    workbench): fit the MNI demo segmentation, regrow, clear; the database is not reopened."""
    from engine.imaging import load_volume, resample
    from engine.tumor import service
    from gui.workbenches.tumor import DEMO_SCAN, DEMO_SEG
    from gui.workbenches.tumor_db_panel import DatabasePanel
    from gui.workbenches.tumor_fit_panel import PersonalizePanel

    jobs = JobRunner()
    viewer = OrthoViewer()
    qtbot.addWidget(viewer)
    scan = load_volume(DEMO_SCAN)
    seg = load_volume(DEMO_SEG, "labels")
    viewer.set_volume(scan)
    viewer.add_overlay(SEGMENTATION, resample(seg, None, scan.shape, scan.affine, order=0))
    dbp = DatabasePanel(jobs, viewer, scan.mm_to_vox)
    panel = PersonalizePanel(viewer, viewer.cursor, jobs)
    for w in (dbp, panel):
        qtbot.addWidget(w)
    dbp.database_changed.connect(panel.set_database)
    errors = []
    panel.error.connect(errors.append)
    opened = []
    real_open = service.open_database
    service.open_database = lambda *a: opened.append(a) or real_open(*a)
    try:
        assert dbp.open_database(tiny_db)
        assert panel.database is dbp.database
        assert len(viewer.points["database origins"][0]) == dbp.database.manifest["n_runs"]
        panel.set_inputs(scan, seg, "mni")
        messages = []
        panel.readout.connect(messages.append)
        panel.personalize()                     # Cancel (the status bar's button) stops it
        jobs.cancel()
        qtbot.waitUntil(lambda: not jobs.busy, timeout=60000)
        assert panel.fit is None and "Personalize cancelled." in messages and not errors
        panel.personalize()
        qtbot.waitUntil(lambda: panel.fit is not None or bool(errors), timeout=120000)
    finally:
        service.open_database = real_open
    assert not errors, errors
    assert opened == []                         # the open database was used as is
    est = panel.estimate
    for name in (FIT_U, FIT_CORE, FIT_WHOLE):
        assert name in viewer.layers
    assert list(viewer.layers)[-3:] == [SEGMENTATION, FIT_CORE, FIT_WHOLE]
    u = viewer.layers[FIT_U].data
    assert u.shape == scan.shape and u.max() == pytest.approx(float(est.u.max()), abs=0.1)
    assert 0 < viewer.layers[FIT_WHOLE].data.sum() < (u >= 0.2).sum()   # boundary voxels only
    origin = np.round(scan.mm_to_vox(est.origin_mm))
    assert np.abs(np.array(viewer.cursor.ijk) - origin).max() <= 1
    assert panel.growth.isEnabled() and panel.export_button.isEnabled()
    panel.toggles[FIT_U].setChecked(False)       # the panel edits the layer model
    assert not viewer.layers[FIT_U].visible
    panel.opacity.setValue(80)
    assert viewer.layers[FIT_U].opacity == pytest.approx(0.8)
    # growth: Estimate.regrow for a later T gives a larger tumor
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10000)
    panel.set_growth_days(3 * est.T_days)
    qtbot.waitUntil(lambda: panel.shown_days == 3 * est.T_days or bool(errors), timeout=60000)
    assert not errors, errors
    assert (viewer.layers[FIT_U].data >= 0.2).sum() > 1.5 * (u >= 0.2).sum()
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10000)
    panel.export_to(tmp_path / "out")
    qtbot.waitUntil(lambda: not jobs.busy, timeout=60000)
    assert (tmp_path / "out" / "estimate.json").is_file()
    assert (tmp_path / "out" / "tumor_labels.nii.gz").is_file()
    messages.clear()
    panel.clear("opened another segmentation")
    assert panel.fit is None and not any(n in viewer.layers for n in (FIT_U, FIT_CORE, FIT_WHOLE))
    assert not panel.growth.isEnabled() and "No fit yet" in panel.results.text()
    assert messages and "cleared" in messages[-1]


def test_opening_a_segmentation_or_scan_clears_the_fit_and_says_so(qtbot, tiny_db, tmp_path,
                                                                   monkeypatch):
    """The demo start-up fits the MNI demo patient; File > Open segmentation then removes the
    fit's layers, results and growth slider, and the status bar says why; the same for a scan."""
    from gui.workbenches.tumor import DEMO_SEG, TumorWorkbench

    monkeypatch.setenv("TUMOR_DB", str(tiny_db))
    monkeypatch.setattr("gui.workbenches.tumor.NATIVE_DEMO", tmp_path / "no_native_demo")
    jobs = JobRunner()
    wb = TumorWorkbench(jobs)
    qtbot.addWidget(wb)
    status, errors = [], []
    wb.status.connect(status.append)
    wb.error.connect(errors.append)
    panel = wb.personalize_panel
    wb.load_demo()
    qtbot.waitUntil(lambda: (panel.fit is not None and not jobs.busy) or bool(errors),
                    timeout=120000)
    assert not errors, errors
    assert wb.space == "mni" and FIT_U in wb.viewer.layers and panel.growth.isEnabled()
    assert wb.panels.currentWidget() is panel and "MNI152" in wb.views.tabText(0)
    seg_vox = np.argwhere(wb.seg_on_scan > 0)     # cursor on the fitted origin, in the tumor
    assert np.all(np.array(wb.cursor.ijk) >= seg_vox.min(0) - 8)
    assert np.all(np.array(wb.cursor.ijk) <= seg_vox.max(0) + 8)
    # a growth change made while another job runs is applied when that job ends
    import time

    jobs.start("busy", lambda progress, cancel: time.sleep(0.3))
    panel.set_growth_days(400)
    qtbot.waitUntil(lambda: panel.shown_days == 400 or bool(errors), timeout=60000)
    assert not errors, errors
    assert "T = 400 days" in panel.growth_label.text()
    assert "MNI ({:.1f}, {:.1f}, {:.1f}) mm".format(
        *wb.scan.vox_to_mm(wb.cursor.ijk)) in wb.viewer.readout_text   # MNI space: MNI = RAS
    seg = nib.load(str(DEMO_SEG))
    shifted = np.roll(np.asarray(seg.dataobj), 4, axis=0)
    seg_path = _save(tmp_path / "other_seg.nii.gz", shifted, seg.affine)
    status.clear()
    wb.open_paths([str(seg_path)], "segmentation")
    qtbot.waitUntil(lambda: not jobs.busy, timeout=20000)
    assert not any(n in wb.viewer.layers for n in (FIT_U, FIT_CORE, FIT_WHOLE))
    assert SEGMENTATION in wb.viewer.layers and wb.seg.name == "other_seg.nii.gz"
    assert panel.fit is None and wb.fit is None and not panel.growth.isEnabled()
    assert not panel.export_button.isEnabled() and "No fit yet" in panel.results.text()
    assert any("Previous fit cleared" in m and "other_seg.nii.gz" in m for m in status)
    # fit again, then a new scan clears it too
    panel.personalize()
    qtbot.waitUntil(lambda: (panel.fit is not None and not jobs.busy) or bool(errors),
                    timeout=120000)
    assert not errors, errors
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-20, -30, -10)
    scan = _save(tmp_path / "t1.nii.gz", np.random.default_rng(0).random(SHAPE, np.float32),
                 affine)
    status.clear()
    wb.open_paths([str(scan)], "scan")
    qtbot.waitUntil(lambda: not jobs.busy, timeout=20000)
    assert FIT_U not in wb.viewer.layers and panel.fit is None
    assert any("Previous fit cleared" in m and "t1.nii.gz" in m for m in status)
    assert wb.space == "native" and "native" in wb.views.tabText(0)
    assert "MNI (not registered)" in wb.viewer.readout_text


def test_database_panel_builds_on_a_dask_scheduler_and_shows_its_workers(qtbot, tmp_path):
    import distributed
    from gui.workbenches.tumor_db_panel import DatabasePanel

    jobs = JobRunner()
    panel = DatabasePanel(jobs)
    qtbot.addWidget(panel)
    errors, shown = [], []
    panel.error.connect(errors.append)
    panel.database_changed.connect(shown.append)
    assert "Dask scheduler" in panel.scheduler_edit.placeholderText()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        panel.scheduler_edit.setText(cluster.scheduler_address)
        statuses = []
        panel.build_status.setText("")
        jobs.progressed.connect(lambda f, m: statuses.append(panel.build_status.text()))
        panel.build(tmp_path / "db", "tiny")
        assert cluster.scheduler_address in panel.build_status.text()
        qtbot.waitUntil(lambda: bool(shown) or bool(errors), timeout=180000)
    assert not errors, errors
    assert panel.database is not None and len(panel.database) > 0
    assert any("worker" in s and "batches" in s for s in statuses), statuses[-3:]


def _rotation_z(deg):
    a = np.deg2rad(deg)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    m[:3, 3] = (6.0, -9.0, 14.0)
    return m


@pytest.fixture
def native_patient(tmp_path):
    """The MNI T1 and demo segmentation on a 2 mm grid, moved into a scanner frame by a known
    rigid motion M (native RAS = M @ MNI) and stored LPS. Returns (scan, seg paths, M)."""
    from engine.imaging import load_volume, resample
    from gui.workbenches.tumor import DEMO_SCAN, DEMO_SEG

    t1 = load_volume(DEMO_SCAN)
    mni_aff = t1.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.ascontiguousarray(t1.data[::2, ::2, ::2]).astype(np.float32)
    labels = resample(load_volume(DEMO_SEG, "labels"), None, data.shape, mni_aff, order=0)
    M = _rotation_z(10.0)
    n0, n1 = data.shape[:2]
    lps = np.array([[-1, 0, 0, n0 - 1], [0, -1, 0, n1 - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    affine = M @ mni_aff @ lps
    scan = _save(tmp_path / "patient_t1.nii.gz", data[::-1, ::-1].copy(), affine)
    seg = _save(tmp_path / "patient_seg.nii.gz", labels[::-1, ::-1].astype(np.uint8).copy(),
                affine)
    return scan, seg, M


def _seed_registration_cache(scan_path, seg_path, M, options):
    """Store a known affine transform (MNI point -> native point = M) where `register` looks
    first (the per-test data dir), so the personalize job runs register (a cache hit) + fit +
    map back without minutes of optimizer on a shared CI machine."""
    from engine.imaging import load_volume
    from engine.imaging import reg_files
    from engine.imaging.registration import Registration, cache_dir, input_hash

    key = input_hash(load_volume(scan_path), load_volume(seg_path, "labels"), options)
    reg = Registration(M, None, None, np.eye(4), options.library, options.method,
                       quality={"ncc_before": 0.1, "ncc_after": 0.9}, key=key)
    assert reg_files.save_cached(reg, cache_dir() / key[:32])


def test_start_up_personalizes_the_native_demo_patient(qtbot, tiny_db, monkeypatch, tmp_path):
    """Start-up with a database: the bundled native demo patient in native space, register +
    fit as one job, fit back on the native grid, cursor at the origin, readout native RAS /
    file IJK / MNI, atlas check, export of native and MNI files."""
    import json

    from engine.imaging.registration import RegOptions
    from gui.workbenches.tumor import NATIVE_DEMO, TumorWorkbench
    from gui.workbenches.tumor_fit_panel import REGISTRATIONS

    scan_path, seg_path = NATIVE_DEMO / "scan_t1.nii.gz", NATIVE_DEMO / "seg.nii.gz"
    truth = json.loads((NATIVE_DEMO / "truth.json").read_text())
    M = np.asarray(truth["motion_matrix_mni_to_native"])   # rigid part of the true motion
    _seed_registration_cache(scan_path, seg_path, M,
                             RegOptions(**next(iter(REGISTRATIONS.values()))))  # the default
    monkeypatch.setenv("TUMOR_DB", str(tiny_db))
    jobs = JobRunner()
    wb = TumorWorkbench(jobs)
    qtbot.addWidget(wb)
    wb.resize(1200, 800)
    wb.show()
    errors, before_fit = [], []
    wb.error.connect(errors.append)
    wb.patient_loaded.connect(lambda p: before_fit.append(wb.viewer.readout_text))
    panel = wb.personalize_panel
    wb.load_demo()
    qtbot.waitUntil(lambda: (panel.fit is not None and not jobs.busy) or bool(errors),
                    timeout=180000)
    assert not errors, errors
    # the patient's own scan in native space (LPS file shown RAS+) with its segmentation
    file_data = np.asarray(nib.load(str(scan_path)).dataobj)
    assert wb.space == "native" and wb.viewer.volume is wb.scan and wb.scan.name == "scan_t1.nii.gz"
    assert wb.scan.shape == file_data.shape and wb.scan.orientation == "LPS"
    assert "native" in wb.views.tabText(0)
    seg_file = np.asarray(nib.load(str(seg_path)).dataobj)
    assert (wb.viewer.layers[SEGMENTATION].data > 0).sum() == (seg_file > 0).sum()
    assert "MNI (not registered)" in before_fit[0]
    fit = panel.fit
    assert fit.space == "native" and fit.registration is not None and wb.fit is fit
    assert fit.registration.cached
    est = fit.estimate
    origin_native = M[:3, :3] @ np.asarray(est.origin_mm) + M[:3, 3]
    np.testing.assert_allclose(fit.origin_scan_mm, origin_native, atol=0.05)
    expect_ijk = np.round(wb.scan.mm_to_vox(origin_native))
    assert np.abs(np.array(wb.cursor.ijk) - expect_ijk).max() <= 1   # cursor at the origin
    assert np.linalg.norm(origin_native - truth["origin_native_mm"]) < 20.0
    u = wb.viewer.layers[FIT_U].data
    assert u.shape == wb.scan.shape and (u >= 0.2).sum() > 0
    observed = wb.viewer.layers[SEGMENTATION].data > 0
    assert ((u >= 0.2) & observed).sum() > 0.3 * min((u >= 0.2).sum(), observed.sum())
    # readout: file IJK, native RAS and MNI = M^-1 RAS at the cursor
    ras = wb.scan.vox_to_mm(wb.cursor.ijk)
    mni = np.linalg.solve(M, np.r_[ras, 1.0])[:3]
    text = wb.viewer.readout_text
    fi = [int(v) for v in wb.scan.ras_to_file_index(wb.cursor.ijk)]
    assert f"IJK (file) [{fi[0]}, {fi[1]}, {fi[2]}]" in text
    assert "RAS ({:.1f}, {:.1f}, {:.1f}) mm".format(*ras) in text
    assert "MNI ({:.1f}, {:.1f}, {:.1f}) mm".format(*mni) in text
    assert "native RAS" in panel.results.text()
    # atlas check: the registered scan over the template, cursor on the same MNI point
    assert wb.atlas.has_registration
    assert wb.atlas.viewer.layers["registered scan"].data.shape == (197, 233, 189)
    wb.views.setCurrentWidget(wb.atlas)
    t = wb.atlas.template
    assert np.abs(np.array(wb.atlas.cursor.ijk) - t.mm_to_vox(mni)).max() <= 1
    wb.atlas.resize(900, 700)
    QApplication.processEvents()
    blend = _pixels(wb.atlas.viewer.render_views())
    wb.atlas.mode.setCurrentText("Checkerboard")
    assert np.any(_pixels(wb.atlas.viewer.render_views()) != blend, -1).sum() > 1000
    # export: the service's native and MNI files
    panel.export_to(tmp_path / "out")
    qtbot.waitUntil(lambda: not jobs.busy, timeout=60000)
    assert not errors, errors
    out = tmp_path / "out"
    for f in ("estimate.json", "tumor_concentration.nii.gz", "tumor_labels.nii.gz",
              "tumor_concentration_mni.nii.gz", "transform_affine.mat"):
        assert (out / f).is_file(), f
    assert nib.load(str(out / "tumor_labels.nii.gz")).shape == seg_file.shape
    assert json.loads((out / "estimate.json").read_text())["space"] == "native"


def _write_dicom_series(folder, data, uid, description, spacing=(1.5, 1.5, 3.0)):
    """Slices of ``data`` (X, Y, Z) as one DICOM series (SimpleITK writer, LPS positions)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(data.shape[2]):
        img = sitk.GetImageFromArray(np.ascontiguousarray(data[:, :, k].T.astype(np.int16)))
        img.SetSpacing(spacing[:2])
        for tag, value in (("0020|000e", uid), ("0008|103e", description),
                           ("0020|0013", str(k + 1)), ("0008|0060", "MR"),
                           ("0020|0032", f"0\\0\\{k * spacing[2]}"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0018|0050", str(spacing[2])),
                           ("0008|0018", f"{uid}.{k + 1}")):
            img.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{description}_{k:03d}.dcm"))
        writer.Execute(img)


def test_import_dicom_offers_a_choice_between_series(qtbot, tmp_path):
    from gui.workbenches.tumor import TumorWorkbench

    rng = np.random.default_rng(1)
    a = rng.integers(0, 100, (24, 20, 6))
    b = rng.integers(200, 300, (16, 18, 5))
    _write_dicom_series(tmp_path / "dcm", a, "1.2.826.0.1.3680043.2.1125.1", "t1_axial")
    _write_dicom_series(tmp_path / "dcm", b, "1.2.826.0.1.3680043.2.1125.2", "flair_axial")
    jobs = JobRunner()
    wb = TumorWorkbench(jobs)
    qtbot.addWidget(wb)
    errors, offered = [], []
    wb.error.connect(errors.append)

    def choose(infos):
        offered.extend(i.description for i in infos)
        return next(i.uid for i in infos if i.description == "flair_axial")

    wb.import_dicom(tmp_path / "dcm", choose=choose)
    qtbot.waitUntil(lambda: (wb.scan is not None and not jobs.busy) or bool(errors),
                    timeout=60000)
    assert not errors, errors
    assert sorted(offered) == ["flair_axial", "t1_axial"]
    assert wb.scan.shape == b.shape and wb.space == "native"
    assert float(wb.scan.data.min()) >= 200          # the chosen series, not the other one
    empty = tmp_path / "empty"
    empty.mkdir()
    wb.import_dicom(empty)
    qtbot.waitUntil(lambda: bool(errors), timeout=30000)
    assert str(empty) in errors[0]


def test_open_brats_folder_and_a_folder_without_segmentation(qtbot, native_patient, tmp_path):
    import shutil

    from gui.workbenches.tumor import TumorWorkbench

    scan_path, seg_path, _ = native_patient
    folder = tmp_path / "BraTS-GLI-00001-000"
    folder.mkdir()
    shutil.copy(scan_path, folder / "BraTS-GLI-00001-000-t1n.nii.gz")
    shutil.copy(seg_path, folder / "BraTS-GLI-00001-000-seg.nii.gz")
    jobs = JobRunner()
    wb = TumorWorkbench(jobs)
    qtbot.addWidget(wb)
    errors, patients = [], []
    wb.error.connect(errors.append)
    wb.patient_loaded.connect(patients.append)
    wb.open_paths([str(folder)], "patient")
    qtbot.waitUntil(lambda: bool(patients) or bool(errors), timeout=60000)
    assert not errors, errors
    assert patients[0].modality == "t1" and wb.space == "native"
    assert wb.scan.name.endswith("-t1n.nii.gz") and wb.seg.name.endswith("-seg.nii.gz")
    assert SEGMENTATION in wb.viewer.layers and wb.seg_on_scan[wb.cursor.ijk] > 0
    (folder / "BraTS-GLI-00001-000-seg.nii.gz").unlink()
    wb.open_patient_folder(folder)
    qtbot.waitUntil(lambda: bool(errors), timeout=30000)
    assert "no segmentation" in errors[0] and "t1n.nii.gz" in errors[0]
    assert wb.scan.name.endswith("-t1n.nii.gz")          # what was shown stays
