"""FAISS index at scale: build time, single-query time and recall@k of the index the database
chooses (engine/tumor/index.py: flat up to FLAT_MAX, IVF above) against the exact flat index,
plus the re-rank (exact Dice of the top candidates on memory-mapped uint8 shards).

    .venv/bin/python benchmarks/tumor_index.py                  # 4k, 60k, 1M synthetic
    .venv/bin/python benchmarks/tumor_index.py --db DIR         # + that database's embeddings
    .venv/bin/python benchmarks/tumor_index.py --sizes 4000 60000 --nprobe 8 16 32

Synthetic embeddings (the real databases stop at ~60k): each "run" is a short smooth
trajectory (a start point plus a growing step along a random direction, small noise) in 256
dimensions with a decaying spectrum, normalised to unit length like the real embedding
(inner product = mean cosine); queries are points of new runs. Query times are medians of
single queries (the inverse searches one patient at a time); threads: WORKBENCH_THREADS.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

D = 256
PER_RUN = 20


def synthetic(n: int, seed: int) -> np.ndarray:
    """(n, D) float32 unit vectors along PER_RUN-point trajectories."""
    rng = np.random.default_rng(seed)
    scale = (1.0 / np.sqrt(np.arange(1, D + 1))).astype(np.float32)
    runs = -(-n // PER_RUN)
    out = np.empty((runs * PER_RUN, D), np.float32)
    t = np.linspace(0.0, 1.0, PER_RUN, dtype=np.float32)[:, None]
    for lo in range(0, runs, 10000):
        r = min(10000, runs - lo)
        a = rng.standard_normal((r, 1, D), dtype=np.float32) * scale
        v = rng.standard_normal((r, 1, D), dtype=np.float32) * scale
        x = a + t[None] * v + 0.05 * rng.standard_normal((r, PER_RUN, D), dtype=np.float32) * scale
        out[lo * PER_RUN:(lo + r) * PER_RUN] = x.reshape(-1, D)
    out = out[:n]
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def median_query_ms(index, queries: np.ndarray, k: int) -> str:
    """'wall / CPU' median ms of single queries (CPU = process time: all threads)."""
    wall, cpu = [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        index.search(q[None], k)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return f"{1e3 * np.median(wall):.2f} / {1e3 * np.median(cpu):.2f}"


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def rerank_ms(n_brain: int, tumor_vox: int, k: int, repeats: int = 20) -> str:
    """Gather k random snapshots' values on the observed tumor's voxels from a memory-mapped
    uint8 shard file and score core/whole Dice (what the inverse's re-rank does)."""
    rng = np.random.default_rng(0)
    n_rows = 4000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.npy"
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n_rows, n_brain))
        for lo in range(0, n_rows, 500):
            arr[lo:lo + 500] = rng.integers(0, 256, (min(500, n_rows - lo), n_brain), np.uint8)
        arr.flush()
        del arr
        q = np.load(path, mmap_mode="r")
        cols = np.sort(rng.choice(n_brain, tumor_vox, replace=False))
        obs_core = rng.random(tumor_vox) < 0.3
        obs_whole = np.ones(tumor_vox, bool)
        wall, cpu = [], []
        for _ in range(repeats):
            ids = np.sort(rng.choice(n_rows, k, replace=False))
            t, t_cpu = time.perf_counter(), time.process_time()
            v = np.take(np.asarray(q[ids]), cols, axis=1)
            c, w = v >= 153, v >= 51
            dc = 2 * (c & obs_core).sum(1) / (c.sum(1) + obs_core.sum() + 1e-9)
            dw = 2 * (w & obs_whole).sum(1) / (w.sum(1) + obs_whole.sum() + 1e-9)
            np.argsort(-(dc + dw))
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - t_cpu)
        del q
    return f"{1e3 * np.median(wall):.2f} / {1e3 * np.median(cpu):.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[4000, 60000, 1000000])
    ap.add_argument("--db", type=Path, default=None, help="also a built database's embeddings")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from engine._faiss import faiss
    from engine.threads import THREADS
    from engine.tumor.index import FLAT_MAX, NPROBE, make_index

    print(f"## FAISS index: chosen by size (flat <= {FLAT_MAX:,}, IVF above, nprobe "
          f"{NPROBE}); k = {args.k}, {args.queries} single queries, {THREADS} threads; "
          "query ms: wall / CPU medians")
    print("| snapshots | data | index | nlist | nprobe | build s | flat build s | query ms | "
          "flat query ms | recall@k vs flat |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = []
    if args.db is not None:
        from engine.tumor.database import TumorDatabase

        db = TumorDatabase.open(args.db)
        x = db.stored_embeddings()
        rng = np.random.default_rng(1)
        qi = rng.choice(len(x), min(args.queries, len(x)), replace=False)
        q = x[qi] + 0.05 * rng.standard_normal(x[qi].shape).astype(np.float32) / np.sqrt(D)
        cases.append((f"{args.db.name} (real)", x, q.astype(np.float32)))
    for n in args.sizes:
        allx = synthetic(n + args.queries * PER_RUN, args.seed)
        # queries: one point of each of the last runs (never in the index)
        q = allx[n::PER_RUN][: args.queries] if n % PER_RUN == 0 else allx[-args.queries:]
        cases.append(("synthetic", allx[:n], np.ascontiguousarray(q)))
    for label, x, q in cases:
        n = len(x)
        t = time.perf_counter()
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        t_flat = time.perf_counter() - t
        _, truth = flat.search(q, args.k)
        q_flat = median_query_ms(flat, q, args.k)
        variants = [("chosen", FLAT_MAX)] + ([("IVF", 0)] if n <= FLAT_MAX else [])
        for name, fmax in variants:
            t = time.perf_counter()
            index, info = make_index(x, args.seed, flat_max=fmax)
            t_build = time.perf_counter() - t
            probes = args.nprobe if info["index_type"] != "IndexFlatIP" else [None]
            for p in probes:
                if p is not None:
                    index.nprobe = min(p, info["nlist"])
                _, found = index.search(q, args.k)
                chosen = " (chosen)" if name == "chosen" else ""
                print(f"| {n:,} | {label} | {info['index_type']}{chosen} "
                      f"| {info.get('nlist', '-')} | {p if p else '-'} | {t_build:.2f} | "
                      f"{t_flat:.2f} | {median_query_ms(index, q, args.k)} | {q_flat} | "
                      f"{recall(found, truth):.3f} |", flush=True)
        del flat
    print("\n## Re-rank: exact Dice of the top k on memory-mapped uint8 shards")
    print("| grid | brain voxels | tumor voxels | k | re-rank ms (wall / CPU) |")
    print("|---|---|---|---|---|")
    for grid, n_brain, tumor in (("3 mm", 64_514, 6_000), ("2 mm", 217_063, 20_000)):
        print(f"| {grid} | {n_brain:,} | {tumor:,} | {args.k} | "
              f"{rerank_ms(n_brain, tumor, args.k)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
