"""Run engine jobs off the GUI thread and deliver progress/finished/failed/cancelled as signals.

``JobThread``: one job in a QThread. ``JobRunner``: the window's queue (one job at a time, one
progress bar with Cancel); workbenches and panels receive it as ``jobs``.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal

from engine.jobs import CancelToken, Cancelled, InputError, JobError, Progress, format_duration

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


class JobRunner(QObject):
    """Runs jobs one at a time, in order, in a worker thread, and drives the window's progress
    bar. A job started while another runs waits in a queue (and shows when it starts).

    ``start(title, fn, *args, on_done=..., on_failed=..., on_cancelled=..., **kwargs)``;
    ``fn`` follows the engine's job protocol (``progress=``, ``cancel=`` keywords).
    """

    started = Signal(str)
    progressed = Signal(float, str)
    ended = Signal()
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.current: JobThread | None = None
        self.queue: list[JobThread] = []

    @property
    def busy(self) -> bool:
        """A job is running or waiting."""
        return self.current is not None or bool(self.queue)

    def start(self, title, fn, *args, on_done=None, on_failed=None, on_cancelled=None,
              **kwargs) -> JobThread:
        job = JobThread(title, fn, *args, **kwargs)
        job.progressed.connect(
            lambda f, m, eta: self.progressed.emit(f, f"{title}: {m}  (ETA {format_duration(eta)})"))
        if on_done:
            job.succeeded.connect(on_done)
        job.failed.connect(on_failed or self.failed.emit)
        if on_cancelled:
            job.cancelled.connect(on_cancelled)
        job.finished.connect(self._on_thread_finished)
        self.queue.append(job)
        self._start_next()
        return job

    def cancel(self) -> None:
        """Cancel the running job (queued ones still run)."""
        if self.current is not None:
            self.current.cancel()

    def wait(self, ms: int = 60000) -> bool:
        return self.current.wait(ms) if self.current is not None else True

    def _start_next(self) -> None:
        if self.current is None and self.queue:
            self.current = self.queue.pop(0)
            self.started.emit(self.current.title)
            self.current.start()

    def _on_thread_finished(self) -> None:
        job, self.current = self.current, None
        if job is not None:
            job.deleteLater()
        self.ended.emit()
        self._start_next()
