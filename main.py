#!/usr/bin/env python3
"""Entry point. No arguments: the GUI. Subcommands: headless batch work (see --help)."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module registers one subcommand group with ``register(subparsers)``.
CLI_MODULES = ("engine.tumor.cli", "engine.pvrnn.cli", "engine.fsde.cli")
WORKBENCHES = ("tumor", "sequence", "video")


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import CliParser  # one-line argparse errors, inherited by subcommands

    parser = CliParser(
        prog="main.py",
        description="Model-inversion workbench: tumor growth personalization, PV-RNN online "
                    "prediction, fractional-SDE video prediction. Without a subcommand the "
                    "GUI opens.")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="open the window offscreen on the demo data, save a PNG, exit")
    parser.add_argument("--workbench", choices=WORKBENCHES, default="tumor",
                        help="workbench to show first (default: tumor)")
    parser.add_argument("--check-gui", action="store_true",
                        help="check that the GUI can start on this desktop (Qt platform "
                             "plugin and its system libraries, a display), then exit")
    sub = parser.add_subparsers(title="subcommands", dest="group")
    for name in CLI_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from engine.cli import ArgumentsRejected, record_rejected

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except ArgumentsRejected as err:  # already printed: one line, exit 2
        record_rejected(err, sys.argv[1:] if argv is None else list(argv))
        raise
    if args.group is None and args.check_gui:
        from gui.app import platform_problem

        problem = platform_problem()
        print(problem or "ok: the GUI can start on this desktop.",
              file=sys.stderr if problem else sys.stdout)
        return 2 if problem else 0
    if args.group is None:
        from gui.app import run_gui

        return run_gui(screenshot=args.screenshot, workbench=args.workbench)
    if not hasattr(args, "func"):
        parser.parse_args([args.group, "--help"])
    from engine.cli import run

    return run(args, sys.argv[1:] if argv is None else list(argv))


def entry() -> int:
    """``main()`` with the last line of defence: an exception outside a command's run
    (building the parser, starting the GUI) is one line + a crash log, exit 1, never a raw
    traceback."""
    try:
        return main()
    except KeyboardInterrupt:
        print("aborted.", file=sys.stderr)
        return 130
    except Exception as err:
        from engine.cli import EXIT_INTERNAL, internal_error_line

        print(internal_error_line(err, "main.py", sys.argv[1:]), file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(entry())
