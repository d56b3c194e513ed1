"""`main.py fsde ...`: the subcommands are defined next to the code they run."""
from __future__ import annotations

import importlib
import importlib.util

# Each module defines ``add_parser(subparsers)`` for its actions.
ACTIONS = ("engine.fsde.hurst_cli", "engine.fsde.video_cli")


def register(sub) -> None:
    parser = sub.add_parser("fsde", help="fractional SDEs: Hurst estimation, video prediction")
    actions = parser.add_subparsers(dest="action", required=True)
    for name in ACTIONS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_parser(actions)
