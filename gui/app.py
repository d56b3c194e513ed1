"""Start the GUI, or render it offscreen to a PNG (``--screenshot``)."""
from __future__ import annotations

import os
import sys
import time


def run_gui(screenshot: str | None = None, workbench: str = "tumor") -> int:
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Inversion Workbench")
    window = MainWindow(show_dialogs=not screenshot)
    window.tabs.setCurrentWidget(window.workbenches[workbench])
    for wb in window.workbenches.values():
        wb.load_demo()
    window.show()
    if screenshot:
        try:
            return save_screenshot(window, screenshot)
        except OSError as err:
            print(f"error: cannot write the screenshot '{screenshot}': {err.strerror or err}.",
                  file=sys.stderr)
            return 2
    sys.excepthook = lambda kind, err, tb: report_unexpected(window, kind, err, tb)
    return app.exec()


def report_unexpected(window, kind, err, tb) -> None:
    """An exception escaping a Qt slot: log the traceback, show one sentence in a dialog."""
    import logging
    import traceback

    logging.getLogger("gui").error("".join(traceback.format_exception(kind, err, tb)))
    if isinstance(err, OSError):
        where = f" '{err.filename}'" if err.filename else ""
        window.show_error(f"Cannot access{where}: {err.strerror or err}.")
    else:
        window.show_error(f"Internal error: {err}")


def save_screenshot(window, path: str) -> int:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + 300
    while True:  # demo loads run as jobs (possibly chained): wait until all are done
        for _ in range(5):
            QApplication.processEvents()
        if not window.jobs.busy or time.monotonic() > deadline:
            break
        window.jobs.wait(100)
    image = window.grab().toImage()

    def write_png(tmp: str) -> None:
        if not image.save(tmp, "PNG"):
            raise OSError(f"could not write the screenshot '{path}'")

    from db.atomic import write_with

    write_with(path, write_png)
    print(path)
    return 0
