"""Main window: three workbenches as tabs, File/Help menus, status readout, one job bar."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QTabWidget)

from gui.workbenches.sequence import SequenceWorkbench
from gui.workbenches.tumor import TumorWorkbench
from gui.workbenches.video import VideoWorkbench
from gui.workers import JobRunner  # noqa: F401  (re-exported: tests and tools import it here)

NIFTI_FILTER = "NIfTI images (*.nii *.nii.gz);;All files (*)"


class MainWindow(QMainWindow):
    error_shown = Signal(str)  # the text of every error dialog (tests listen to it)

    def __init__(self, show_dialogs: bool = True):
        super().__init__()
        self.setWindowTitle("Inversion Workbench")
        self.resize(1400, 900)
        self.show_dialogs = show_dialogs
        self.jobs = JobRunner(self)
        self.tabs = QTabWidget()
        self.workbenches = {"tumor": TumorWorkbench(self.jobs), "sequence": SequenceWorkbench(self.jobs),
                            "video": VideoWorkbench(self.jobs)}
        self._readouts: dict[str, str] = {}
        for name, wb in self.workbenches.items():
            self.tabs.addTab(wb, wb.title)
            wb.readout.connect(lambda text, n=name: self._set_readout(n, text))
            wb.status.connect(self.show_message)
            wb.error.connect(self.show_error)
        self.tabs.currentChanged.connect(lambda _: self._show_current_readout())
        self.setCentralWidget(self.tabs)
        self._build_status_bar()
        self._build_menus()
        self.jobs.failed.connect(self.show_error)

    # status bar: readout + one progress bar with Cancel
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.readout_label = QLabel("")
        self.readout_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        bar.addWidget(self.readout_label, 1)
        self.message_label = QLabel("")
        self.message_label.setStyleSheet("color: #2a6fb0;")
        bar.addWidget(self.message_label)
        self.job_label = QLabel("")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFixedWidth(220)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.jobs.cancel)
        for w in (self.job_label, self.progress_bar, self.cancel_button):
            bar.addPermanentWidget(w)
        self._set_job_idle()
        self.jobs.started.connect(self._on_job_started)
        self.jobs.progressed.connect(self._on_job_progress)
        self.jobs.ended.connect(self._set_job_idle)

    def _on_job_started(self, title: str) -> None:
        self.job_label.setText(title)
        self.progress_bar.setValue(0)
        self.progress_bar.setEnabled(True)
        self.cancel_button.setEnabled(True)

    def _on_job_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(round(1000 * fraction)))
        self.job_label.setText(message[:80])

    def _set_job_idle(self) -> None:
        self.job_label.setText("")
        self.progress_bar.setValue(0)
        self.progress_bar.setEnabled(False)
        self.cancel_button.setEnabled(False)

    def show_message(self, text: str) -> None:
        """A message in the status bar (beside the cursor readout) until the next one."""
        self.message_label.setText(text[:120])
        self.message_label.setToolTip(text)

    def _set_readout(self, workbench: str, text: str) -> None:
        self._readouts[workbench] = text
        self._show_current_readout()

    def _show_current_readout(self) -> None:
        current = next(n for n, wb in self.workbenches.items() if wb is self.tabs.currentWidget())
        self.readout_label.setText(self._readouts.get(current, ""))

    # menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, shortcut in (
                ("Open &patient folder (BraTS)...", self.open_patient_dialog, QKeySequence.Open),
                ("Open scan + segmentation &files...", self.open_scan_and_seg_dialog, None),
                ("Import &DICOM series...", self.import_dicom_dialog, None)):
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(shortcut)
            act.triggered.connect(lambda _=False, f=slot: f())
            file_menu.addAction(act)
        file_menu.addSeparator()
        for text, kind in (("Open &scan only...", "scan"),
                           ("Open s&egmentation only...", "segmentation")):
            act = QAction(text, self)
            act.triggered.connect(lambda _=False, k=kind: self.open_dialog(k))
            file_menu.addAction(act)
        self.recent_menu = file_menu.addMenu("&Recent files")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        export = QAction("&Export...", self)
        export.setShortcut("Ctrl+E")
        export.triggered.connect(lambda: self.tabs.currentWidget().export())
        file_menu.addAction(export)
        file_menu.addSeparator()
        quit_act = QAction("&Quit", self)
        quit_act.setShortcut(QKeySequence.Quit)
        quit_act.triggered.connect(self.close)
        file_menu.addAction(quit_act)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    def open_dialog(self, kind: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Open {kind}", "", NIFTI_FILTER)
        if path:
            self.open_paths([path], kind)

    def open_patient_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a BraTS patient folder")
        if path:
            self.open_paths([path], "patient")

    def open_scan_and_seg_dialog(self) -> None:
        scan, _ = QFileDialog.getOpenFileName(self, "Open scan (T1, T1c, T2 or FLAIR)", "",
                                              NIFTI_FILTER)
        if not scan:
            return
        seg, _ = QFileDialog.getOpenFileName(self, "Open its tumor segmentation",
                                             str(Path(scan).parent), NIFTI_FILTER)
        if seg:
            self.tabs.setCurrentWidget(self.workbenches["tumor"])
            self.workbenches["tumor"].open_scan_and_segmentation(scan, seg)
            self._remember([scan], "scan")
            self._remember([seg], "segmentation")

    def import_dicom_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a DICOM series (folder)")
        if path:
            self.open_paths([path], "dicom")

    def _remember(self, paths, kind: str) -> None:
        try:
            from db.store import Store

            with Store() as store:
                for p in paths:
                    store.add_recent(p, kind)
        except Exception:  # the recent list is a convenience; never block opening a file
            pass

    def open_paths(self, paths: list[str], kind: str) -> None:
        self.tabs.setCurrentWidget(self.workbenches["tumor"])
        self.workbenches["tumor"].open_paths(paths, kind)
        self._remember(paths, kind)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        try:
            from db.store import Store

            with Store() as store:
                items = store.recent()
        except Exception:
            items = []
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for path, kind in items:
            act = self.recent_menu.addAction(f"{Path(path).name}  [{kind}]")
            act.setToolTip(path)
            act.triggered.connect(lambda _=False, p=path, k=kind: self.open_paths([p], k))

    def versions_text(self) -> str:
        import PySide6
        from PySide6.QtCore import qVersion

        from engine import __version__
        from engine._faiss import faiss
        from engine._torch import torch

        return (f"Inversion Workbench {__version__}\n\nQt {qVersion()} (PySide6 "
                f"{PySide6.__version__})\ntorch {torch.__version__}\nfaiss {faiss.__version__}")

    def show_about(self) -> None:
        QMessageBox.about(self, "About Inversion Workbench", self.versions_text())

    def show_error(self, text: str) -> None:
        """One sentence in a dialog; never a traceback."""
        self.error_shown.emit(text)
        if not self.show_dialogs:  # offscreen (--screenshot): say it on stderr
            print(f"error: {text}", file=sys.stderr)
        else:
            box = QMessageBox(QMessageBox.Warning, "Problem", text, QMessageBox.Ok, self)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.open()

    def closeEvent(self, event) -> None:
        self.jobs.queue.clear()
        self.jobs.cancel()
        self.jobs.wait(5000)
        super().closeEvent(event)
