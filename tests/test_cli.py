"""Command-line plumbing: help, exit codes for unwritable outputs, environment robustness."""
import pytest
from conftest import run_main


def test_help_lists_every_subcommand():
    r = run_main("--help")
    assert r.returncode == 0
    for group in ("tumor", "pvrnn", "fsde"):
        assert group in r.stdout
    for group, actions in (("tumor", ("check", "build-db", "fit")),
                           ("pvrnn", ("train", "predict")),
                           ("fsde", ("hurst", "train", "predict"))):
        out = run_main(group, "--help").stdout
        assert all(a in out for a in actions), (group, out)


@pytest.mark.parametrize("args", [
    ("tumor", "build-db", "--preset", "tiny", "--db", "/proc/no/such/db"),
    ("--screenshot", "/proc/no/such/shot.png"),
])
def test_unwritable_output_is_bad_input_not_a_crash(args):
    r = run_main(*args)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "/proc/no" in last
    assert "Traceback" not in r.stderr


def test_bad_thread_count_in_environment_falls_back():
    r = run_main("tumor", "check", "--scan", "resources/mni152/mni152_t1_1mm.nii.gz",
                 env={"WORKBENCH_THREADS": "abc"})
    assert r.returncode == 0, r.stderr
    assert "197 x 233 x 189" in r.stdout


def test_unexpected_gui_exception_becomes_one_sentence(qtbot):
    from gui.app import report_unexpected
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.error_shown) as sig:
        err = PermissionError(13, "Permission denied", "/root/x.mp4")
        report_unexpected(win, type(err), err, None)
    assert sig.args == ["Cannot access '/root/x.mp4': Permission denied."]
