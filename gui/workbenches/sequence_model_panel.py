"""Sequence workbench, left: the training panel: configuration editor (TOML), Train,
Defaults, Load / Save model and a description of the current model."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QVBoxLayout)

from engine.pvrnn.config import Config, parse_config


class ModelPanel(QGroupBox):
    """Emits ``train_requested``, ``model_chosen(path)`` and ``save_requested``."""

    train_requested = Signal()
    model_chosen = Signal(str)
    save_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Configuration (TOML)", parent)
        layout = QVBoxLayout(self)
        self.config_edit = QPlainTextEdit(Config().to_toml())
        self.config_edit.setMinimumHeight(160)
        font = self.config_edit.font()
        font.setFamily("monospace")
        font.setPointSize(8)
        self.config_edit.setFont(font)
        layout.addWidget(self.config_edit)
        self.train_btn = QPushButton("Train")
        self.train_btn.clicked.connect(self.train_requested.emit)
        defaults = QPushButton("Defaults")
        defaults.clicked.connect(lambda: self.config_edit.setPlainText(Config().to_toml()))
        load = QPushButton("Load model...")
        load.clicked.connect(self._open_dialog)
        self.save_btn = QPushButton("Save model...")
        self.save_btn.clicked.connect(self.save_requested.emit)
        for pair in ((self.train_btn, defaults), (load, self.save_btn)):
            row = QHBoxLayout()
            for b in pair:
                row.addWidget(b)
            layout.addLayout(row)
        self.label = QLabel("no model")
        self.label.setWordWrap(True)
        layout.addWidget(self.label)

    def config(self) -> Config:
        """The editor's configuration; InputError (one sentence) when it is invalid."""
        return parse_config(self.config_edit.toPlainText(), "The configuration")

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open PV-RNN model", "",
                                              "PV-RNN model (*.pt);;All files (*)")
        if path:
            self.model_chosen.emit(path)

    def show_model(self, ck: dict, cfg: Config, name: str) -> None:
        """Put the checkpoint's configuration into the editor and describe it."""
        self.config_edit.setPlainText(cfg.to_toml())
        dims = ck["params"]["Wo"].shape[1]
        self.label.setText(f"model: {name}, {ck['epoch']} epochs"
                           f"{'' if ck['finished'] else ' (unfinished)'}, {dims} channels, "
                           + " / ".join(f"d{lay.d} z{lay.z} tau{lay.tau:g}"
                                        for lay in cfg.layers))
