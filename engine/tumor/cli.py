"""`main.py tumor ...`: the actions are defined next to the code they run."""
from engine.cli import register_group


def register(sub) -> None:
    register_group(sub, "tumor", "tumor growth: check files, build a simulation database, fit a "
                   "patient", ("engine.imaging.check_cli", "engine.tumor.build_cli",
                               "engine.tumor.fit_cli",
                               "engine.tumor.native_cli"))
