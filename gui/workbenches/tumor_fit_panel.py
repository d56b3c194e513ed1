"""Personalize panel of the Tumor workbench: fit the tumor model to the open patient.

``PersonalizePanel(viewer, cursor, jobs, database=None)``: its dependencies are explicit. The
workbench wires it: ``set_database(db)`` with the Database panel's OPEN database (never reopened
here), ``set_inputs(scan, seg, space)`` when a patient is shown, ``clear(reason)`` when another
scan or segmentation is opened. Signals: ``error(str)``, ``readout(str)``, ``fitted(FitView)``,
``cleared()``.

Personalize is ONE job: for a native scan, register to MNI152 + fit + map back
(engine.tumor.native.personalize_native); for MNI152-space inputs the fit service alone
(engine.tumor.service.fit). The result comes back on the displayed scan grid: fitted u as a
colour map and outlines of the fitted core / whole tumor (boundary voxels), each a layer of the
viewer's layer model with a toggle; a results table; the cursor jumps to the fitted origin. The
growth slider regrows the fitted tumor for another T with ``Estimate.regrow`` (a job). Export
writes the service's files (native and MNI outputs); Save screenshot writes the viewer as PNG.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QLabel, QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget)

from engine.jobs import InputError
from engine.tumor.params import THRESHOLDS
from gui.save_dialog import choose_folder, save_with_dialog
from gui.viewers import FIT_CORE, FIT_LAYERS, FIT_U, FIT_WHOLE, SEGMENTATION
from gui.workbenches.tumor_fit_jobs import (FitView, export_job, fit_layers,  # noqa: F401 (API)
                                            personalize_job, regrow_job)

CORE_COLOR = (255, 60, 200)
WHOLE_COLOR = (0, 220, 255)
U_LEVELS = (0.1, 1.0)            # u <= 0.1 transparent
# registration settings offered in the panel (engine.imaging.registration.RegOptions kwargs)
REGISTRATIONS = {"deformable (ANTs SyN, 2 mm)": {"library": "ants", "method": "syn"},
                 "affine only (fast)": {"library": "ants", "method": "affine"}}


class PersonalizePanel(QWidget):
    """Open database + patient -> Personalize; layers, toggles, results, growth, export."""

    error = Signal(str)
    readout = Signal(str)
    fitted = Signal(object)        # FitView
    cleared = Signal()

    def __init__(self, viewer, cursor, jobs, database=None, parent=None):
        super().__init__(parent)
        self.viewer, self.cursor, self.jobs = viewer, cursor, jobs
        self.database = database
        self.scan = self.seg = None
        self.space = "mni"
        self.fit: FitView | None = None
        self.shown_days = None
        self._pending_days = None  # a slider move made while another job ran
        jobs.ended.connect(self._flush_pending_growth)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.db_label = QLabel()
        self.db_label.setWordWrap(True)
        lay.addWidget(self.db_label)
        self._show_database_name()

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
        self.registration = QComboBox()
        self.registration.addItems(list(REGISTRATIONS))
        self.registration.setToolTip("registration of a native scan to MNI152 (cached: a refit "
                                     "does not register again)")
        form.addRow("Stated T", self.days)
        form.addRow("Top-k", self.top_k)
        form.addRow("Registration", self.registration)
        form.addRow(self.refine)
        lay.addLayout(form)
        self.personalize_button = QPushButton("Personalize")
        self.personalize_button.setToolTip("register (native scans) and fit: one job, Cancel "
                                           "in the status bar stops it")
        self.personalize_button.clicked.connect(self.personalize)
        lay.addWidget(self.personalize_button)

        self.toggles = {}
        thr = THRESHOLDS
        for name, label in ((SEGMENTATION, "observed segmentation"), (FIT_U, "fitted tumor (u)"),
                            (FIT_CORE, f"fitted core outline (u ≥ {thr['core']:g})"),
                            (FIT_WHOLE, f"fitted whole outline (u ≥ {thr['whole']:g})")):
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

        self.results = QLabel()
        self.results.setTextFormat(Qt.TextFormat.RichText)
        self.results.setWordWrap(True)
        self.results.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.results)
        self.growth_label = QLabel()
        lay.addWidget(self.growth_label)
        self.growth = QSlider(Qt.Orientation.Horizontal)
        self.growth.setRange(10, 1500)
        self.growth.setSingleStep(10)
        self.growth.setPageStep(50)
        self.growth.setToolTip("regrow the fitted tumor for another T (days), same Dw and rho")
        self.growth.valueChanged.connect(self._growth_moved)
        self.growth.sliderReleased.connect(lambda: self.set_growth_days(self.growth.value()))
        lay.addWidget(self.growth)

        row = QHBoxLayout()
        self.export_button = QPushButton("Export…")
        self.export_button.clicked.connect(self._export_dialog)
        self.shot_button = QPushButton("Save screenshot…")
        self.shot_button.clicked.connect(self._screenshot_dialog)
        row.addWidget(self.export_button)
        row.addWidget(self.shot_button)
        lay.addLayout(row)
        lay.addStretch(1)
        self._reset_results()

    @property
    def estimate(self):
        """The current fit's Estimate (None before a fit and after ``clear``)."""
        return None if self.fit is None else self.fit.estimate

    # inputs --------------------------------------------------------------------------------
    def set_database(self, database) -> None:
        """The Database panel's open TumorDatabase (used as is, never reopened here). A folder
        path (scripts, tests) is opened once here."""
        if isinstance(database, (str, Path)):
            from engine.tumor.service import open_database

            try:
                database = open_database(database)
            except InputError as err:
                self.error.emit(str(err))
                return
        self.database = database
        self._show_database_name()

    def _show_database_name(self) -> None:
        db = self.database
        self.db_label.setText("Database: none open (Database panel)" if db is None
                              else f"Database: <b>{getattr(db, 'root', db)}</b>")

    def set_inputs(self, scan, seg, space: str) -> None:
        """The displayed scan (Volume), the segmentation (Volume on its own grid, or None) and
        the scan's space ("native" or "mni")."""
        self.scan, self.seg, self.space = scan, seg, space

    # fit -----------------------------------------------------------------------------------
    def personalize(self) -> None:
        """Start register (native) + fit of the open patient as one job."""
        if self.seg is None or self.scan is None:
            self.error.emit("Open a scan and a tumor segmentation first (File > Open patient).")
            return
        if self.database is None:
            self.error.emit("Open or build a tumor database first (Database panel).")
            return
        self.jobs.start("Personalize", personalize_job, self.database, self.scan, self.seg,
                        self.space, float(self.days.value()), int(self.top_k.value()),
                        self.refine.isChecked(), REGISTRATIONS[self.registration.currentText()],
                        on_done=self._fit_done, on_failed=self.error.emit,
                        on_cancelled=lambda: self.readout.emit("Personalize cancelled."))

    def _fit_done(self, result) -> None:
        view, layers = result
        if self.scan is None or view.u_scan.shape != tuple(self.scan.shape):
            return        # another scan was opened meanwhile: this fit is stale
        self.fit = view
        est = view.estimate
        self._show_layers(layers)
        self.shown_days = est.T_days
        self.growth.blockSignals(True)
        self.growth.setValue(int(round(est.T_days)))
        self.growth.blockSignals(False)
        for w in (self.growth, self.export_button):
            w.setEnabled(True)
        self._update_growth_label()
        self.results.setText(self.results_html())
        self.cursor.set_ijk(self.scan.mm_to_vox(view.origin_scan_mm))
        self.readout.emit(f"fitted: Dice core {est.dice_core:.2f}, whole "
                          f"{est.dice_whole:.2f}; origin at the cursor")
        self.fitted.emit(view)

    def _show_layers(self, layers) -> None:
        v = self.viewer
        thr = self.fit.estimate.thresholds
        v.add_overlay(FIT_U, layers[FIT_U], kind="scalar", colors="inferno",
                      opacity=self.opacity.value() / 100.0, levels=U_LEVELS)
        v.layers.move_to_top(SEGMENTATION)          # observed labels above the fitted u
        v.add_overlay(FIT_CORE, layers[FIT_CORE], kind="labels", colors={1: CORE_COLOR},
                      opacity=1.0, names={0: "-", 1: f"core boundary (u = {thr['core']:g})"})
        v.add_overlay(FIT_WHOLE, layers[FIT_WHOLE], kind="labels", colors={1: WHOLE_COLOR},
                      opacity=1.0, names={0: "-", 1: f"whole boundary (u = {thr['whole']:g})"})
        for name in FIT_LAYERS:
            v.layers[name].visible = self.toggles[name].isChecked()

    def clear(self, reason: str | None = None) -> None:
        """Forget the fit: its layers, the results table, the growth slider, Export."""
        had = self.fit is not None or any(n in self.viewer.layers for n in FIT_LAYERS)
        self.fit = None
        self.shown_days = self._pending_days = None
        for name in FIT_LAYERS:
            self.viewer.remove_overlay(name)
        self._reset_results()
        if had:
            self.cleared.emit()
            if reason:
                self.readout.emit(f"Previous fit cleared: {reason}.")

    def _reset_results(self) -> None:
        self.results.setText("No fit yet: open a patient and press Personalize.")
        self.growth_label.setText("Growth: –")
        self.growth.blockSignals(True)
        self.growth.setValue(100)
        self.growth.blockSignals(False)
        for w in (self.growth, self.export_button):
            w.setEnabled(False)

    def results_html(self) -> str:
        view = self.fit
        d = view.estimate.to_dict()
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
                                 f"± {u['origin_mm']['rms_distance']:.1f} mm")]
        if view.space == "native":
            n = view.origin_scan_mm
            rows.append(("origin (native RAS)", f"({n[0]:.1f}, {n[1]:.1f}, {n[2]:.1f}) mm"))
        reg = view.registration
        if reg is not None:
            rows.append(("registration", f"{reg.library} {reg.method}: NCC "
                                         f"{reg.metric_before:.2f} → {reg.metric_after:.2f}"))
        rows += [("Dice core / whole", f"{d['dice_core']:.3f} / {d['dice_whole']:.3f}"),
                 ("plausible fits", f"{u['n_plausible']} within {u['score_delta']:g} of the "
                                    "best score"),
                 ("time", f"{t.get('total', 0.0):.2f} s ("
                          + (f"register {t['register']:.1f} s, " if "register" in t else "")
                          + f"query {t.get('query', 0.0) * 1000:.0f} ms, refine "
                          f"{t.get('refine', 0.0):.2f} s)")]
        body = "".join(f"<tr><td><b>{a}</b></td><td>{b}</td></tr>" for a, b in rows)
        return f"<table cellspacing='2'>{body}</table>"

    # layers: the panel changes the model, the viewer follows -------------------------------
    def _toggle(self, name: str, on: bool) -> None:
        layer = self.viewer.layers.get(name)
        if layer is not None:
            layer.visible = on

    def _set_opacity(self, value: int) -> None:
        layer = self.viewer.layers.get(FIT_U)
        if layer is not None:
            layer.opacity = value / 100.0

    # growth ----------------------------------------------------------------------------------
    def _update_growth_label(self) -> None:
        if self.fit is None:
            return
        T = self.fit.estimate.T_days
        tag = " (fit)" if self.shown_days == T else ""
        self.growth_label.setText(f"Growth: T = {self.shown_days:g} days{tag}, stated {T:g}")

    def _growth_moved(self, value: int) -> None:
        if not self.growth.isSliderDown():       # keyboard / programmatic: regrow now
            self.set_growth_days(value)

    def set_growth_days(self, days: float) -> None:
        """Regrow the fitted tumor for T = ``days`` (a job; queued while another runs)."""
        if self.fit is None:
            return
        if self.jobs.busy:
            self._pending_days = float(days)
            return
        self._pending_days = None
        self.jobs.start(f"Regrow to {days:g} days", regrow_job, self.fit, self.scan, float(days),
                        on_done=self._regrow_done, on_failed=self.error.emit)

    def _flush_pending_growth(self) -> None:
        days, self._pending_days = self._pending_days, None
        if days is not None and days != self.shown_days:
            self.set_growth_days(days)

    def _regrow_done(self, result) -> None:
        days, layers = result
        if self.fit is None or layers[FIT_U].shape != tuple(self.scan.shape):
            return        # cleared meanwhile
        self._show_layers(layers)
        self.shown_days = days
        self._update_growth_label()

    # export ----------------------------------------------------------------------------------
    def _export_dialog(self) -> None:
        path = choose_folder(self, "Export the fit into folder")
        if path:
            self.export_to(path)

    def export_to(self, out_dir) -> None:
        """Write the fit's output files (native and MNI) into ``out_dir`` (a job)."""
        if self.fit is None:
            self.error.emit("Nothing to export yet: run Personalize first.")
            return
        self.jobs.start("Export fit", export_job, self.fit, str(out_dir),
                        on_done=lambda paths: self.readout.emit(
                            f"exported {len(paths)} files to {out_dir}"),
                        on_failed=self.error.emit)

    def _screenshot_dialog(self) -> None:
        save_with_dialog(self, "Save screenshot", "tumor_fit.png", "PNG images (*.png)",
                         self.viewer.save_png, what="the screenshot")

    def save_screenshot(self, path) -> None:
        from gui.save_dialog import save_to

        save_to(self, path, self.viewer.save_png, what="the screenshot")
