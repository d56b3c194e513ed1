"""Command-line plumbing: help, exit codes for unwritable outputs, environment robustness."""
from pathlib import Path

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


# --------------------------------------------------------------- numeric option types (item 7)
@pytest.mark.parametrize("make, good, bad", [
    (lambda c: c.finite_float(), ["0", "-3.5", "1e300"], ["nan", "inf", "-inf", "x", ""]),
    (lambda c: c.positive_float, ["1e-9", "100"], ["0", "-1", "nan", "inf"]),
    (lambda c: c.finite_float(0, 1), ["0", "1", "0.5"], ["-0.01", "1.01", "nan"]),
    (lambda c: c.finite_float(0, 240, min_exclusive=True), ["240", "0.5"], ["0", "241"]),
    (lambda c: c.positive_int, ["1", "50"], ["0", "-1", "1.5", "nan", "inf"]),
    (lambda c: c.seed_int, ["0", str(2**32 - 1)], ["-1", str(2**32), "x"]),
])
def test_numeric_option_types_refuse_non_finite_and_out_of_range(make, good, bad):
    import argparse
    import math

    import engine.cli as cli

    check = make(cli)
    for v in good:
        assert math.isfinite(check(v))
    for v in bad:
        with pytest.raises(argparse.ArgumentTypeError) as e:
            check(v)
        assert repr(v)[1:-1] in str(e.value) or v == ""


def test_argparse_errors_are_one_line_on_every_subcommand(capsys):
    import main

    for argv in (["pvrnn", "predict", "--model"], ["tumor", "fit", "--db", "x"],
                 ["fsde", "hurst", "--dt", "1"], ["nosuch"]):
        with pytest.raises(SystemExit) as e:
            main.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: main.py"), err
    with pytest.raises(SystemExit):
        main.main(["pvrnn", "predict", "--model", "m.pt", "--data", "d.csv", "--out", "p.npz",
                   "--lr", "nan"])
    assert "--lr" in capsys.readouterr().err
    runs = _runs()  # refused command lines are runs too (status 'bad input')
    assert [r.status for r in runs] == ["bad input"] * 5
    assert runs[0].command == "pvrnn predict" and "--lr" in runs[0].message
    assert "nan" in runs[0].params["argv"]  # the refused command line itself


# --------------------------------------------------------------- exit codes (item 2, 3)
def _run_handler(handler, **params):
    import argparse

    from engine.cli import run

    args = argparse.Namespace(func=handler, command="test cmd", **params)
    return run(args, ["test", "cmd"])


def _runs():
    from db.store import Store

    with Store() as s:
        return s.runs()


