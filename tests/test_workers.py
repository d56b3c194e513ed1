"""The GUI runs jobs off its thread; failures reach it as dialog text, not exceptions."""
import threading
import time

from engine.jobs import InputError


def slow_job(progress, cancel, steps=20):
    for i in range(steps):
        cancel.check()
        time.sleep(0.01)
        progress.update((i + 1) / steps, f"{i + 1}")
    return threading.current_thread().name


def bad_job(progress, cancel):
    raise InputError("'scan.nii' is truncated.")


def buggy_job(progress, cancel):
    raise ZeroDivisionError("division by zero")


def test_job_runs_off_gui_thread_and_reports(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    results, fractions = [], []
    win.jobs.progressed.connect(lambda f, m: fractions.append(f))
    with qtbot.waitSignal(win.jobs.ended, timeout=10000):
        win.jobs.start("count", slow_job, on_done=results.append)
    assert results and results[0] != threading.current_thread().name
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert not win.cancel_button.isEnabled()


def test_failing_job_becomes_dialog_text(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.error_shown, timeout=10000) as sig:
        win.jobs.start("load", bad_job)
    assert sig.args == ["'scan.nii' is truncated."]
    with qtbot.waitSignal(win.error_shown, timeout=10000) as sig:
        win.jobs.wait()
        win.jobs.start("compute", buggy_job)
    assert "internal error" in sig.args[0] and "Traceback" not in sig.args[0]


def test_cancel_button_cancels(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    cancelled = []
    job = win.jobs.start("long", slow_job, steps=100000, on_cancelled=lambda: cancelled.append(1))
    qtbot.waitUntil(lambda: win.cancel_button.isEnabled(), timeout=5000)
    with qtbot.waitSignal(win.jobs.ended, timeout=10000):
        win.cancel_button.click()
    assert cancelled == [1] and job is not None


def test_about_lists_versions(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    text = win.versions_text()
    assert "Qt 6" in text and "torch 2.13" in text and "faiss" in text


EMITS = """
import sys
from PySide6.QtCore import QObject, Signal


class Emitter(QObject):
    ping = Signal()
    flag = Signal(bool)
    obj = Signal(object)


e, got = Emitter(), []
e.flag.connect(got.append)
e.obj.connect(got.append)
sentinel = object()
before = (sys.getrefcount(True), sys.getrefcount(sentinel))
for _ in range(N):
    e.ping.emit()
    e.flag.emit(True)
    e.obj.emit(sentinel)
got.clear()
after = (sys.getrefcount(True), sys.getrefcount(sentinel))
print(after[0] - before[0], after[1] - before[1])
"""


def test_signal_emit_keeps_refcounts():
    """PySide6 6.12.0 dropped a reference to True on every emit until Python aborted.

    Runs in a subprocess so a refcount underflow (abort) is a failing exit status, not a
    crashed test run. 20000 emits of each kind: on Python 3.11 (True is not immortal) a
    dropped reference per emit shows as a drift of -20000 (or an abort once True reaches 0);
    the sentinel passed through Signal(object) is mortal on every Python, so a leaked or
    dropped reference on emit arguments is caught on 3.12+ too."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, "-c", "N = 20000\n" + EMITS], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    drift_true, drift_sentinel = map(int, r.stdout.split())
    assert drift_sentinel == 0
    assert abs(drift_true) < 100  # other objects holding True come and go; never -20000


def test_refcount_probe_sees_a_dropped_reference():
    """The probe above can fail: with a slot that drops one reference to its argument per
    call (what the PySide6 bug did), the sentinel's count drifts by -N."""
    import subprocess
    import sys

    from conftest import ROOT

    buggy = EMITS.replace(
        "e.obj.connect(got.append)",
        "import ctypes\n"
        "e.obj.connect(lambda o: ctypes.pythonapi.Py_DecRef(ctypes.py_object(o)))")
    # N extra references keep the sentinel alive while the buggy slot drops N of them
    buggy = buggy.replace("sentinel = object()", "sentinel = object()\nextra = [sentinel] * N")
    r = subprocess.run([sys.executable, "-c", "N = 500\n" + buggy], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[1]) == -500


def test_status_bar_shows_only_current_workbench_readout(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    win.tabs.setCurrentWidget(win.workbenches["tumor"])
    win.workbenches["video"].readout.emit("frame 3")
    win.workbenches["tumor"].readout.emit("IJK 1 2 3")
    assert win.readout_label.text() == "IJK 1 2 3"
    win.tabs.setCurrentWidget(win.workbenches["video"])
    assert win.readout_label.text() == "frame 3"


def test_jobs_started_while_busy_run_in_order(qtbot):
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    order = []
    win.jobs.start("first", slow_job, steps=10, on_done=lambda _: order.append("first"))
    win.jobs.start("second", slow_job, steps=2, on_done=lambda _: order.append("second"))
    assert win.jobs.busy and len(win.jobs.queue) == 1
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=10000)
    assert order == ["first", "second"]
