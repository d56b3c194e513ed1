"""Database panel of the Tumor workbench: choose, build (progress, cancel, resume; locally or on
a Dask scheduler) and inspect a tumor simulation database: coverage histograms of mu1, mu2 and
volumes, origins as points.

``DatabasePanel(jobs, viewer=None, mni_to_vox=None)``: dependencies are explicit. ``jobs`` runs
the build; ``viewer.set_points`` shows one origin per run, mapped by ``mni_to_vox((n, 3) MNI mm)
-> (n, 3)`` voxel coordinates of the displayed scan (None while unknown, e.g. before a native
scan is registered; call ``show_origins()`` again when it changes). The panel keeps the ONE
open database (``database``) that the Personalize panel fits against. Signals:
``database_changed(TumorDatabase)``, ``error(str)``, ``readout(str)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QVBoxLayout, QWidget)

from engine.tumor.database import default_db_dir
from gui.viewers import DB_ORIGINS

PRESETS = ("demo", "standard", "tiny")
ORIGIN_COLOR = (255, 190, 0)


class DatabasePanel(QWidget):
    database_changed = Signal(object)   # TumorDatabase
    error = Signal(str)
    readout = Signal(str)

    def __init__(self, jobs, viewer=None, mni_to_vox=None, parent=None):
        super().__init__(parent)
        self.jobs, self.viewer, self.mni_to_vox = jobs, viewer, mni_to_vox
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
        self.open_button.clicked.connect(lambda: self.open_in_job(self.path_edit.text()))
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
        self.scheduler_edit = QLineEdit()
        self.scheduler_edit.setPlaceholderText("Dask scheduler (optional) tcp://host:port")
        self.scheduler_edit.setToolTip("Build on an existing Dask cluster: workers compute the "
                                       "batches, this program alone writes. Empty: local "
                                       "worker processes.")
        layout.addWidget(self.scheduler_edit)
        self.build_status = QLabel("")
        self.build_status.setWordWrap(True)
        layout.addWidget(self.build_status)
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
                self.open_in_job(path)

    def _preset_changed(self, preset: str) -> None:
        current = Path(self.path_edit.text())
        if current.parent == default_db_dir(preset).parent:
            self.path_edit.setText(str(default_db_dir(preset)))

    def open_database(self, path) -> bool:
        """Open a built database now (in this thread); a bad one is reported in one sentence.
        True on success. The GUI uses :meth:`open_in_job` (opening checks the shards)."""
        from engine.jobs import InputError
        from engine.tumor.database import TumorDatabase

        try:
            db = TumorDatabase.open(path)
        except InputError as err:
            self.error.emit(str(err))
            return False
        self._opened(db, path)
        return True

    def open_in_job(self, path) -> None:
        """Open a database in a job (never blocks the GUI); shown when it is open."""
        from engine.tumor.database import TumorDatabase

        def open_job(progress, cancel):
            progress.update(0.1, "checking the database")
            return TumorDatabase.open(path)

        self.jobs.start(f"Open database {Path(path).name}", open_job,
                        on_done=lambda db: self._opened(db, path), on_failed=self.error.emit)

    def _opened(self, db, path) -> None:
        self.path_edit.setText(str(path))
        old, self.database = self.database, None
        if old is not None:
            try:
                old.close()
            except Exception:  # opened in another (job) thread: sqlite refuses; GC closes it
                pass
        self._show(db)

    def build(self, path, preset: str = "demo", workers: int = 2, scheduler: str | None = None):
        """Build (or resume / repair) in the window's job runner, then open it. ``scheduler``
        (default: the text field) "tcp://host:port" runs the batches on that Dask cluster."""
        from engine.tumor.database import build_database

        path = str(path)
        scheduler = (self.scheduler_edit.text().strip() if scheduler is None else scheduler)
        where = {"scheduler": scheduler} if scheduler else {"workers": workers}
        self.build_button.setEnabled(False)
        self.build_status.setText(f"Building on {scheduler or f'{workers} local workers'}…")

        def finished(*_):
            self.build_button.setEnabled(True)

        def done(_manifest):
            finished()
            self.build_status.setText(f"Built {path}.")
            self.open_in_job(path)

        def cancelled():
            finished()
            self.build_status.setText(f"Build of {path} cancelled; press Build / resume to "
                                      "continue.")

        def failed(message):
            finished()
            self.build_status.setText("Build failed.")
            self.error.emit(message)

        job = self.jobs.start(f"Building tumor database ({preset})", build_database,
                              path, preset=preset, seed=0, **where,
                              on_done=done, on_failed=failed, on_cancelled=cancelled)
        # the builder's progress messages name the workers and the tasks in flight
        job.progressed.connect(lambda f, message, eta: self.build_status.setText(
            f"{100 * f:.0f} %: {message}"))

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
        self.show_origins()
        self.readout.emit(f"Tumor database {db.root}: {len(db)} snapshots")
        self.database_changed.emit(db)

    def show_origins(self) -> None:
        """One point per run at its origin (MNI mm) in the displayed scan's voxels, when the
        mapping is known; otherwise no points."""
        if self.viewer is None:
            return
        db = self.database
        ijk = None
        if db is not None and self.mni_to_vox is not None:
            s = db.snapshots
            _, first = np.unique(s["run_id"], return_index=True)
            ijk = self.mni_to_vox(s["origin_mm"][first])
        self.viewer.set_points(DB_ORIGINS, ijk, ORIGIN_COLOR, 4)
