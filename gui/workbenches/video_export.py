"""Export of the Video workbench (a mixin of VideoWorkbench): MP4 and PNG frames written
from the same renderer as the screen (engine/fsde/render.py), through gui/save_dialog.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from gui.save_dialog import save_to, save_with_dialog


class ExportMixin:
    """Needs ``self.result`` (a Prediction or None), ``self.sample_spin``, ``self.canvas``
    and the Workbench signals ``error`` / ``readout``."""

    def panel_images(self) -> np.ndarray:
        """The exported frames: uint8 RGB (T, h, w, 3), the same renderer as on screen."""
        from engine.fsde.render import render_prediction

        return render_prediction(self.result, self.sample_spin.value(),
                                 smooth=self.canvas.smooth)

    def _need_result(self) -> bool:
        if self.result is None:
            self.error.emit("Predict first: there is no prediction to export.")
            return False
        return True

    def export(self) -> None:
        if self._need_result():
            save_with_dialog(self, "Export MP4", "prediction.mp4", "MP4 video (*.mp4)",
                             self._write_mp4, what="the MP4")

    def _write_mp4(self, path: Path) -> None:
        from engine.fsde.render import write_mp4

        write_mp4(path, self.panel_images())

    def export_mp4(self, path: str | Path) -> bool:
        return self._need_result() and save_to(self, path, self._write_mp4, "the MP4") is not None

    def _export_png_dialog(self) -> None:
        if not self._need_result():
            return
        folder = QFileDialog.getExistingDirectory(self, "Export PNG frames into folder")
        if folder:
            self.export_pngs(folder)

    def export_pngs(self, folder: str | Path) -> list[Path]:
        from engine.fsde.render import write_pngs

        if not self._need_result():
            return []
        written: list[Path] = []
        save_to(self, folder, lambda f: written.extend(write_pngs(f, self.panel_images())),
                "the PNG frames")
        return written
