"""`main.py tumor ...`: the subcommands are defined next to the code they run."""
from __future__ import annotations

import importlib
import importlib.util

# Each module defines ``add_parser(subparsers)`` for one action.
ACTIONS = ("engine.tumor.build_cli", "engine.tumor.fit_cli", "engine.imaging.check_cli")


def register(sub) -> None:
    parser = sub.add_parser("tumor", help="tumor growth: build a simulation database, fit a patient")
    actions = parser.add_subparsers(dest="action", required=True)
    for name in ACTIONS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_parser(actions)
