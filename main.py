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
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Model-inversion workbench: tumor growth personalization, PV-RNN online "
                    "prediction, fractional-SDE video prediction. Without a subcommand the "
                    "GUI opens.")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="open the window offscreen on the demo data, save a PNG, exit")
    parser.add_argument("--workbench", choices=WORKBENCHES, default="tumor",
                        help="workbench to show first (default: tumor)")
    sub = parser.add_subparsers(title="subcommands", dest="group")
    for name in CLI_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group is None:
        from gui.app import run_gui

        return run_gui(screenshot=args.screenshot, workbench=args.workbench)
    if not hasattr(args, "func"):
        parser.parse_args([args.group, "--help"])
    from engine.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
