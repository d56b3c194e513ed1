import threading
import time

import pytest

from engine.cli import TextProgressBar
from engine.jobs import CancelToken, Cancelled, InputError, Progress


def counting_job(n, progress, cancel, delay=0.0):
    for i in range(n):
        cancel.check()
        time.sleep(delay)
        progress.update((i + 1) / n, f"step {i + 1}/{n}")
    return n


def test_progress_is_monotone_and_reaches_one():
    seen = []
    p = Progress(lambda ev: seen.append(ev.fraction))
    sub = p.sub(0.5, 1.0)
    p.update(0.2)
    p.update(0.1)  # going back is clamped
    sub.update(0.5)
    counting_job(10, sub, CancelToken())
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert seen[1] == 0.2 and seen[2] == pytest.approx(0.75)


def test_eta_appears_and_shrinks():
    events = []
    p = Progress(events.append)
    p._start -= 10  # pretend 10 s have passed
    p.update(0.25)
    p.update(0.5)
    assert events[0].eta_s == pytest.approx(30, rel=0.01)
    assert events[1].eta_s == pytest.approx(10, rel=0.01)


def test_cancel_stops_within_one_tick():
    token = CancelToken()
    ticks = []

    def on_progress(ev):
        ticks.append(ev.fraction)
        if len(ticks) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        counting_job(100, Progress(on_progress), token)
    assert len(ticks) == 3  # the next check after the cancelling tick raised


def test_cancel_from_another_thread():
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    with pytest.raises(Cancelled):
        counting_job(10_000, Progress(), token, delay=0.001)


def test_text_progress_bar_writes_fraction_and_message(capsys):
    import io

    buf = io.StringIO()
    p = Progress(TextProgressBar(buf, min_interval_s=0))
    p.update(0.5, "half")
    p.done()
    out = buf.getvalue().splitlines()
    assert "50.0%" in out[0] and "half" in out[0]
    assert "100.0%" in out[-1]


def test_input_error_is_one_sentence():
    err = InputError("'x.nii' is not a NIfTI file.")
    assert str(err).count("\n") == 0
