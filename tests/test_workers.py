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


def test_signal_emit_keeps_bool_refcount():
    """PySide6 6.12.0 dropped a reference to True on every emit until Python aborted."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        ping = Signal()

    e = Emitter()
    before = sys.getrefcount(True)
    for _ in range(100):
        e.ping.emit()
    assert sys.getrefcount(True) - before > -50


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
