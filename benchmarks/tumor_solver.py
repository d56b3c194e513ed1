#!/usr/bin/env python3
"""Tumor solver and database build benchmark.

1. Solver throughput (brain-voxel updates/s; one update = one SSP-RK2 step of one brain voxel
   of one simulation) for batch 1, 8, 32 on the demo (4 mm) and standard (3 mm) grids: torch vs
   scipy.sparse on the brain voxels only (backend="scipy", the primary baseline: same operator,
   same B and B = 1) and the plain numpy full-grid reference (simulate_numpy), all measured in
   the same run.
2. Front speed of the coarse explicit scheme vs 2 lambda over the lambda range (1-D slab).
3. Database build: a timed fraction of the demo and standard presets (batches spread over
   the lambda range, 2 worker processes of 1 thread each), snapshots/s, and the full build time
   extrapolated with the per-batch cost model of engine.tumor.database.

    .venv/bin/python benchmarks/tumor_solver.py [--quick] [--repeats 3] [--sample 6]
        [--parts solver,front,build]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def solver_table(repeats: int, quick: bool) -> None:
    from engine._torch import THREADS, torch
    from engine.tumor.anatomy import load_anatomy
    from engine.tumor.solver import simulate, simulate_numpy, time_step

    print(f"\n## Solver throughput (torch {torch.__version__}, {THREADS} threads, CPU)")
    print("Rates in brain-voxel updates per second (one update = one SSP-RK2 step of one brain "
          "voxel of one simulation). Baselines, same scheme, measured in the same run: numpy on "
          "the full grid (one simulation at a time) and scipy.sparse on the brain voxels only "
          "(backend='scipy': the same CSR operator, one simulation at a time, B = 1), so the "
          "last column shows what torch and batching add beyond updating brain voxels only.")
    threads = sorted({1, THREADS})
    print("| grid | brain voxels | B | " + " | ".join(f"torch {t} thr" for t in threads)
          + " | scipy brain-only, same B | numpy full grid, B=1 | scipy brain-only, B=1 | "
          "best torch / scipy B=1 |")
    print("|---|---|---|" + "---|" * len(threads) + "---|---|---|---|")
    lam = 8.0
    for spacing in (4.0, 3.0):
        an = load_anatomy(spacing)
        nb = int(an.brain.sum())
        o = np.argwhere(an.wm > 0.9)[len(np.argwhere(an.wm > 0.9)) // 2].astype(float)
        steps = 10 if quick else 20
        tau = steps * float(time_step(lam, spacing))

        def timed(fn):
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            return statistics.median(ts)

        np_rate = nb * steps / timed(lambda: simulate_numpy(an, [lam], [o], [tau]))
        sp1 = nb * steps / timed(lambda: simulate(an, [lam], [o], [tau], backend="scipy"))
        for B in (1, 8, 32):
            rates = []
            for t in threads:
                torch.set_num_threads(t)
                t_t = timed(lambda: simulate(an, np.full(B, lam), np.tile(o, (B, 1)), [tau],
                                             device="cpu"))
                rates.append(B * nb * steps / t_t)
            torch.set_num_threads(THREADS)
            spb = B * nb * steps / timed(lambda: simulate(an, np.full(B, lam), np.tile(o, (B, 1)),
                                                          [tau], backend="scipy"))
            print(f"| {spacing:g} mm | {nb} | {B} | "
                  + " | ".join(f"{r / 1e6:.1f}" for r in rates)
                  + f" | {spb / 1e6:.1f} | {np_rate / 1e6:.1f} | {sp1 / 1e6:.1f} | "
                    f"{max(rates) / sp1:.2f} |", flush=True)


def front_table() -> None:
    from engine.tumor.anatomy import make_anatomy
    from engine.tumor.solver import simulate

    print("\n## Front speed of the grid solver / 2 lambda (1-D white-matter slab, tau 30..60)")
    lams = (0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 27.0)
    print("| h | " + " | ".join(f"l={x:g}" for x in lams) + " |")
    print("|---|" + "---|" * len(lams))
    for h in (1.0, 3.0, 4.0):
        row = []
        for lam in lams:
            v = max(2 * lam, h / np.log(max(h * h / lam / lam, 2.0))) * 1.3
            n = int((v * 60 + 10 * h) / h) + 5
            wm = np.ones((n, 1, 1))
            an = make_anatomy(wm, 0 * wm, np.diag([h, h, h, 1.0]), h)
            u = simulate(an, [lam], [[0, 0, 0]], [30.0, 60.0])[0, :, :, 0, 0]
            pos = []
            for s in range(2):
                i = int(np.argmax(u[s] < 0.5))
                pos.append(h * ((i - 1) + (u[s, i - 1] - 0.5) / (u[s, i - 1] - u[s, i])))
            row.append((pos[1] - pos[0]) / 30.0 / (2 * lam))
        print(f"| {h:g} mm | " + " | ".join(f"{r:.3f}" for r in row) + " |", flush=True)


def _timed_batch(preset: str, seed: int, batch: int):
    """run_batch in a worker, with the worker's CPU seconds (contention-independent)."""
    from engine.tumor.build import run_batch

    t = time.process_time()
    runs, snaps, _ = run_batch(preset, seed, batch)
    return len(runs), len(snaps), time.process_time() - t


def build_table(n_sample: int, workers: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from engine.tumor.build import PRESETS, batch_cost as _batch_cost
    from engine.tumor.execute import pool_worker_init as _worker_init

    print(f"\n## Database build: timed fraction, {workers} worker processes x 1 thread")
    print("Batches are sorted by lambda; per-batch CPU time and snapshot counts are interpolated "
          "over the batch index, the full build time on N idle cores = total CPU s / N.")
    print("| preset | grid | batches timed | runs | snapshots | wall s | CPU s | snapshots/CPU-s |"
          " est. snapshots | est. CPU s | est. build on 2 cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        list(pool.map(abs, range(workers)))           # start the workers before timing
        for preset in ("demo", "standard"):
            p = PRESETS[preset]
            nb = len(_batch_cost(preset, 0))
            sample = sorted({int(round(x)) for x in np.linspace(0, nb - 1, n_sample)})
            t = time.perf_counter()
            res = list(pool.map(_timed_batch, [preset] * len(sample), [0] * len(sample), sample))
            wall = time.perf_counter() - t
            runs = np.array([r[0] for r in res])
            snaps = np.array([r[1] for r in res])
            cpu = np.array([r[2] for r in res])
            allb = np.arange(nb)
            est_cpu = np.interp(allb, sample, cpu).sum()
            est_snap = np.interp(allb, sample, snaps / runs).sum() * p.batch
            print(f"| {preset} | {p.spacing_mm:g} mm | {len(sample)}/{nb} | {runs.sum()} | "
                  f"{snaps.sum()} | {wall:.1f} | {cpu.sum():.1f} | {snaps.sum() / cpu.sum():.1f} | "
                  f"~{est_snap:.0f} | ~{est_cpu:.0f} | ~{est_cpu / 2 / 60:.1f} min |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps, skip the build part")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", type=int, default=6, help="batches timed per preset")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--parts", default="solver,front,build",
                    help="comma-separated subset of solver, front, build")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    print("Timings on a shared machine are affected by other processes (see uptime):",
          open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else "")
    if "solver" in parts:
        solver_table(args.repeats, args.quick)
    if "front" in parts:
        front_table()
    if "build" in parts and not args.quick:
        build_table(args.sample, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