def test_internal_oserror_is_exit_1_with_log_not_bad_input(tmp_path, capsys):
    user_out = tmp_path / "out.json"

    def handler(args, ctx):
        open("/nonexistent-internal-cache/index.bin")  # not a path the user gave

    assert _run_handler(handler, out=user_out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: FileNotFoundError")
    assert "please report this with the command line and the file" in err[0]
    assert "Traceback" not in "\n".join(err)
    from db.store import data_dir

    logs = list((data_dir() / "logs").glob("crash-*.txt"))
    assert len(logs) == 1 and str(logs[0]) in err[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "index.bin" in text and "test cmd" in text
    assert _runs()[0].status == "failed"


def test_bug_is_exit_1_and_traceback_on_stderr_when_log_unwritable(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "afile" / "sub"))
    (tmp_path / "afile").write_text("not a folder")

    def handler(args, ctx):
        return 1 / 0

    assert _run_handler(handler) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("internal error: ZeroDivisionError")
    assert "traceback above" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("make_error", [
    lambda d: PermissionError(13, "Permission denied", str(d / "out" / "x.json")),  # inside
    lambda d: FileNotFoundError(2, "No such file or directory", str(d / "in.npy")),  # itself
    lambda d: OSError(28, "No space left on device", str(d)),  # a folder above the output
])
def test_oserror_about_a_user_path_is_bad_input(tmp_path, capsys, make_error):
    def handler(args, ctx):
        raise make_error(tmp_path)

    assert _run_handler(handler, out=tmp_path / "out", data=str(tmp_path / "in.npy")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot use '") and str(tmp_path) in err[0]
    assert _runs()[0].status == "bad input"


def test_oserror_with_other_errno_on_user_path_is_internal(tmp_path, capsys):
    def handler(args, ctx):
        raise OSError(5, "Input/output error", str(tmp_path / "in.npy"))  # EIO: not the user

    assert _run_handler(handler, data=tmp_path / "in.npy") == 1


def test_bad_input_run_is_recorded_in_provenance(tmp_path, capsys):
    from engine.jobs import InputError

    def handler(args, ctx):
        ctx.inputs.append(args.data)
        raise InputError(f"'{args.data}' is truncated.")

    (tmp_path / "in.npy").write_bytes(b"\x93NUMPY")
    assert _run_handler(handler, data=tmp_path / "in.npy") == 2
    assert capsys.readouterr().err.strip() == f"error: '{tmp_path / 'in.npy'}' is truncated."
    run = _runs()[0]
    assert run.command == "test cmd" and run.status == "bad input" and "truncated" in run.message


def test_atomic_write_errors_name_the_final_path_not_the_temp_file(tmp_path, monkeypatch):
    import tempfile

    from db import atomic

    target = tmp_path / "out.json"
    with pytest.raises(IsADirectoryError) as e:  # os.replace onto a folder
        atomic.write_text(tmp_path, "x")
    assert e.value.filename == str(tmp_path)

    def read_only(dir=None, prefix="", suffix="", **kw):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}q1w2e3{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    for write in (lambda: atomic.write_json(target, {}),
                  lambda: atomic.write_with(target, lambda tmp: None)):
        with pytest.raises(PermissionError) as e:
            write()
        assert e.value.filename == str(target) and ".tmp" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_errors_about_other_files(tmp_path):
    from db.atomic import write_with

    with pytest.raises(FileNotFoundError) as e:
        write_with(tmp_path / "o.nii", lambda tmp: open(tmp_path / "missing-input.nii"))
    assert e.value.filename == str(tmp_path / "missing-input.nii")
    assert list(tmp_path.iterdir()) == []


def test_out_in_a_read_only_folder_names_the_users_path(tmp_path, capsys, monkeypatch):
    """End to end through a real handler: the message names --out, never '.out.*.tmp'."""
    import tempfile

    import numpy as np

    import main

    data = tmp_path / "paths.npy"
    np.save(data, np.cumsum(np.random.default_rng(0).normal(size=(4, 64)), axis=1))
    out = tmp_path / "ro" / "est.json"
    out.parent.mkdir()
    real = tempfile.mkstemp

    def mkstemp(dir=None, prefix="", suffix="", **kw):
        if dir is not None and Path(dir) == out.parent:
            raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x9{suffix}")
        return real(dir=dir, prefix=prefix, suffix=suffix, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code = main.main(["fsde", "hurst", "--data", str(data), "--dt", "0.01", "--out", str(out),
                      "--max-iter", "2"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "ETA" not in ln]
    assert code == 2 and lines == [f"error: cannot use '{out}': Permission denied."]
    assert not out.exists()


# --------------------------------------------------------------- Qt platform check (item 1)
LDD_MISSING = ("\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x1)\n"
               "\tlibxcb-icccm.so.4 => not found\n\tlibxcb-cursor.so.0 => not found\n"
               "\tlibxcb-icccm.so.4 => not found\n")


def test_platform_check_names_missing_packages_from_ldd():
    from gui.app import missing_libraries, platform_problem

    assert missing_libraries(LDD_MISSING) == ["libxcb-icccm.so.4", "libxcb-cursor.so.0"]
    msg = platform_problem({"DISPLAY": ":0"}, ldd_output=LDD_MISSING)
    assert msg.startswith("error:") and "\n" not in msg
    assert "sudo apt-get install libxcb-icccm4 libxcb-cursor0'" in msg
    assert "sudo dnf install xcb-util-wm xcb-util-cursor'" in msg
    unknown = platform_problem({"DISPLAY": ":0"}, ldd_output="\tlibfoo.so.9 => not found\n")
    assert "libfoo.so.9" in unknown and "libxcb-keysyms1" in unknown  # the full list


@pytest.mark.parametrize("env, expect", [
    ({"QT_QPA_PLATFORM": "offscreen"}, None),                       # no display needed
    ({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, None),
    ({"WAYLAND_DISPLAY": "wayland-0"}, None),                       # Qt picks wayland
    ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "needs a display"),
    ({}, "needs a display"),                                        # nothing at all
    ({"QT_QPA_PLATFORM": "xcb"}, "needs a display"),
    ({"DISPLAY": ":0"}, "missing"),                                 # xcb: libraries checked
    ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "x11"}, "missing"),
])
def test_platform_check_only_checks_xcb(env, expect):
    from gui.app import platform_problem

    msg = platform_problem(env, ldd_output=LDD_MISSING, connect=False)
    assert (msg is None) if expect is None else (expect in msg and msg.count("\n") == 0)


def test_gui_start_without_xcb_libraries_is_one_sentence_and_exit_2():
    """Simulated missing libraries: Qt would abort with a core dump (exit 134) here."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, gui.app as a\n"
            f"a.ldd = lambda path: {LDD_MISSING!r}\n"
            "import main\nsys.exit(main.main([]))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":99"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "libxcb-icccm4 libxcb-cursor0" in lines[0]
    env.pop("DISPLAY")
    from gui.app import NO_DISPLAY

    for argv in (["main.py"], ["main.py", "--check-gui"]):  # make run checks first
        r = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.strip() == NO_DISPLAY, r.stderr
    r = subprocess.run([sys.executable, "main.py", "--check-gui"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=dict(env, QT_QPA_PLATFORM="offscreen"))
    assert r.returncode == 0 and r.stdout.startswith("ok:")


def test_library_warnings_go_to_a_log_not_between_the_lines(capsys):
    import warnings

    import numpy as np

    from db.store import data_dir

    def handler(args, ctx):
        np.float64(1e308) * 10  # numpy's RuntimeWarning: overflow
        warnings.warn("pixdim[1,2,3] should be non-zero", UserWarning)
        print("result")

    assert _run_handler(handler) == 0
    captured = capsys.readouterr()
    assert captured.out == "result\n" and "Warning" not in captured.err
    log = (data_dir() / "logs" / "warnings.log").read_text()
    assert "RuntimeWarning: overflow" in log and "UserWarning: pixdim" in log


def test_second_ctrl_c_aborts_with_130_and_no_traceback(capsys):
    def handler(args, ctx):
        raise KeyboardInterrupt  # what the SIGINT handler raises on the second Ctrl-C

    assert _run_handler(handler) == 130
    assert capsys.readouterr().err.strip() == "aborted."
    assert _runs()[0].status == "cancelled"


def test_unexpected_gui_bug_names_its_crash_log(qtbot):
    from db.store import data_dir
    from gui.app import report_unexpected
    from gui.main_window import MainWindow

    win = MainWindow(show_dialogs=False)
    qtbot.addWidget(win)
    try:
        {}["missing key"]
    except KeyError as e:
        err = e
    with qtbot.waitSignal(win.error_shown) as sig:
        report_unexpected(win, type(err), err, err.__traceback__)
    (log,) = (data_dir() / "logs").glob("crash-*.txt")
    assert sig.args[0].startswith("Internal error: KeyError: 'missing key'")
    assert str(log) in sig.args[0] and "Traceback" not in sig.args[0]
    assert "test_unexpected_gui_bug_names_its_crash_log" in log.read_text()


def test_failure_outside_a_command_is_one_line_not_a_traceback(monkeypatch, capsys):
    """A broken subcommand module (or a GUI that fails to start) ends in one line + log."""
    import main

    monkeypatch.setattr(main, "CLI_MODULES", ("engine.no_such_area.cli",))
    monkeypatch.setattr("sys.argv", ["main.py", "--help"])
    assert main.entry() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: ModuleNotFoundError")


def test_write_json_is_strict_and_writes_nothing_on_nan(tmp_path):
    import json
    import math

    from db.atomic import write_json

    out = tmp_path / "est.json"
    out.write_text('{"old": 1}\n')
    for bad in ({"h": math.nan}, {"h": [1.0, -math.inf]}):
        with pytest.raises(ValueError):
            write_json(out, bad)
        assert json.loads(out.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["est.json"]


def test_recorded_parameters_stay_strict_json(capsys):
    import json
    import math

    from db.store import Store
    from engine.jobs import InputError

    def handler(args, ctx):
        raise InputError("--dt must be a positive finite number (got nan).")

    assert _run_handler(handler, dt=math.nan) == 2
    with Store() as s:
        (text,) = s.conn.execute("SELECT params FROM runs").fetchone()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"dt": "nan"}


def test_platform_check_reports_a_display_that_refuses_the_connection():
    from gui.app import platform_problem

    msg = platform_problem({"DISPLAY": ":97"}, ldd_output="")  # no X server on :97
    assert msg is not None and "cannot connect to the X display ':97'" in msg
