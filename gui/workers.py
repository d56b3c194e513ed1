"""Run engine jobs off the GUI thread and deliver progress/finished/failed/cancelled as signals."""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QThread, Signal

from engine.jobs import CancelToken, Cancelled, InputError, JobError, Progress

log = logging.getLogger(__name__)


class JobThread(QThread):
    """Runs ``fn(*args, progress=..., cancel=..., **kwargs)`` in a worker thread.

    Signals arrive in the GUI thread (queued connections). ``failed`` carries one
    user-facing sentence, never a traceback (the traceback goes to the log).
    """

    progressed = Signal(float, str, object)  # fraction, message, eta_s (float | None)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, title: str, fn: Callable, *args, min_interval_s: float = 0.05, **kwargs):
        super().__init__()
        self.title = title
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.token = CancelToken()
        self.min_interval_s = min_interval_s
        self._last_emit = 0.0

    def cancel(self) -> None:
        self.token.cancel()

    def _on_progress(self, ev) -> None:
        now = time.monotonic()
        if ev.fraction >= 1.0 or now - self._last_emit >= self.min_interval_s:
            self._last_emit = now
            self.progressed.emit(ev.fraction, ev.message, ev.eta_s)

    def run(self) -> None:  # worker thread
        progress = Progress(self._on_progress)
        try:
            result: Any = self.fn(*self.args, progress=progress, cancel=self.token, **self.kwargs)
        except Cancelled:
            self.cancelled.emit()
        except (InputError, JobError) as err:
            self.failed.emit(str(err))
        except Exception as err:
            log.error("job %r failed:\n%s", self.title, traceback.format_exc())
            self.failed.emit(f"{self.title} failed with an internal error: {err}")
        else:
            self.succeeded.emit(result)
