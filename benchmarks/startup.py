#!/usr/bin/env python3
"""Cold start of the window, measured from the shell: wall time of
`python main.py --screenshot OUT.png --workbench W` (window built, demo data loaded, rendered,
saved, exited), median of several runs, against `python main.py --help` (interpreter + CLI
start-up) measured in the same run. Runs with an empty user data directory (no demo database,
so no demo fit), i.e. the first start on a fresh machine."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(args, env) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, WORKBENCH_DATA_DIR=tmp, QT_QPA_PLATFORM="offscreen")
        rows = [("main.py --help (baseline)", ["--help"])]
        rows += [(f"--screenshot --workbench {w}", ["--screenshot", f"{tmp}/s.png", "--workbench", w])
                 for w in ("tumor", "sequence", "video")]
        results = []
        for name, argv in rows:
            wall(argv, env)  # warm the OS file cache once
            times = [wall(argv, env) for _ in range(args.runs)]
            results.append((name, statistics.median(times), min(times), max(times)))
    base = results[0][1]
    print(f"{'command':34s} {'median s':>9s} {'min':>6s} {'max':>6s} {'x baseline':>10s}")
    for name, med, lo, hi in results:
        print(f"{name:34s} {med:9.2f} {lo:6.2f} {hi:6.2f} {med / base:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
