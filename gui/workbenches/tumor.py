"""Tumor workbench: a patient's scan in linked orthogonal views (native space), panels on the right,
an "Atlas check" tab that shows the registered scan over the MNI152 template.

Opening (each a background job): a BraTS folder (``open_patient_folder``), scan + segmentation
files (``open_scan_and_segmentation``), a DICOM series (``import_dicom``, a choice when the
folder holds several), or one file at a time (``open_paths(paths, "scan"|"segmentation")``).
Opening a new scan or segmentation clears the previous fit (layers, results, growth slider)
and says so in the status bar. With nothing opened it shows the bundled native demo patient
(resources/native_demo/) or, while that does not exist, the MNI152 T1 with the demo
segmentation; with a demo database present it personalizes that patient once.

Panels get their dependencies explicitly: ``DisplayPanel(viewer)``, ``DatabasePanel(jobs, viewer,
mni_to_vox)``, ``PersonalizePanel(viewer, cursor, jobs)`` (+ ``set_database`` with the Database
panel's open database, ``set_inputs`` with the shown patient). Attributes: ``viewer``,
``cursor``, ``scan`` (displayed Volume), ``seg`` (Volume on its own grid or None),
``seg_on_scan`` ((X, Y, Z) labels on the scan grid or None), ``space`` ("native" | "mni"),
``fit`` (the Personalize panel's FitView or None). Signals ``scan_loaded(Volume)``,
``segmentation_loaded(Volume)``, ``patient_loaded(object)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QInputDialog, QSplitter, QTabWidget, QToolBox

from gui.models import Cursor3D
from gui.viewers import SEGMENTATION
from gui.viewers.display_panel import DisplayPanel
from gui.viewers.ortho import OrthoViewer
from gui.workbenches.base import Workbench
from gui.workbenches.tumor_atlas import AtlasCheckView
from gui.workbenches.tumor_db_panel import DatabasePanel
from gui.workbenches.tumor_fit_panel import PersonalizePanel

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCAN = ROOT / "resources" / "mni152" / "mni152_t1_1mm.nii.gz"
DEMO_SEG = ROOT / "resources" / "demo_tumor" / "demo_seg.nii.gz"
NATIVE_DEMO = ROOT / "resources" / "native_demo"     # scan_t1.nii.gz + seg.nii.gz (by "native")
SEG_OVERLAY = SEGMENTATION      # older name


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


def load_patient_job(*, progress, cancel, **where):
    """Job: engine.imaging.patient.load_patient(folder= | scan=, seg= | dicom=, series=)."""
    from engine.imaging.patient import load_patient

    return load_patient(**where, progress=progress, cancel=cancel)


def list_series_job(folder, *, progress, cancel):
    """Job: the DICOM series in ``folder`` (engine.imaging.dicom.list_series)."""
    from engine.imaging.dicom import list_series

    progress.update(0.1, "reading DICOM headers")
    return list_series(folder)


def is_template(scan) -> bool:
    """True for the bundled MNI152 T1 (the MNI demo): its world coordinates are MNI mm."""
    return scan is not None and Path(str(getattr(scan, "path", ""))).resolve() == DEMO_SCAN


class TumorWorkbench(Workbench):
    title = "Tumor"
    scan_loaded = Signal(object)
    segmentation_loaded = Signal(object)
    patient_loaded = Signal(object)

    def __init__(self, jobs, parent=None):
        super().__init__(jobs, parent)
        self.cursor = Cursor3D()
        self.viewer = OrthoViewer(self.cursor)
        self.atlas = AtlasCheckView()
        self.scan = self.seg = self.seg_on_scan = None
        self.space = "mni"
        self.fit = None
        self.views = QTabWidget()
        self.views.addTab(self.viewer, "Patient (native space)")
        self.views.addTab(self.atlas, "Atlas check (MNI152)")
        self.views.currentChanged.connect(lambda _i: self._sync_atlas_cursor())
        self.panels = QToolBox()
        self.panels.setMinimumWidth(300)
        self.display_panel = DisplayPanel(self.viewer)
        self.database_panel = DatabasePanel(jobs, self.viewer, self._mni_to_vox)
        self.personalize_panel = PersonalizePanel(self.viewer, self.cursor, jobs)
        self.add_panel("Display", self.display_panel)
        self.add_panel("Database", self.database_panel)
        self.add_panel("Personalize", self.personalize_panel)
        for panel in (self.database_panel, self.personalize_panel):
            panel.error.connect(self.error.emit)
            panel.readout.connect(self.status.emit)
        self.database_panel.database_changed.connect(self.personalize_panel.set_database)
        self.personalize_panel.fitted.connect(self._on_fitted)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.views)
        splitter.addWidget(self.panels)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([1060, 340])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(splitter)
        self.viewer.readout.connect(self.readout.emit)
        self.viewer.add_coordinates("MNI", self._ras_to_mni)

    def add_panel(self, title: str, widget) -> None:
        """Add a page (e.g. Database, Personalize) to the right-hand tool box."""
        self.panels.addItem(widget, title)

    # coordinates -----------------------------------------------------------------------------
    def _ras_to_mni(self, ras_mm):
        """Readout: the displayed scan's RAS mm -> MNI mm (None before a registration)."""
        if self.space == "mni":
            return ras_mm
        reg = None if self.fit is None else self.fit.registration
        return None if reg is None else np.asarray(reg.native_to_mni(ras_mm), float)

    def _mni_to_vox(self, xyz_mni):
        """MNI mm (n, 3) -> voxel coordinates of the displayed scan, or None while unknown."""
        if self.scan is None:
            return None
        if self.space == "mni":
            return self.scan.mm_to_vox(xyz_mni)
        reg = None if self.fit is None else self.fit.registration
        return None if reg is None else self.scan.mm_to_vox(reg.mni_to_native(xyz_mni))

    def _on_fitted(self, view) -> None:
        self.fit = view
        if view.space == "mni":       # registration found the scan already in MNI152 space
            self.space = "mni"
            self.views.setTabText(0, "Patient (MNI152 space)")
        if view.atlas01 is not None:
            from engine.imaging.registration import template_volume

            self.atlas.set_registration(view.atlas01, template_volume())
            self._sync_atlas_cursor()
        self.database_panel.show_origins()
        self.viewer._update_readout()

    def _sync_atlas_cursor(self) -> None:
        """Put the atlas check's cursor on the MNI point under the patient cursor."""
        if not self.atlas.has_registration or self.scan is None:
            return
        mni = self._ras_to_mni(self.scan.vox_to_mm(self.cursor.ijk))
        if mni is not None:
            self.atlas.cursor.set_ijk(np.round(self.atlas.template.mm_to_vox(mni)))

    # loading ------------------------------------------------------------------------------
    def load_demo(self) -> None:
        """Start-up: the native demo patient when it exists, else the MNI152 T1 (inline, 26 ms)
        with the demo segmentation (a job); with a demo database, personalize it once."""
        if self.scan is not None:
            return
        from engine.tumor.database import default_db_dir

        db_dir = default_db_dir("demo")
        if (db_dir / "manifest.json").is_file():
            self.database_panel.open_in_job(db_dir)
            self.jobs.ended.connect(self._fit_demo_once)  # after the database and patient jobs
        scan, seg = NATIVE_DEMO / "scan_t1.nii.gz", NATIVE_DEMO / "seg.nii.gz"
        if scan.is_file() and seg.is_file():
            self.open_scan_and_segmentation(scan, seg)
        else:
            self.load_mni_demo()

    def load_mni_demo(self) -> None:
        """The bundled MNI152 T1 (inline, 26 ms) with the demo segmentation (a job)."""
        from engine.imaging import load_volume
        from engine.jobs import InputError

        try:
            self.show_scan(load_volume(DEMO_SCAN, "scan"), space="mni")
        except InputError as err:
            self.error.emit(str(err))
            return
        self.open_paths([str(DEMO_SEG)], "segmentation")

    def _fit_demo_once(self) -> None:
        """Personalize the demo patient once, so the first screen shows a fit."""
        if self.jobs.busy:
            return      # wait for the last job of the start-up chain
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
        elif kind in ("patient", "folder"):
            self.open_patient_folder(path)
        elif kind == "dicom":
            self.import_dicom(path)
        else:
            self.error.emit(f"The Tumor workbench cannot open {kind} files ('{path}').")

    def open_patient_folder(self, folder) -> None:
        """A BraTS 2021/2023 folder (scan: T1, else T1c, ...; the segmentation) as one job."""
        self.jobs.start(f"Open patient {Path(folder).name}", load_patient_job, folder=folder,
                        on_done=self.show_patient, on_failed=self.error.emit)

    def open_scan_and_segmentation(self, scan, seg) -> None:
        """A native scan and its segmentation (same or overlapping grid) as one job."""
        self.jobs.start(f"Open {Path(scan).name}", load_patient_job, scan=scan, seg=seg,
                        on_done=self.show_patient, on_failed=self.error.emit)

    def import_dicom(self, folder, series: str | None = None, choose=None) -> None:
        """A DICOM series as a new patient's scan (open its segmentation next); when the folder
        holds several series, ``choose(list[SeriesInfo]) -> uid`` (a dialog by default)."""
        if series is not None:
            self.jobs.start(f"Import DICOM {Path(folder).name}", load_patient_job, dicom=folder,
                            series=series, on_done=self.show_patient, on_failed=self.error.emit)
            return

        def listed(infos):
            if not infos:
                self.error.emit(f"'{folder}' holds no DICOM image series.")
                return
            uid = infos[0].uid if len(infos) == 1 else (choose or self._choose_series)(infos)
            if uid:
                self.import_dicom(folder, uid)

        self.jobs.start(f"Read DICOM {Path(folder).name}", list_series_job, folder,
                        on_done=listed, on_failed=self.error.emit)

    def _choose_series(self, infos) -> str | None:
        items = [f"{i.description or '(no description)'}  ({i.n_files} files)  {i.uid}"
                 for i in infos]
        item, ok = QInputDialog.getItem(self, "Import DICOM", "This folder holds several "
                                        "series; import:", items, 0, False)
        return infos[items.index(item)].uid if ok else None

    def show_patient(self, patient) -> None:
        """Show a loaded engine Patient (scan in native space + its segmentation)."""
        if patient.scan is None:
            self.error.emit("This patient has no scan to show.")
            return
        self.show_scan(patient.scan, space="native", clear_seg=True)
        if patient.seg is not None and patient.seg_on_scan is not None:
            self.show_segmentation(patient.seg, patient.seg_on_scan)
        self.patient_loaded.emit(patient)

    def _scan_done(self, result) -> None:
        scan, on_scan, problem = result
        self.show_scan(scan, on_scan)
        if problem:
            self.error.emit(problem)

    def show_scan(self, volume, seg_on_scan=None, space: str | None = None,
                  clear_seg: bool = False) -> None:
        """Display a loaded scan (clears the previous fit). ``seg_on_scan``: the open
        segmentation resampled onto it; without it the segmentation is closed. ``space``:
        "mni" / "native" (default: "mni" for the bundled template, else "native")."""
        self._clear_fit(f"opened the scan {getattr(volume, 'name', '')}".rstrip())
        self.scan = volume
        self.space = space or ("mni" if is_template(volume) else "native")
        self.viewer.remove_overlay(SEGMENTATION)
        self.viewer.set_volume(volume)
        self.views.setTabText(0, "Patient (MNI152 space)" if self.space == "mni"
                              else "Patient (native space)")
        self.database_panel.show_origins()
        self.scan_loaded.emit(volume)
        if seg_on_scan is not None and self.seg is not None and not clear_seg:
            self.show_segmentation(self.seg, seg_on_scan)
        else:
            self.seg = self.seg_on_scan = None
            self.personalize_panel.set_inputs(self.scan, None, self.space)

    def _segmentation_done(self, result) -> None:
        seg, on_scan = result
        if self.scan is None:
            return
        self.show_segmentation(seg, on_scan)

    def show_segmentation(self, seg, on_scan) -> None:
        """Overlay a label map already resampled onto the scan grid (clears the previous fit)
        and move the cursor to the centre of the tumor."""
        self._clear_fit(f"opened the segmentation {getattr(seg, 'name', '')}".rstrip())
        self.seg, self.seg_on_scan = seg, on_scan
        self.viewer.add_overlay(SEGMENTATION, on_scan, kind="labels", opacity=0.5)
        tumor = np.argwhere(on_scan > 0)
        if len(tumor):
            self.cursor.set_ijk(np.round(tumor.mean(axis=0)))
        self.personalize_panel.set_inputs(self.scan, seg, self.space)
        self.segmentation_loaded.emit(seg)

    def _clear_fit(self, reason: str) -> None:
        had_registration = self.fit is not None and self.fit.registration is not None
        self.fit = None
        self.personalize_panel.clear(reason)
        if had_registration:
            self.atlas.clear()

    # export ----------------------------------------------------------------------------------
    def export(self) -> None:
        """File > Export: the fit's native and MNI outputs into a folder."""
        self.personalize_panel._export_dialog()
