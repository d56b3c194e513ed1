"""`main.py tumor build-db`: build, resume or repair a simulation database."""
from __future__ import annotations

import sys
import time
from pathlib import Path

PRESET_NAMES = ("tiny", "demo", "standard")   # engine.tumor.database.PRESETS (kept light here)


def add_parser(actions) -> None:
    p = actions.add_parser(
        "build-db", help="build (or resume, or repair) a tumor simulation database",
        description="Simulate tumors from quasi-random origins and lambdas, store snapshots, "
                    "index them with FAISS. Rerunning the same command resumes an interrupted "
                    "build and repairs damaged shards or index.")
    p.add_argument("--db", required=True, type=Path, metavar="DIR", help="database folder")
    p.add_argument("--preset", choices=PRESET_NAMES, default="demo",
                   help="tiny (8 mm, tests), demo (4 mm, minutes), standard (3 mm, >= 50k "
                        "snapshots); default demo")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: CPU cores, at most 4)")
    p.add_argument("--seed", type=int, default=0, help="sampling-plan seed (default 0)")
    p.set_defaults(func=build_cmd, command="tumor build-db")


def build_cmd(args, ctx) -> None:
    from engine.jobs import InputError
    from engine.tumor.database import build_database, default_workers

    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise InputError(f"--workers must be at least 1 (got {workers}).")
    ctx.outputs.append(args.db)
    t0 = time.monotonic()
    m = build_database(args.db, preset=args.preset, seed=args.seed, workers=workers,
                       progress=ctx.progress, cancel=ctx.cancel)
    ctx.timings["build"] = time.monotonic() - t0
    print(f"{args.db}: {m['n_snapshots']} snapshots from {m['n_runs']} runs "
          f"(preset {m['preset']}, {m['spacing_mm']:g} mm grid, seed {m['seed']}) "
          f"in {ctx.timings['build']:.1f} s", file=sys.stdout)
