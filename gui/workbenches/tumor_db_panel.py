"""Database panel of the Tumor workbench: choose, build (progress, cancel, resume) and inspect a
tumor simulation database: coverage histograms of mu1, mu2 and volumes, origins as points.

Constructed as ``DatabasePanel(workbench)``; uses ``workbench.jobs.start`` for the build,
``workbench.viewer.set_points`` (when the workbench has a viewer) for the origins, and the
workbench's ``error`` / ``readout`` signals. Emits ``database_changed(TumorDatabase)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QVBoxLayout, QWidget)

from engine.tumor.database import default_db_dir

PRESETS = ("demo", "standard", "tiny")
ORIGIN_COLOR = (255, 190, 0)


class DatabasePanel(QWidget):
    database_changed = Signal(object)   # TumorDatabase

    def __init__(self, workbench, parent=None):
        super().__init__(parent)
        self.workbench = workbench
        self.database = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.path_edit = QLineEdit(str(default_db_dir("demo")))
        self.path_edit.setToolTip("Database folder")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose)
        row.addWidget(QLabel("Folder"))
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.preset_box = QComboBox()
        self.preset_box.addItems(PRESETS)
        self.preset_box.currentTextChanged.connect(self._preset_changed)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.open_database(self.path_edit.text()))
        self.build_button = QPushButton("Build / resume")
        self.build_button.setToolTip("Build the database, or resume or repair an interrupted "
                                     "build (Cancel in the progress bar stops it cleanly).")
        self.build_button.clicked.connect(lambda: self.build(self.path_edit.text(),
                                                             self.preset_box.currentText()))
        row.addWidget(QLabel("Preset"))
        row.addWidget(self.preset_box)
        row.addStretch(1)
        row.addWidget(self.open_button)
        row.addWidget(self.build_button)
        layout.addLayout(row)
        self.info = QLabel("No database open.")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setMinimumHeight(260)
        layout.addWidget(self.plots, 1)
        self._hists = {}
        self._plots = {}
        for n, (key, label) in enumerate((("mu1_cm", "mu1 = sqrt(Dw T) [cm]"),
                                          ("mu2", "mu2 = sqrt(rho T)"),
                                          ("vol_whole_cm3", "whole tumor [cm³]"),
                                          ("vol_core_cm3", "core [cm³]"))):
            plot = self.plots.addPlot(row=n // 2, col=n % 2)
            self._plots[key] = plot
            plot.setLabel("bottom", label)
            plot.setLabel("left", "snapshots")
            plot.setMouseEnabled(x=False, y=False)
            if key.startswith("vol"):
                plot.setLogMode(x=True, y=False)     # volumes binned evenly in log10
            self._hists[key] = plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                         brush=(80, 140, 220, 150), pen=(40, 90, 180))

    # -- actions -------------------------------------------------------------------------
    def _choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Tumor database folder",
                                                self.path_edit.text())
        if path:
            self.path_edit.setText(path)
            if (Path(path) / "manifest.json").is_file():
                self.open_database(path)

    def _preset_changed(self, preset: str) -> None:
        current = Path(self.path_edit.text())
        if current.parent == default_db_dir(preset).parent:
            self.path_edit.setText(str(default_db_dir(preset)))

    def open_database(self, path) -> bool:
        """Open a built database; a bad one is reported in one sentence. True on success."""
        from engine.jobs import InputError
        from engine.tumor.database import TumorDatabase

        try:
            db = TumorDatabase.open(path)
        except InputError as err:
            self.workbench.error.emit(str(err))
            return False
        self.path_edit.setText(str(path))
        self._show(db)
        return True

    def build(self, path, preset: str = "demo", workers: int = 2) -> None:
        """Build (or resume / repair) in the window's job runner, then open it."""
        from engine.tumor.database import build_database

        path = str(path)
        self.build_button.setEnabled(False)

        def finished(*_):
            self.build_button.setEnabled(True)

        def done(_manifest):
            finished()
            self.open_database(path)

        def cancelled():
            finished()
            self.info.setText(f"Build of {path} cancelled; press Build / resume to continue.")

        def failed(message):
            finished()
            self.workbench.error.emit(message)

        job = self.workbench.jobs.start(f"Building tumor database ({preset})", build_database,
                                        path, preset=preset, seed=0, workers=workers,
                                        on_done=done, on_failed=failed, on_cancelled=cancelled)
        if job is None:
            finished()

    def _show(self, db) -> None:
        self.database = db
        m, s = db.manifest, db.snapshots
        self.info.setText(
            f"<b>{Path(db.root).name}</b>: {m['n_snapshots']} snapshots from {m['n_runs']} runs, "
            f"preset {m['preset']}, {m['spacing_mm']:g} mm grid, seed {m['seed']}, "
            f"λ {s['lambda_mm'].min():.1f}–{s['lambda_mm'].max():.1f} mm, "
            f"thresholds core {m['thresholds']['core']:g} / whole {m['thresholds']['whole']:g}")
        for key, curve in self._hists.items():
            v = np.asarray(s[key], dtype=float)
            if key.startswith("vol"):
                if key == "vol_core_cm3":
                    self._plots[key].setTitle(f"{int((v <= 0).sum())} snapshots without core "
                                              "not shown", size="8pt")
                v = v[v > 0] if (v > 0).any() else np.array([1.0])
                bins = np.logspace(np.log10(v.min()), np.log10(v.max()) + 1e-9, 31)
            else:
                bins = 30
            counts, edges = np.histogram(v, bins=bins)
            curve.setData(edges, counts)
        scan = getattr(self.workbench, "scan", None)
        if scan is not None:  # origins are MNI mm; the viewer wants the displayed scan's voxels
            _, first = np.unique(s["run_id"], return_index=True)
            self.workbench.viewer.set_points("database origins",
                                             scan.mm_to_vox(s["origin_mm"][first]), ORIGIN_COLOR, 4)
        self.workbench.readout.emit(f"Tumor database {db.root}: {len(db)} snapshots")
        self.database_changed.emit(db)
