"""Headless command-line plumbing shared by every subcommand.

Each area registers its subcommands with ``register(subparsers)`` (engine/<area>/cli.py)
and sets ``func=handler`` where ``handler(args, ctx: CliContext) -> None``. ``run`` calls
the handler with a progress bar on stderr, Ctrl-C wired to the cancel token, exit codes
(0 ok, 2 bad input, 1 internal error, 130 cancelled) and a provenance record.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from engine.jobs import CancelToken, Cancelled, InputError, JobError, Progress, TextProgressBar

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


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
    return {k: v for k, v in vars(args).items() if k not in ("func", "command") and
            not callable(v)}


def _record(command: str, args, ctx: CliContext, status: str, message: str,
            started: float) -> None:
    """Write the run into the provenance store; never lets the store break the command."""
    try:
        from db.store import Store

        with Store() as store:
            run_id = store.start_run(command, _params(args), ctx.inputs)
            ctx.timings.setdefault("total", time.monotonic() - started)
            store.finish_run(run_id, status, ctx.outputs, ctx.timings, message)
    except Exception as err:  # pragma: no cover - a broken store only warns
        print(f"warning: could not record the run in the provenance store: {err}",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
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

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        args.func(args, ctx)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled:
        print("cancelled; rerun the same command to resume where it applies.", file=sys.stderr)
        _record(command, args, ctx, "cancelled", "", started)
        return EXIT_CANCELLED
    except OSError as err:  # an unwritable output folder, a full disk, a vanished file
        where = f" '{err.filename}'" if err.filename else ""
        print(f"error: cannot access{where}: {err.strerror or err}.", file=sys.stderr)
        _record(command, args, ctx, "failed", str(err), started)
        return EXIT_BAD_INPUT
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        _record(command, args, ctx, "failed", str(err), started)
        return EXIT_INTERNAL
    except Exception as err:
        traceback.print_exc(file=sys.stderr)
        print(f"internal error: {err}", file=sys.stderr)
        _record(command, args, ctx, "failed", repr(err), started)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGINT, previous)
    _record(command, args, ctx, "ok", "", started)
    return EXIT_OK


def register_group(sub, name: str, help: str, modules: tuple[str, ...]) -> None:
    """Add subcommand group ``name``; each module in ``modules`` defines
    ``add_parser(actions)`` for the actions it runs (kept next to the code they run)."""
    import importlib

    parser = sub.add_parser(name, help=help)
    actions = parser.add_subparsers(dest="action", required=True)
    for module in modules:
        importlib.import_module(module).add_parser(actions)


def existing_file(kind: str = "file"):
    """argparse type: a path that must exist, with a one-sentence error naming it."""

    def check(value: str) -> Path:
        p = Path(value)
        if not p.exists():
            raise argparse.ArgumentTypeError(f"{kind} '{value}' does not exist")
        return p

    return check
