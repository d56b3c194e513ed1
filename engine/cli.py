"""Headless command-line plumbing shared by every subcommand.

Each area registers its subcommands with ``register(subparsers)`` (engine/<area>/cli.py)
and sets ``func=handler`` where ``handler(args, ctx: CliContext) -> None``. ``run`` calls
the handler with a progress bar on stderr, Ctrl-C wired to the cancel token, exit codes
and a provenance record for every run (ok, bad input, failed, cancelled).

Exit codes: 0 ok; 2 bad input (:class:`InputError`, an argparse error, or an OSError about
a path the user gave: see :func:`is_user_path_error`); 1 internal error (anything else: one
line on stderr, the traceback in a log file under the data folder); 130 cancelled.
Argument types for numbers (:func:`finite_float`, :func:`int_range`) live here so every
option is checked for finiteness and range the same way (docs/dev/cli_api.md).
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from engine.jobs import (CancelToken, Cancelled, InputError, JobError, Progress, ProgressEvent,
                         format_duration)

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130

# OSErrors that mean "this path the user gave cannot be used", not a bug.
USER_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                         errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG,
                         errno.EEXIST, errno.ENOTEMPTY, errno.EFBIG, errno.ELOOP})


# ----------------------------------------------------------------------------- progress
class TextProgressBar:
    """Progress callback that draws a one-line bar on a stream (stderr by default).
    On a terminal the line is redrawn in place; otherwise one line per update, at most
    every ``min_interval_s`` seconds (the final 100 % line always)."""

    def __init__(self, stream=None, width: int = 30, min_interval_s: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._tty = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        if ev.fraction < 1.0 and now - self._last < self.min_interval_s:
            return
        self._last = now
        filled = int(round(self.width * ev.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"[{bar}] {100 * ev.fraction:5.1f}% {format_duration(ev.elapsed_s)} "
                f"ETA {format_duration(ev.eta_s)} {ev.message}")
        if self._tty:
            self.stream.write("\r" + line[:150].ljust(150))
            if ev.fraction >= 1.0:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def is_progress_line(line: str) -> bool:
    """True for a line drawn by :class:`TextProgressBar` (tests filter them out of stderr)."""
    return line.lstrip("\r").startswith("[") and "%" in line and "ETA" in line


# ----------------------------------------------------------------------------- argparse
class ArgumentsRejected(SystemExit):
    """Raised (exit 2) by :class:`CliParser` after printing its one line; main.py records
    the rejected run in the provenance store with ``prog`` and ``message``."""

    def __init__(self, prog: str, message: str):
        super().__init__(EXIT_BAD_INPUT)
        self.prog, self.message = prog, message


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: ``error: PROG: MESSAGE (see PROG --help).``
    Subparsers inherit the class, so every subcommand reports the same way (exit 2)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        message = _one_line(message)
        sys.stderr.write(f"error: {self.prog}: {message} (see '{self.prog} --help').\n")
        raise ArgumentsRejected(self.prog, message)


def record_rejected(err: ArgumentsRejected, argv: list[str]) -> None:
    """Record a command line refused by argparse (status 'bad input') in the provenance store."""
    command = err.prog.removeprefix("main.py").strip() or "main.py"
    _store_run(command, {"argv": list(argv)}, [], [], {}, "bad input", err.message)


def finite_float(min: float | None = None, max: float | None = None, *,
                 min_exclusive: bool = False, max_exclusive: bool = False):
    """argparse type: a finite float in [min, max] (``*_exclusive`` opens a bound).
    ``finite_float(0, min_exclusive=True)`` is a positive number; nan/inf are refused."""

    def bounds() -> str:
        lo = "" if min is None else f"{'>' if min_exclusive else '>='} {min:g}"
        hi = "" if max is None else f"{'<' if max_exclusive else '<='} {max:g}"
        return " and ".join(b for b in (lo, hi) if b)

    def check(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{value}'") from None
        ok = math.isfinite(x)
        if ok and min is not None:
            ok = x > min if min_exclusive else x >= min
        if ok and max is not None:
            ok = x < max if max_exclusive else x <= max
        if not ok:
            want = "a finite number" + (f" {bounds()}" if bounds() else "")
            raise argparse.ArgumentTypeError(f"expected {want}, got '{value}'")
        return x

    check.__name__ = "finite_float"  # argparse names the type in some messages
    return check


def int_range(min: int | None = None, max: int | None = None):
    """argparse type: an integer in [min, max] (either bound may be None)."""

    def check(value: str) -> int:
        try:
            x = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{value}'") from None
        if (min is not None and x < min) or (max is not None and x > max):
            if max is None:
                want = f">= {min}"
            elif min is None:
                want = f"<= {max}"
            else:
                want = f"from {min} to {max}"
            raise argparse.ArgumentTypeError(f"expected an integer {want}, got '{value}'")
        return x

    check.__name__ = "int_range"
    return check


positive_int = int_range(1)                  # counts: --workers, --top-k, --epochs, --samples
nonneg_int = int_range(0)                    # --context 0 style options
seed_int = int_range(0, 2**32 - 1)           # what numpy/torch seeding accepts everywhere
positive_float = finite_float(0, min_exclusive=True)   # --dt, --lr, --fps, --days
nonneg_float = finite_float(0)


def existing_file(kind: str = "file"):
    """argparse type: a path that must exist, with a one-sentence error naming it."""

    def check(value: str) -> Path:
        p = Path(value)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{kind} '{value}' does not exist")
        return p

    return check


def register_group(sub, name: str, help: str, modules: tuple[str, ...]) -> None:
    """Add subcommand group ``name``; each module in ``modules`` defines
    ``add_parser(actions)`` for the actions it runs (kept next to the code they run)."""
    import importlib

    parser = sub.add_parser(name, help=help)
    actions = parser.add_subparsers(dest="action", required=True)
    for module in modules:
        importlib.import_module(module).add_parser(actions)


# ----------------------------------------------------------------------------- running
@dataclass
class CliContext:
    """What a handler gets besides its arguments. Handlers append the files they read
    and write to ``inputs``/``outputs`` and may fill ``timings`` (seconds per stage)."""

    progress: Progress
    cancel: CancelToken
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _params(args: argparse.Namespace) -> dict:
    """The arguments to record (non-finite floats as text, so the record stays strict JSON)."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in vars(args).items() if k not in ("func", "command") and not callable(v)}


