#!/usr/bin/env python3
"""Slice redraw rate of the linked MRI viewer while scrubbing (offscreen Qt).

Scrubs the axial slice through the whole bundled MNI152 T1 (197x233x189, 1 mm) and forces a
synchronous repaint after every step, like holding an arrow key. Rows:

- baseline: a bare pyqtgraph ImageItem in a ViewBox of the same size (setImage + repaint)
- viewer, axial view: OrthoViewer cursor step (slice, cross-hairs, readout) + repaint of the
  axial view
- viewer, all views: the same + repaint of all three views and the info cell (the other two
  views redraw their cross-hair lines)
- viewer + label overlay: all views with a BraTS-like label overlay at opacity 0.5
- render_views(): the offscreen path used by tests and screenshots (whole viewer to a QImage)

Prints frames per second (median of --runs runs) and the ratio to the baseline.
Usage: .venv/bin/python benchmarks/gui_viewer.py [--runs 5] [--size 1100x850]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _scrub(step, n: int) -> float:
    """Frames per second for ``n`` calls of ``step(index)``."""
    t0 = time.perf_counter()
    for k in range(n):
        step(k)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", default="1100x850", help="viewer size in pixels, WxH")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    import numpy as np
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    import gui  # noqa: F401  (pyqtgraph row-major config)
    from engine.imaging import load_volume
    from gui.viewers.ortho import OrthoViewer
    from gui.workbenches.tumor import DEMO_SCAN

    app = QApplication.instance() or QApplication([])
    vol = load_volume(DEMO_SCAN)
    nz = vol.shape[2]

    # baseline: bare ImageItem
    gv = pg.GraphicsView()
    vb = pg.ViewBox(lockAspect=True)
    gv.setCentralItem(vb)
    item = pg.ImageItem()
    vb.addItem(item)
    gv.resize(width // 2, height // 2)
    gv.show()
    lv = (float(vol.data.min()), float(vol.data.max()))
    item.setImage(vol.data[:, :, 0].T, levels=lv)
    vb.autoRange()
    app.processEvents()

    def base_step(k):
        item.setImage(vol.data[:, :, k].T, autoLevels=False, levels=lv)
        gv.viewport().repaint()

    viewer = OrthoViewer()
    viewer.resize(width, height)
    viewer.show()
    viewer.set_volume(vol)
    app.processEvents()
    axial = viewer.views["axial"]

    def axial_step(k):
        viewer.cursor.set_axis(2, k)
        axial.viewport().repaint()

    def all_step(k):
        viewer.cursor.set_axis(2, k)
        for view in viewer.views.values():
            view.viewport().repaint()
        viewer.info.repaint()

    def grab_step(k):
        viewer.cursor.set_axis(2, k)
        viewer.render_views()

    def setup_overlay():
        ijk = np.indices(vol.shape, sparse=True)
        r = np.sqrt(sum((g - c) ** 2 for g, c in zip(ijk, (70, 120, 100))))
        labels = np.where(r < 12, 1, np.where(r < 18, 4, np.where(r < 28, 2, 0))).astype(np.int16)
        viewer.add_overlay("segmentation", labels, kind="labels", opacity=0.5)

    rows = [("baseline: bare ImageItem", base_step, None),
            ("viewer, axial view", axial_step, None),
            ("viewer, all views", all_step, None),
            ("viewer + label overlay, all views", all_step, setup_overlay),
            ("render_views() to QImage, + overlay", grab_step, None)]
    results = []
    for name, step, setup in rows:
        if setup is not None:
            setup()
            app.processEvents()
        step(0)  # warm-up
        fps = [_scrub(step, nz) for _ in range(args.runs)]
        results.append((name, statistics.median(fps), min(fps), max(fps)))
    base = results[0][1]
    print(f"Slice scrubbing, offscreen, {vol.shape} volume, {nz} axial slices per run, "
          f"viewer {width}x{height}, median of {args.runs} runs")
    print(f"{'case':<36} {'fps (median)':>12} {'min':>8} {'max':>8} {'ms/frame':>9} {'vs base':>8}")
    for name, med, lo, hi in results:
        print(f"{name:<36} {med:12.1f} {lo:8.1f} {hi:8.1f} {1000 / med:9.2f} {med / base:8.2f}")
    print()
    gui_thread_handlers(app, args.runs)
    return 0


def gui_thread_handlers(app, runs: int) -> None:
    """What the Tumor workbench does in the GUI thread when a job's result arrives (the jobs
    themselves run in worker threads): wall ms per handler, median of ``runs``; the design
    budget is ~50 ms. Uses the bundled native demo patient (MNI demo if it is absent) and a
    synthetic fit (a Gaussian u) so no database is needed."""
    import numpy as np

    from engine.imaging import load_volume, resample
    from engine.imaging.registration import template_volume
    from gui.viewers import FIT_U
    from gui.workbenches.tumor import DEMO_SCAN, DEMO_SEG, NATIVE_DEMO, TumorWorkbench
    from gui.workbenches.tumor_atlas import prepare
    from gui.workbenches.tumor_fit_jobs import fit_layers
    from gui.workers import JobRunner

    wb = TumorWorkbench(JobRunner())
    wb.resize(1400, 900)
    wb.show()
    scan_path, seg_path = NATIVE_DEMO / "scan_t1.nii.gz", NATIVE_DEMO / "seg.nii.gz"
    if not scan_path.is_file():
        scan_path, seg_path = DEMO_SCAN, DEMO_SEG
    scan, seg = load_volume(scan_path), load_volume(seg_path, "labels")
    on_scan = resample(seg, None, scan.shape, scan.affine, order=0)
    ijk = np.indices(scan.shape, sparse=True)
    c = np.argwhere(on_scan > 0).mean(0)
    r2 = sum(((g - ci) * s) ** 2 for g, ci, s in zip(ijk, c, scan.voxel_size_mm))
    layers = fit_layers(np.exp(-r2 / (2 * 15.0 ** 2)).astype(np.float32), {"core": 0.6,
                                                                            "whole": 0.2})
    t = template_volume()
    atlas01 = prepare(t.data[::-1].copy(), t)

    def show_patient():
        wb.show_scan(scan, space="native", clear_seg=True)
        wb.show_segmentation(seg, on_scan)

    def show_fit():
        from gui.workbenches.tumor_fit_jobs import FitView

        class Est:
            thresholds = {"core": 0.6, "whole": 0.2}

        wb.personalize_panel.fit = FitView(Est(), None, layers[FIT_U], np.zeros(3))
        wb.personalize_panel._show_layers(layers)

    rows = [("show patient (scan + segmentation)", show_patient),
            ("show fit layers (u + 2 outlines)", show_fit),
            ("layer opacity via the model", lambda: setattr(wb.viewer.layers[FIT_U], "opacity",
                                                            np.random.rand())),
            ("cursor move (3 views + readout)", lambda: wb.cursor.set_ijk(
                [np.random.randint(0, n) for n in scan.shape])),
            ("atlas check: set registration", lambda: wb.atlas.set_registration(atlas01, t)),
            ("atlas check: blend <-> checkerboard", lambda: wb.atlas.mode.setCurrentIndex(
                1 - wb.atlas.mode.currentIndex()))]
    print(f"GUI-thread handlers, offscreen, scan {scan.shape} ({scan_path.name}), "
          f"median of {runs} runs")
    print(f"{'handler':<38} {'ms (median)':>11} {'min':>8} {'max':>8}")
    for name, fn in rows:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            app.processEvents()
            times.append(1000 * (time.perf_counter() - t0))
        print(f"{name:<38} {statistics.median(times):11.1f} {min(times):8.1f} {max(times):8.1f}")


if __name__ == "__main__":
    sys.exit(main())
