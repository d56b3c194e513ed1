"""Sequence workbench, left: the data panel (a bundled set or a .npy/.csv file)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QGroupBox, QLabel, QPushButton, QVBoxLayout


class DataPanel(QGroupBox):
    """Emits ``bundled_requested(name)`` and ``file_chosen(path)``; shows a description."""

    bundled_requested = Signal(str)
    file_chosen = Signal(str)

    def __init__(self, bundled_names: list[str], parent=None):
        super().__init__("Data", parent)
        layout = QVBoxLayout(self)
        self.bundled = QComboBox()
        self.bundled.addItems(bundled_names)
        use = QPushButton("Use bundled set")
        use.clicked.connect(lambda: self.bundled_requested.emit(self.bundled.currentText()))
        open_btn = QPushButton("Open data file (.npy / .csv)...")
        open_btn.clicked.connect(self._open_dialog)
        self.label = QLabel("no data")
        self.label.setWordWrap(True)
        for w in (self.bundled, use, open_btn, self.label):
            layout.addWidget(w)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open sequences", "",
                                              "Sequences (*.npy *.csv);;All files (*)")
        if path:
            self.file_chosen.emit(path)

    def show_data(self, name: str, train_shape, n_test: int, held_out: bool) -> None:
        """train_shape (N, T, D) of the training set; n_test sequences used for ER."""
        N, T, D = train_shape
        self.label.setText(f"{name}: training {N} sequences x up to {T} steps x {D} channels; "
                           f"error regression on {n_test} sequences"
                           + (" (the held-out split)" if held_out else " (the same file)"))