def user_paths(args: argparse.Namespace, ctx: CliContext | None = None) -> list[Path]:
    """Every path the user named: string/Path argument values (lists too) and the files the
    handler declared in ``ctx.inputs``/``ctx.outputs``; absolute, not resolved."""
    values: list = []
    for k, v in _params(args).items():
        if k in ("group", "action"):  # subcommand names, not paths
            continue
        values.extend(v if isinstance(v, (list, tuple)) else [v])
    if ctx is not None:
        values += list(ctx.inputs) + list(ctx.outputs)
    out = []
    for v in values:
        if isinstance(v, (str, os.PathLike)) and str(v) and "://" not in str(v):
            out.append(Path(os.path.abspath(os.fspath(v))))
    return out


def is_user_path_error(err: OSError, paths: list[Path]) -> bool:
    """True when ``err`` is bad input: its errno says the path is missing, unreadable,
    unwritable, of the wrong kind or on a full/read-only disk (USER_ERRNOS), and the file it
    names is one of ``paths``, inside one of them (a file in ``--db DIR``) or a folder above
    one of them (the output's folder). Anything else is an internal error."""
    if err.errno not in USER_ERRNOS:
        return False
    names = [n for n in (err.filename, err.filename2) if n not in (None, "")]
    if not names:
        return False
    for name in names:
        f = Path(os.path.abspath(os.fsdecode(name) if isinstance(name, bytes) else str(name)))
        for p in paths:
            if f == p or p in f.parents or f in p.parents:
                return True
    return False


def describe_os_error(err: OSError) -> str:
    """One sentence for an OSError about a user's path, e.g. "cannot use 'out/x.json':
    Permission denied." (a file where a folder is needed is said so)."""
    name = err.filename if err.filename2 in (None, "") else err.filename2
    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    if err.errno in (errno.EEXIST, errno.ENOTDIR):
        for p in (Path(name), *Path(name).parents):
            if p.is_file():
                return f"'{p}' is a file where a folder is needed (in '{name}')." if \
                    str(p) != name else f"'{name}' is a file where a folder is needed."
    what = _one_line(err.strerror or os.strerror(err.errno or 0)).rstrip(".")
    return f"cannot use '{name}': {what}."


