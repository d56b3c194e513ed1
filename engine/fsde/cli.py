"""`main.py fsde ...`: the actions are defined next to the code they run."""
from engine.cli import register_group


def register(sub) -> None:
    register_group(sub, "fsde", "fractional SDEs: Hurst estimation, video prediction",
                   ("engine.fsde.hurst_cli", "engine.fsde.video_cli"))
