#!/usr/bin/env python3
"""Issue 6 benchmarks: Hurst recovery (fsde_hurst.py) then video prediction (fsde_video.py).
Arguments (e.g. --quick) are passed to both."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for name in ("fsde_hurst.py", "fsde_video.py"):
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / name), *sys.argv[1:]])
        if rc:
            sys.exit(rc)
