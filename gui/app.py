"""Start the GUI, or render it offscreen to a PNG (``--screenshot``).

Before Qt is touched, :func:`platform_problem` checks that the platform plugin Qt will pick
can start (xcb: its system libraries resolve and the display answers); otherwise one
sentence naming the missing packages and exit 2, instead of Qt's abort and core dump.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Shared library (soname) that Qt's xcb plugin needs -> (Debian/Ubuntu, Fedora) package.
# Checked against `ldd PySide6/Qt/plugins/platforms/libqxcb.so` (PySide6 6.11).
XCB_PACKAGES = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}
# What the README tells users to install once (the libraries a minimal desktop often lacks).
README_APT = ("libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 "
              "libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1")
README_DNF = ("xcb-util-cursor xcb-util-wm xcb-util-image xcb-util-keysyms "
              "xcb-util-renderutil libxkbcommon-x11 libglvnd-egl libglvnd-glx")


def missing_libraries(ldd_output: str) -> list[str]:
    """Sonames that ``ldd`` reports as ``NAME => not found`` (unique, in order)."""
    out: list[str] = []
    for line in ldd_output.splitlines():
        if "=> not found" in line:
            name = line.split("=>")[0].strip()
            if name and name not in out:
                out.append(name)
    return out


def missing_libraries_message(missing: list[str]) -> str:
    """One sentence naming the missing libraries and the commands that install them."""
    apt = [XCB_PACKAGES[m][0] for m in missing if m in XCB_PACKAGES]
    dnf = [XCB_PACKAGES[m][1] for m in missing if m in XCB_PACKAGES]
    if len(apt) < len(missing):  # a library we do not know: offer the whole list
        apt, dnf = README_APT.split(), README_DNF.split()
    apt, dnf = list(dict.fromkeys(apt)), list(dict.fromkeys(dnf))
    return (f"error: the GUI cannot start because Qt's xcb platform plugin needs system "
            f"libraries that are missing ({', '.join(missing)}); install them with "
            f"'sudo apt-get install {' '.join(apt)}' (Debian/Ubuntu) or "
            f"'sudo dnf install {' '.join(dnf)}' (Fedora), or use the subcommands "
            f"(main.py --help) without a display.")


NO_DISPLAY = ("error: the GUI needs a display and none is set (neither DISPLAY nor "
              "WAYLAND_DISPLAY); run it from a desktop session, use 'main.py --screenshot "
              "OUT.png' to render offscreen, or use the subcommands (main.py --help).")


def xcb_plugin_path() -> Path | None:
    """PySide6's Qt/plugins/platforms/libqxcb.so, located without importing Qt."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    for root in (spec.submodule_search_locations or []) if spec else []:
        p = Path(root) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if p.exists():
            return p
    return None


def ldd(path: Path) -> str:
    """``ldd PATH`` output ('' when ldd is not available: then nothing is checked)."""
    try:
        return subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def display_unreachable(display: str) -> str | None:
    """One sentence when the X server ``display`` does not accept a connection (else None)."""
    import ctypes

    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # reported by the library check
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    failed = bool(xcb.xcb_connection_has_error(conn))
    xcb.xcb_disconnect(conn)
    if failed:
        return (f"error: the GUI cannot connect to the X display '{display}' (is the X "
                f"server running and are you allowed to use it?); use 'main.py --screenshot "
                f"OUT.png' to render offscreen, or use the subcommands (main.py --help).")
    return None


def platform_problem(env=None, plugin: Path | None = None, ldd_output: str | None = None,
                     connect: bool = True) -> str | None:
    """One sentence when Qt's platform plugin will not start under ``env`` (default
    os.environ), else None. Only xcb is checked (QT_QPA_PLATFORM unset or 'xcb' on Linux,
    and not a Wayland session); ``ldd_output`` replaces running ldd on ``plugin``."""
    env = os.environ if env is None else env
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if sys.platform.startswith("linux") and platform.startswith("wayland") and not wayland:
        return NO_DISPLAY
    if not sys.platform.startswith("linux") or platform not in ("", "xcb"):
        return None
    if not display and not wayland:
        return NO_DISPLAY
    if platform == "" and wayland and (not display or env.get("XDG_SESSION_TYPE") == "wayland"):
        return None  # Qt picks its wayland plugin
    if ldd_output is None:
        plugin = plugin or xcb_plugin_path()
        ldd_output = ldd(plugin) if plugin else ""
    missing = missing_libraries(ldd_output)
    if missing:
        return missing_libraries_message(missing)
    if not display:
        return NO_DISPLAY
    return display_unreachable(display) if connect else None


def run_gui(screenshot: str | None = None, workbench: str = "tumor") -> int:
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    problem = platform_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
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

    if isinstance(err, OSError):
        logging.getLogger("gui").error("".join(traceback.format_exception(kind, err, tb)))
        where = f" '{err.filename}'" if err.filename else ""
        window.show_error(f"Cannot access{where}: {err.strerror or err}.")
        return
    from engine.cli import write_crash_log

    err.__traceback__ = tb if tb is not None else err.__traceback__
    log = write_crash_log("gui", None, err)
    if log is None:
        logging.getLogger("gui").error("".join(traceback.format_exception(kind, err, tb)))
    where = f" and the file {log}" if log else ""
    window.show_error(f"Internal error: {kind.__name__}: {err} (please report this with what "
                      f"you were doing{where}).")


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