def _store_run(command: str, params: dict, inputs, outputs, timings: dict, status: str,
               message: str) -> None:
    """Write one run into the provenance store; never lets the store break the command."""
    try:
        from db.store import Store
        from engine.version import program_version

        with Store() as store:
            run_id = store.start_run(command, params, inputs, version=program_version())
            store.finish_run(run_id, status, outputs, timings, message)
    except Exception as err:  # a broken store only warns
        print(f"warning: could not record the run in the provenance store: {err}",
              file=sys.stderr)


def _record(command: str, args, ctx: CliContext, status: str, message: str,
            started: float) -> None:
    ctx.timings.setdefault("total", time.monotonic() - started)
    _store_run(command, _params(args), ctx.inputs, ctx.outputs, ctx.timings, status, message)


def write_crash_log(command: str, argv: list[str] | None, exc: BaseException) -> Path | None:
    """Write the traceback of an internal error to ``<data dir>/logs/crash-<time>-<pid>.txt``;
    returns its path, or None when it cannot be written."""
    try:
        from db.atomic import write_text
        from db.store import data_dir
        from engine.version import program_version

        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = data_dir() / "logs" / f"crash-{stamp}-{os.getpid()}.txt"
        text = (f"command: {' '.join(argv) if argv else command}\n"
                f"version: {program_version()}  python: {sys.version.split()[0]}\n\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        write_text(path, text)
        return path
    except Exception:
        return None


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for CLI runs: Python/numpy warnings go to
    ``<data dir>/logs/warnings.log`` so stderr keeps only progress and the one sentence (a
    warning is printed as one line when the log cannot be written)."""
    text = f"{category.__name__}: {_one_line(message)} ({filename}:{lineno})"
    try:
        from db.store import data_dir

        log = data_dir() / "logs" / "warnings.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} {text}\n")
    except Exception:
        print(f"warning: {text}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the handler selected by argparse; returns the process exit code."""
    cancel = CancelToken()
    ctx = CliContext(Progress(TextProgressBar()), cancel)
    command = getattr(args, "command", "?")
    started = time.monotonic()

    def on_sigint(signum, frame):
        if cancel.cancelled:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        print("\ncancelling (Ctrl-C again to abort)...", file=sys.stderr)
        cancel.cancel()

    def fail(code: int, line: str, status: str, message: str) -> int:
        _record(command, args, ctx, status, message, started)  # a store warning comes first
        sys.stdout.flush()
        print(line, file=sys.stderr)
        return code

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with warnings.catch_warnings():  # warnings to a log file, not between progress lines
            warnings.showwarning = _log_warning
            args.func(args, ctx)
    except InputError as err:
        return fail(EXIT_BAD_INPUT, f"error: {_one_line(err)}", "bad input", str(err))
    except Cancelled:
        return fail(EXIT_CANCELLED, "cancelled; rerun the same command to resume where it "
                    "applies.", "cancelled", "")
    except KeyboardInterrupt:  # the second Ctrl-C
        return fail(EXIT_CANCELLED, "aborted.", "cancelled", "aborted")
    except OSError as err:
        if is_user_path_error(err, user_paths(args, ctx)):
            return fail(EXIT_BAD_INPUT, f"error: {describe_os_error(err)}", "bad input",
                        str(err))
        return _internal(err, command, argv, fail)
    except JobError as err:
        return fail(EXIT_INTERNAL, f"error: {_one_line(err)}", "failed", str(err))
    except Exception as err:
        return _internal(err, command, argv, fail)
    finally:
        signal.signal(signal.SIGINT, previous)
    _record(command, args, ctx, "ok", "", started)
    return EXIT_OK


def internal_error_line(err: BaseException, command: str, argv=None) -> str:
    """Log the traceback of an unexpected exception (printed to stderr instead when the log
    cannot be written) and return the one line that reports it."""
    log = write_crash_log(command, argv, err)
    if log is None:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        where = "the traceback above"
    else:
        where = f"the file {log}"
    summary = _one_line(f"{type(err).__name__}: {err}")
    return (f"internal error: {summary} (please report this with the command line and "
            f"{where}).")


def _internal(err: BaseException, command: str, argv, fail) -> int:
    return fail(EXIT_INTERNAL, internal_error_line(err, command, argv), "failed", repr(err))
