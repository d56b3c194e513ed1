"""Personalize panel of the Tumor workbench: fit the tumor model to the open segmentation.

``PersonalizePanel(workbench)`` uses ``workbench.viewer`` / ``cursor`` / ``scan`` / ``seg`` /
``jobs`` / ``error`` (see gui/workbenches/tumor.py). Personalize runs
:func:`engine.tumor.inverse.fit` as a job; the result is shown as overlays on the scan grid
(fitted concentration as a colour map, outlines of the fitted core and whole tumor as label
overlays of their boundary voxels; the observed segmentation is the workbench's own overlay),
each with a toggle, and as a results table. The cursor jumps to the fitted origin. The growth
slider regrows the fitted tumor for another T (days) with the solver (a job): with Dw and rho
fixed for the stated T, tau' = rho T'. Export writes estimate.json/.csv and the NIfTI outputs
(engine/tumor/export.py); Save screenshot writes the viewer as PNG.
"""
from __future__ import annotations


import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QSlider, QSpinBox, QVBoxLayout,
                               QWidget)

from engine.tumor.database import default_db_dir

SEG_OVERLAY = "segmentation"            # the workbench's observed segmentation overlay
FIT_U = "fitted tumor"
FIT_CORE = "fitted core outline"
FIT_WHOLE = "fitted whole outline"
CORE_COLOR = (255, 60, 200)
WHOLE_COLOR = (0, 220, 255)
U_LEVELS = (0.1, 1.0)            # u <= 0.1 transparent


def overlays_on_scan(u, anatomy_affine, scan, thresholds) -> dict:
    """Fitted u (database grid) -> {FIT_U: u (scan grid), FIT_CORE / FIT_WHOLE: uint8 outlines}."""
    from scipy import ndimage

    from engine.tumor.export import on_grid

    u_scan = on_grid(u, anatomy_affine, scan.shape, scan.affine)
    out = {FIT_U: u_scan}
    for name, key in ((FIT_CORE, "core"), (FIT_WHOLE, "whole")):
        mask = u_scan >= np.float32(thresholds[key])
        out[name] = (mask & ~ndimage.binary_erosion(mask)).astype(np.uint8)
    return out


def personalize_job(db_dir, seg, scan, T_days, top_k, refine, *, progress, cancel):
    """Job: open the database, fit the segmentation Volume ``seg``, prepare the overlays on the
    scan grid. Returns (Estimate, overlays dict)."""
    from engine.tumor.database import TumorDatabase
    from engine.tumor.inverse import fit, observation_from_volume

    obs = observation_from_volume(seg)
    db = TumorDatabase.open(db_dir)
    try:
        est = fit(db, obs, T_days, top_k=top_k, refine=refine, progress=progress.sub(0, 0.9),
                  cancel=cancel)
    finally:
        db.close()
    cancel.check()
    progress.update(0.92, "overlays")
    return est, overlays_on_scan(est.u, est.anatomy.affine, scan, est.thresholds)


def regrow_job(est, scan, T_days, *, progress, cancel):
    """Job: the fitted tumor at another time T_days (same Dw, rho) -> (T_days, overlays)."""
    from engine.tumor.inverse import regrow

    tau = est.tau * float(T_days) / est.T_days
    u = regrow(est.anatomy, est.lambda_mm, est.origin_mm, tau, progress=progress.sub(0, 0.9),
               cancel=cancel)
    return float(T_days), overlays_on_scan(u, est.anatomy.affine, scan, est.thresholds)


def export_job(est, out_dir, *, progress, cancel):
    from engine.tumor.export import render, write_outputs

    progress.update(0.1, "rendering")
    files = render(est)
    cancel.check()
    paths = write_outputs(est, out_dir, files)
    progress.done("exported")
    return paths


