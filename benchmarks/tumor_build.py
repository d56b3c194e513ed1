"""Database build time from a timed fraction: a few batches spread over the lambda-sorted plan
are computed by the build's own task path (engine/tumor/execute.py: a Dask LocalCluster of
--workers processes x 1 thread, or in-process with --workers 1); each task reports its CPU
seconds (contention-independent) and snapshot count. CPU s per solver step (the cost model
engine.tumor.build.batch_cost: max steps of a batch's runs) is fitted on the timed batches and
applied to all; snapshots per run are interpolated over the batch index. --max-quantile < 1
leaves the most expensive (largest-lambda) batches out of the timed fraction (the fitted cost
per step then also covers them: an estimate, said so in the table). Estimated build on N idle
cores = total CPU s / N.

    .venv/bin/python benchmarks/tumor_build.py --presets demo standard large --sample 4
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed_batch(preset: str, seed: int, batch: int, **kw):
    """run_batch with the task's CPU seconds: (runs, snapshots, CPU s)."""
    from engine.tumor.build import run_batch

    t = time.process_time()
    runs, snaps, _ = run_batch(preset, seed, batch, device=kw.get("device"))
    return len(runs), len(snaps), time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["demo", "standard", "large"])
    ap.add_argument("--sample", type=int, default=4, help="batches timed per preset")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2, help="idle cores assumed for the estimate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-quantile", type=float, default=1.0,
                    help="time batches up to this fraction of the lambda-sorted plan")
    args = ap.parse_args()

    from engine.jobs import CancelToken, Progress
    from engine.tumor.build import batch_cost
    from engine.tumor.execute import compute_batches
    from engine.tumor.presets import PRESETS

    print(f"## Database build: timed fraction, {args.workers} workers x 1 thread; estimate "
          f"for {args.cores} idle cores = est. CPU s / {args.cores}")
    print("| preset | grid | batches timed | runs | snapshots | wall s | CPU s | "
          "snapshots/CPU-s | est. snapshots | est. CPU s | est. build |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        p = PRESETS[preset]
        cost = batch_cost(preset, args.seed)
        nb = len(cost)
        top = args.max_quantile * (nb - 1)
        sample = sorted({int(round(x)) for x in np.linspace(0, top, args.sample)})
        res = {}
        t = time.perf_counter()
        compute_batches(timed_batch, [(preset, args.seed, b) for b in sample], sample,
                        workers=args.workers, on_result=res.__setitem__,
                        on_status=lambda *a: None, sub_progress=lambda b: Progress(),
                        cancel=CancelToken())
        wall = time.perf_counter() - t
        runs = np.array([res[b][0] for b in sample])
        snaps = np.array([res[b][1] for b in sample])
        cpu = np.array([res[b][2] for b in sample])
        allb = np.arange(nb)
        est_cpu = cpu.sum() / cost[sample].sum() * cost.sum()
        est_snap = np.interp(allb, sample, snaps / runs).sum() * p.batch
        est_min = est_cpu / args.cores / 60
        print(f"| {preset} | {p.spacing_mm:g} mm | {len(sample)}/{nb} | {runs.sum()} | "
              f"{snaps.sum()} | {wall:.0f} | {cpu.sum():.0f} | {snaps.sum() / cpu.sum():.1f} | "
              f"~{est_snap:,.0f} | ~{est_cpu:,.0f} | "
              f"~{est_min:.0f} min ({est_min / 60:.1f} h) |", flush=True)
        print(f"<!-- {preset}: per-batch CPU s {np.round(cpu, 1).tolist()} at batches {sample} "
              f"(cost {cost[sample].round().tolist()} of total {cost.sum():.0f} steps; "
              f"{1e3 * cpu.sum() / cost[sample].sum():.2f} ms CPU per step) -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
