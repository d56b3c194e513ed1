"""`main.py tumor build-db` (build, resume or repair) and `main.py tumor check-db` (verify)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.cli import positive_int, seed_int

PRESET_NAMES = ("tiny", "demo", "standard", "large")   # engine/tumor/presets.py (kept light)


def add_parser(actions) -> None:
    p = actions.add_parser(
        "build-db", help="build (or resume, or repair) a tumor simulation database",
        description="Simulate tumors from quasi-random origins and lambdas, store snapshots, "
                    "index them with FAISS. Rerunning the same command resumes an interrupted "
                    "build and repairs damaged shards, catalog or index.")
    p.add_argument("--db", required=True, type=Path, metavar="DIR", help="database folder")
    p.add_argument("--preset", choices=PRESET_NAMES, default="demo",
                   help="tiny (8 mm, tests), demo (4 mm, minutes), standard (3 mm, ~60k "
                        "snapshots), large (2 mm, >= 100k snapshots: a cluster); default demo")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local worker processes (default: CPU cores, at most 4)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="compute the batches on this Dask scheduler's workers instead")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="sampling-plan seed, 0 .. 2^32 - 1 (default 0)")
    p.set_defaults(func=build_cmd, command="tumor build-db")
    c = actions.add_parser(
        "check-db", help="verify a tumor simulation database (shards, catalog, index)",
        description="Open the database as `tumor fit` does (catalog, manifest, shard sizes and "
                    "end blocks, index and embedding hashes); with --full also the sha256 of "
                    "every shard byte. Exit 2 with one sentence naming the damaged file.")
    c.add_argument("--db", required=True, type=Path, metavar="DIR", help="database folder")
    c.add_argument("--full", action="store_true", help="hash every byte of every shard")
    c.set_defaults(func=check_cmd, command="tumor check-db")


def build_cmd(args, ctx) -> None:
    from engine.jobs import InputError
    from engine.tumor.database import build_database, default_workers

    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise InputError(f"--workers must be at least 1 (got {workers}).")
    ctx.outputs.append(args.db)
    t0 = time.monotonic()
    m = build_database(args.db, preset=args.preset, seed=args.seed, workers=workers,
                       scheduler=args.scheduler, progress=ctx.progress, cancel=ctx.cancel)
    ctx.timings["build"] = time.monotonic() - t0
    print(f"{args.db}: {m['n_snapshots']} snapshots from {m['n_runs']} runs "
          f"(preset {m['preset']}, {m['spacing_mm']:g} mm grid, seed {m['seed']}) "
          f"in {ctx.timings['build']:.1f} s", file=sys.stdout)


def check_cmd(args, ctx) -> None:
    from engine.tumor.database import check_database

    ctx.inputs.append(args.db)
    t0 = time.monotonic()
    n_bytes = check_database(args.db, full=args.full, progress=ctx.progress, cancel=ctx.cancel)
    ctx.timings["check"] = time.monotonic() - t0
    print(f"{args.db}: intact ({'every byte hashed' if args.full else 'quick check'}, "
          f"{n_bytes / 1e6:.1f} MB of shards) in {ctx.timings['check']:.1f} s", file=sys.stdout)
