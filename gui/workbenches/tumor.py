"""Tumor workbench: the linked orthogonal MRI viewer in the centre, panels on the right.

For the other panels: ``self.viewer`` (:class:`gui.viewers.ortho.OrthoViewer`, its API is in
that module's docstring), ``self.cursor`` (the shared :class:`gui.models.Cursor3D`),
``self.scan`` (the displayed :class:`engine.imaging.Volume`), ``self.seg`` (the loaded
segmentation Volume on its own grid, or None) and ``self.seg_on_scan`` ((X, Y, Z) int16 labels
resampled onto the scan grid, or None). Signals ``scan_loaded(Volume)`` and
``segmentation_loaded(Volume)`` fire after a file is shown. ``add_panel(title, widget)`` adds a
page to the right-hand tool box.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QSplitter, QToolBox

from gui.models import Cursor3D
from gui.viewers.display_panel import DisplayPanel
from gui.viewers.ortho import OrthoViewer
from gui.workbenches.base import Workbench

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCAN = ROOT / "resources" / "mni152" / "mni152_t1_1mm.nii.gz"
DEMO_SEG = ROOT / "resources" / "demo_tumor" / "demo_seg.nii.gz"
SEG_OVERLAY = "segmentation"


def load_scan_job(path, seg=None, *, progress, cancel):
    """Job: load and validate a scan; with an open segmentation ``seg`` also resample it onto
    the new scan grid. Returns (scan, labels on the scan grid or None, problem sentence or None)."""
    from engine.imaging import check_overlap, load_volume, resample
    from engine.jobs import InputError

    scan = load_volume(path, "scan", progress=progress.sub(0.0, 0.7), cancel=cancel)
    if seg is None:
        return scan, None, None
    try:
        check_overlap(scan, seg)
    except InputError as err:
        return scan, None, str(err)
    cancel.check()
    progress.update(0.8, "resampling the segmentation onto the scan grid")
    return scan, resample(seg, None, scan.shape, scan.affine, order=0), None


def load_segmentation_job(path, scan, *, progress, cancel):
    """Job: load a label map, check it overlaps ``scan`` and resample it onto the scan grid
    (nearest neighbour). Returns (seg Volume, (X, Y, Z) int16 labels on the scan grid)."""
    from engine.imaging import check_overlap, load_volume, resample

    seg = load_volume(path, "labels", progress=progress.sub(0.0, 0.6), cancel=cancel)
    if scan is None:
        return seg, seg.data
    check_overlap(scan, seg)
    cancel.check()
    progress.update(0.7, "resampling onto the scan grid")
    on_scan = resample(seg, None, scan.shape, scan.affine, order=0)
    progress.done("segmentation ready")
    return seg, on_scan


class TumorWorkbench(Workbench):
    title = "Tumor"
    scan_loaded = Signal(object)
    segmentation_loaded = Signal(object)

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.cursor = Cursor3D()
        self.viewer = OrthoViewer(self.cursor)
        self.scan = None
        self.seg = None
        self.seg_on_scan = None
        self.panels = QToolBox()
        self.panels.setMinimumWidth(280)
        self.display_panel = DisplayPanel(self.viewer)
        self.add_panel("Display", self.display_panel)
        from gui.workbenches.tumor_db_panel import DatabasePanel
        from gui.workbenches.tumor_fit_panel import PersonalizePanel

        self.database_panel = DatabasePanel(self)
        self.personalize_panel = PersonalizePanel(self)
        self.add_panel("Database", self.database_panel)
        self.add_panel("Personalize", self.personalize_panel)
        self.database_panel.database_changed.connect(
            lambda db: self.personalize_panel.set_database(db.root))
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.viewer)
        splitter.addWidget(self.panels)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([1080, 320])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)
        self.viewer.readout.connect(self.readout.emit)

    def add_panel(self, title: str, widget) -> None:
        """Add a page (e.g. Database, Personalize) to the right-hand tool box."""
        self.panels.addItem(widget, title)

    # loading ------------------------------------------------------------------------------
    def load_demo(self) -> None:
        """Show the bundled MNI152 T1 (26 ms: inline) with the bundled demo segmentation (a job),
        and the demo tumor database when one has been built."""
        if self.scan is not None:
            return
        from engine.imaging import load_volume
        from engine.jobs import InputError

        try:
            self.show_scan(load_volume(DEMO_SCAN, "scan"))
        except InputError as err:
            self.error.emit(str(err))
            return
        self.open_paths([str(DEMO_SEG)], "segmentation")
        from engine.tumor.database import default_db_dir

        if (default_db_dir("demo") / "manifest.json").is_file():  # built by `make run`
            if self.database_panel.open_database(default_db_dir("demo")):
                self.jobs.ended.connect(self._fit_demo_once)  # after the segmentation's job

    def _fit_demo_once(self) -> None:
        """Personalize the demo segmentation once, so the first screen shows a fit."""
        self.jobs.ended.disconnect(self._fit_demo_once)
        if self.seg is not None and self.database_panel.database is not None:
            self.panels.setCurrentWidget(self.personalize_panel)
            self.personalize_panel.personalize()

    def open_paths(self, paths: list[str], kind: str) -> None:
        if not paths:
            return
        path = paths[-1]
        if kind == "scan":
            self.jobs.start(f"Open {Path(path).name}", load_scan_job, path, self.seg,
                            on_done=self._scan_done, on_failed=self.error.emit)
        elif kind in ("segmentation", "labels", "seg"):
            self.jobs.start(f"Open {Path(path).name}", load_segmentation_job, path, self.scan,
                            on_done=self._segmentation_done, on_failed=self.error.emit)
        else:
            self.error.emit(f"The Tumor workbench cannot open {kind} files ('{path}').")

    def _scan_done(self, result) -> None:
        scan, on_scan, problem = result
        self.show_scan(scan, on_scan)
        if problem:
            self.error.emit(problem)

    def show_scan(self, volume, seg_on_scan=None) -> None:
        """Display a loaded scan. ``seg_on_scan``: the open segmentation already resampled onto
        it (the scan job does that); without it the segmentation is closed."""
        self.scan = volume
        self.viewer.remove_overlay(SEG_OVERLAY)
        self.viewer.set_volume(volume)
        self.scan_loaded.emit(volume)
        if seg_on_scan is not None and self.seg is not None:
            self.show_segmentation(self.seg, seg_on_scan)
        else:
            self.seg = self.seg_on_scan = None

    def _segmentation_done(self, result) -> None:
        seg, on_scan = result
        if self.scan is None:
            return
        self.show_segmentation(seg, on_scan)

    def show_segmentation(self, seg, on_scan) -> None:
        """Overlay a label map already resampled onto the scan grid and move the cursor to
        the centre of the tumor."""
        import numpy as np

        self.seg, self.seg_on_scan = seg, on_scan
        self.viewer.add_overlay(SEG_OVERLAY, on_scan, kind="labels", opacity=0.5)
        tumor = np.argwhere(on_scan > 0)
        if len(tumor):
            self.cursor.set_ijk(np.round(tumor.mean(axis=0)))
        self.segmentation_loaded.emit(seg)
