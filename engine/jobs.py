"""Progress + cancellation protocol for long work, shared by the CLI and the GUI.

A job is a plain function ``fn(..., progress: Progress, cancel: CancelToken)``.
It reports with ``progress.update(fraction, message)`` and calls ``cancel.check()``
at least once per progress tick; ``check`` raises :class:`Cancelled` once
``cancel.cancel()`` was called (from another thread, a signal handler, a button).

Bad input is reported by raising :class:`InputError` with one sentence that names
the file and what is wrong; the CLI exits 2 with it, the GUI shows it in a dialog.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable


class Cancelled(Exception):
    """The user cancelled the job. Not an error: nothing is reported as failed."""


class InputError(Exception):
    """Bad input. ``str(err)`` is one user-facing sentence naming the file and the problem."""


class JobError(Exception):
    """A job failed for a reason the user can act on (not a bug). One sentence."""


class CancelToken:
    """Thread-safe cancellation flag."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class ProgressEvent:
    fraction: float  # in [0, 1], monotone over a job
    message: str
    elapsed_s: float
    eta_s: float | None  # None until the estimate means something


class Progress:
    """Reports monotone progress with an ETA to a callback ``fn(ProgressEvent)``.

    ``sub(lo, hi)`` gives a child whose [0, 1] maps onto [lo, hi] of this one,
    so a stage can report its own fraction without knowing the whole job.
    """

    def __init__(self, callback: Callable[[ProgressEvent], None] | None = None,
                 *, _parent: "Progress | None" = None, _lo: float = 0.0, _hi: float = 1.0):
        self._callback = callback
        self._parent = _parent
        self._lo, self._hi = _lo, _hi
        self._start = time.monotonic()
        self.fraction = 0.0
        self.message = ""

    def update(self, fraction: float, message: str | None = None) -> None:
        fraction = min(1.0, max(self.fraction, float(fraction)))  # clamp: never go back
        self.fraction = fraction
        if message is not None:
            self.message = message
        if self._parent is not None:
            self._parent.update(self._lo + (self._hi - self._lo) * fraction, self.message)
            return
        elapsed = time.monotonic() - self._start
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0.01 and elapsed > 0.5 else None
        if self._callback is not None:
            self._callback(ProgressEvent(fraction, self.message, elapsed, eta))

    def sub(self, lo: float, hi: float) -> "Progress":
        return Progress(_parent=self, _lo=lo, _hi=hi)

    def done(self, message: str = "done") -> None:
        self.update(1.0, message)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