class PersonalizePanel(QWidget):
    """Database + segmentation -> Personalize; overlays, toggles, results, growth, export."""

    def __init__(self, workbench, parent=None):
        super().__init__(parent)
        self.wb = workbench
        self.estimate = None
        self.shown_days = None
        self._pending_days = None  # a slider move made while another job ran
        workbench.jobs.ended.connect(self._flush_pending_growth)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        row = QHBoxLayout()
        self.db_edit = QLineEdit(str(default_db_dir()))
        self.db_edit.setToolTip("tumor simulation database folder (main.py tumor build-db)")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_db)
        row.addWidget(QLabel("Database"))
        row.addWidget(self.db_edit, 1)
        row.addWidget(browse)
        lay.addLayout(row)
        self.open_seg_button = QPushButton("Open segmentation…")
        self.open_seg_button.clicked.connect(self._open_seg)
        lay.addWidget(self.open_seg_button)

        form = QFormLayout()
        self.days = QDoubleSpinBox()
        self.days.setRange(1.0, 5000.0)
        self.days.setValue(100.0)
        self.days.setSuffix(" days")
        self.days.setToolTip("stated time since onset T: Dw = mu1^2 / T, rho = mu2^2 / T")
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 1000)
        self.top_k.setValue(50)
        self.refine = QCheckBox("refine with forward runs")
        self.refine.setChecked(True)
        form.addRow("Stated T", self.days)
        form.addRow("Top-k", self.top_k)
        form.addRow(self.refine)
        lay.addLayout(form)
        self.personalize_button = QPushButton("Personalize")
        self.personalize_button.clicked.connect(self.personalize)
        lay.addWidget(self.personalize_button)

        self.toggles = {}
        for name, label in ((SEG_OVERLAY, "observed segmentation"), (FIT_U, "fitted tumor (u)"),
                            (FIT_CORE, "fitted core outline (u ≥ 0.6)"),
                            (FIT_WHOLE, "fitted whole outline (u ≥ 0.2)")):
            box = QCheckBox(label)
            box.setChecked(True)
            box.toggled.connect(lambda on, n=name: self._toggle(n, on))
            self.toggles[name] = box
            lay.addWidget(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Fit opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(self._set_opacity)
        row.addWidget(self.opacity, 1)
        lay.addLayout(row)

        self.results = QLabel("No fit yet: open a segmentation and press Personalize.")
        self.results.setTextFormat(Qt.TextFormat.RichText)
        self.results.setWordWrap(True)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.results)

        row = QHBoxLayout()
        self.growth_label = QLabel("Growth: –")
        row.addWidget(self.growth_label)
        lay.addLayout(row)
        self.growth = QSlider(Qt.Orientation.Horizontal)
        self.growth.setRange(10, 1500)
        self.growth.setSingleStep(10)
        self.growth.setPageStep(50)
        self.growth.setValue(100)
        self.growth.setEnabled(False)
        self.growth.setToolTip("regrow the fitted tumor for another T (days), same Dw and rho")
        self.growth.valueChanged.connect(self._growth_moved)
        self.growth.sliderReleased.connect(lambda: self.set_growth_days(self.growth.value()))
        lay.addWidget(self.growth)

        row = QHBoxLayout()
        self.export_button = QPushButton("Export…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._export_dialog)
        self.shot_button = QPushButton("Save screenshot…")
        self.shot_button.clicked.connect(self._screenshot_dialog)
        row.addWidget(self.export_button)
        row.addWidget(self.shot_button)
        lay.addLayout(row)
        lay.addStretch(1)

    # inputs --------------------------------------------------------------------------------
    def _browse_db(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Tumor database folder", self.db_edit.text())
        if path:
            self.db_edit.setText(path)

    def _open_seg(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open segmentation", "",
                                              "NIfTI images (*.nii *.nii.gz);;All files (*)")
        if path:
            self.wb.open_paths([path], "segmentation")

    def set_database(self, path) -> None:
        self.db_edit.setText(str(path))

    # fit -----------------------------------------------------------------------------------
    def personalize(self) -> None:
        """Start the fit of the open segmentation as a job."""
        if self.wb.seg is None or self.wb.scan is None:
            self.wb.error.emit("Open a scan and a tumor segmentation first (File > Open).")
            return
        self.wb.jobs.start("Personalize", personalize_job, self.db_edit.text(), self.wb.seg,
                           self.wb.scan, float(self.days.value()), int(self.top_k.value()),
                           self.refine.isChecked(), on_done=self._fit_done,
                           on_failed=self.wb.error.emit)

    def _fit_done(self, result) -> None:
        est, overlays = result
        self.estimate = est
        self._show_overlays(overlays)
        self.shown_days = est.T_days
        self.growth.blockSignals(True)
        self.growth.setValue(int(round(est.T_days)))
        self.growth.blockSignals(False)
        self.growth.setEnabled(True)
        self.export_button.setEnabled(True)
        self._update_growth_label()
        self.results.setText(self.results_html())
        scan = self.wb.scan
        self.wb.cursor.set_ijk(scan.mm_to_vox(est.origin_mm))
        self.wb.readout.emit(f"fitted: Dice core {est.dice_core:.2f}, whole "
                             f"{est.dice_whole:.2f}; origin at the cursor")

    def _show_overlays(self, overlays) -> None:
        v = self.wb.viewer
        first = FIT_U not in v.overlays
        v.add_overlay(FIT_U, overlays[FIT_U], kind="scalar", colors="inferno",
                      opacity=self.opacity.value() / 100.0, levels=U_LEVELS)
        if first and SEG_OVERLAY in v.overlays:      # observed labels above the fitted u
            seg = v.overlays[SEG_OVERLAY]
            data, opacity, visible = seg.data, seg.opacity, seg.visible
            v.remove_overlay(SEG_OVERLAY)
            v.add_overlay(SEG_OVERLAY, data, kind="labels", opacity=opacity)
            v.set_overlay_visible(SEG_OVERLAY, visible)
        v.add_overlay(FIT_CORE, overlays[FIT_CORE], kind="labels", colors={1: CORE_COLOR},
                      opacity=1.0)
        v.add_overlay(FIT_WHOLE, overlays[FIT_WHOLE], kind="labels", colors={1: WHOLE_COLOR},
                      opacity=1.0)
        thr = self.estimate.thresholds if self.estimate is not None else {"core": 0.6,
                                                                          "whole": 0.2}
        v.overlays[FIT_CORE].names = {0: "-", 1: f"core boundary (u = {thr['core']:g})"}
        v.overlays[FIT_WHOLE].names = {0: "-", 1: f"whole boundary (u = {thr['whole']:g})"}
        for name in (FIT_U, FIT_CORE, FIT_WHOLE):
            v.set_overlay_visible(name, self.toggles[name].isChecked())

    def results_html(self) -> str:
        est = self.estimate
        d = est.to_dict()
        u = d["uncertainty"]
        o = d["origin_mm"]
        t = d["timings_s"]

        def pm(key, fmt):
            return f"{format(d[key], fmt)} ± {format(u[key]['std'], fmt)}"

        rows = [("μ1 = √(Dw T)", pm("mu1_cm", ".3f") + " cm"),
                ("μ2 = √(ρ T)", pm("mu2", ".3f")),
                (f"Dw (T = {d['T_days']:g} d)", pm("Dw_cm2_per_day", ".3g") + " cm²/day"),
                (f"ρ (T = {d['T_days']:g} d)", pm("rho_per_day", ".3g") + " /day"),
                ("origin (MNI)", f"({o[0]:.1f}, {o[1]:.1f}, {o[2]:.1f}) mm "
                                 f"± {u['origin_mm']['rms_distance']:.1f} mm"),
                ("Dice core / whole", f"{d['dice_core']:.3f} / {d['dice_whole']:.3f}"),
                ("plausible fits", f"{u['n_plausible']} within {u['score_delta']:g} of the "
                                   "best score"),
                ("time", f"{t['total']:.2f} s (query {t['query'] * 1000:.0f} ms, refine "
                         f"{t['refine']:.2f} s)")]
        body = "".join(f"<tr><td><b>{a}</b></td><td>{b}</td></tr>" for a, b in rows)
        return f"<table cellspacing='2'>{body}</table>"

    # overlays --------------------------------------------------------------------------------
    def _toggle(self, name: str, on: bool) -> None:
        if name in self.wb.viewer.overlays:
            self.wb.viewer.set_overlay_visible(name, on)

    def _set_opacity(self, value: int) -> None:
        if FIT_U in self.wb.viewer.overlays:
            self.wb.viewer.set_overlay_opacity(FIT_U, value / 100.0)

    # growth ----------------------------------------------------------------------------------
    def _update_growth_label(self) -> None:
        est = self.estimate
        if est is None:
            return
        tag = " (fit)" if self.shown_days == est.T_days else ""
        self.growth_label.setText(f"Growth: T = {self.shown_days:g} days{tag}, "
                                  f"stated {est.T_days:g}")

    def _growth_moved(self, value: int) -> None:
        if not self.growth.isSliderDown():       # keyboard / programmatic: regrow now
            self.set_growth_days(value)

    def set_growth_days(self, days: float) -> None:
        """Regrow the fitted tumor for T = ``days`` (a job; queued while another runs)."""
        if self.estimate is None:
            return
        if self.wb.jobs.busy:
            self._pending_days = float(days)
            return
        self._pending_days = None
        self.wb.jobs.start(f"Regrow to {days:g} days", regrow_job, self.estimate, self.wb.scan,
                           float(days), on_done=self._regrow_done, on_failed=self.wb.error.emit)

    def _flush_pending_growth(self) -> None:
        days, self._pending_days = self._pending_days, None
        if days is not None and days != self.shown_days:
            self.set_growth_days(days)

    def _regrow_done(self, result) -> None:
        days, overlays = result
        self._show_overlays(overlays)
        self.shown_days = days
        self._update_growth_label()

    # export ----------------------------------------------------------------------------------
    def _export_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export the fit into folder")
        if path:
            self.export_to(path)

    def export_to(self, out_dir) -> None:
        """Write estimate.json, estimate.csv and the NIfTI outputs into ``out_dir`` (a job)."""
        if self.estimate is None:
            self.wb.error.emit("Nothing to export yet: run Personalize first.")
            return
        self.wb.jobs.start("Export fit", export_job, self.estimate, str(out_dir),
                           on_done=lambda paths: self.wb.readout.emit(
                               f"exported {len(paths)} files to {out_dir}"),
                           on_failed=self.wb.error.emit)

    def _screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "tumor_fit.png",
                                              "PNG images (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path) -> None:
        self.wb.viewer.save_png(path)
        self.wb.readout.emit(f"saved {path}")
