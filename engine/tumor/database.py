"""Simulation database: build (resumable, parallel) and query (FAISS over an embedding).

One run per (lambda, origin) integrates the dimensionless model up to tau_max(lambda) and keeps
snapshots whenever the whole-tumor volume (u >= 0.2) has grown by the preset's factor, while it
lies between VOL_MIN_CM3 and a third of the brain. Snapshots are stored as uint8 round(255 u)
over the brain voxels: re-ranking with exact Dice at any threshold (the inverse jitters them)
needs the concentration, and 1 byte per voxel keeps it within 1/510 of the float value.
Storage layout and crash safety: db/tumor_store.py.
"""
from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from db.tumor_store import TumorStore, sha256_file
from engine.jobs import InputError
from engine.tumor.anatomy import load_anatomy
from engine.tumor.params import LAMBDA_RANGE_MM, THRESHOLDS, quant_threshold  # noqa: F401

CODE_VERSION = "tumor-db-2"        # bump when the solver, sampling, storage or embedding changes
VOL_MIN_CM3 = 1.0
VOL_MAX_BRAIN_FRACTION = 1.0 / 3.0
EMBED_DIM = 256                    # uncentred PCA components (the index is IndexFlatIP)
EMBED_CELL_MM = 8.0                # embedding pools masks into cells of about this size


@dataclass(frozen=True)
class Preset:
    spacing_mm: float
    n_runs: int
    batch: int            # runs integrated together in one tensor (and written as one shard)
    n_candidates: int     # candidate snapshot taus per run
    growth: float         # keep a snapshot when the whole-tumor volume grew by this factor


PRESETS = {
    "tiny": Preset(spacing_mm=8, n_runs=16, batch=4, n_candidates=48, growth=1.4),
    "demo": Preset(spacing_mm=4, n_runs=240, batch=8, n_candidates=120, growth=1.25),
    "standard": Preset(spacing_mm=3, n_runs=2600, batch=8, n_candidates=160, growth=1.2),
}


def lambda_range(spacing_mm: float) -> tuple[float, float]:
    """The design's lambda range, clamped below at the grid's resolution limit (h / 2)."""
    from engine.tumor.solver import min_lambda_mm

    return max(LAMBDA_RANGE_MM[0], min_lambda_mm(spacing_mm)), LAMBDA_RANGE_MM[1]


def tau_max(lambda_mm) -> np.ndarray:
    """Last candidate tau of a run: time to appear plus time for the front to cross ~12 cm."""
    return 12.0 + 120.0 / (2.0 * np.asarray(lambda_mm, dtype=np.float64))


def sampling_plan(preset: str, seed: int, anatomy) -> dict[str, np.ndarray]:
    """Deterministic runs: scrambled Halton points (log lambda, origin) with origins on tissue
    voxels, sorted by lambda (so a batch integrates similar time steps). Arrays of length n."""
    from scipy.stats import qmc

    p = PRESETS[preset]
    lo, hi = np.log(lambda_range(p.spacing_mm))
    brain = anatomy.brain
    idx = np.argwhere(brain)
    box_lo, box_hi = idx.min(axis=0) - 0.5, idx.max(axis=0) + 0.5
    sampler = qmc.Halton(d=4, scramble=True, seed=seed)
    lam, org = [], []
    while len(lam) < p.n_runs:
        pts = sampler.random(4 * p.n_runs)
        o = box_lo + pts[:, 1:] * (box_hi - box_lo)
        v = np.clip(np.rint(o).astype(int), 0, np.array(brain.shape) - 1)
        ok = brain[v[:, 0], v[:, 1], v[:, 2]]
        lam.extend(np.exp(lo + pts[ok, 0] * (hi - lo)))
        org.extend(o[ok])
    lam = np.asarray(lam[:p.n_runs])
    org = np.asarray(org[:p.n_runs])
    order = np.argsort(lam, kind="stable")
    return {"lambda_mm": lam[order], "origin_vox": org[order],
            "batch": np.arange(p.n_runs) // p.batch}


def run_batch(preset: str, seed: int, batch: int, *, device=None, progress=None, cancel=None):
    """Integrate one batch of runs -> (runs rows, snapshot rows, uint8 array (n, n_brain))."""
    from engine._torch import torch
    from engine.tumor.solver import integrate

    p = PRESETS[preset]
    anatomy = load_anatomy(p.spacing_mm)
    plan = _plan_cached(preset, seed)
    sel = np.flatnonzero(plan["batch"] == batch)
    lam, origin = plan["lambda_mm"][sel], plan["origin_vox"][sel]
    B = len(sel)
    taus = tau_max(lam)[:, None] * (np.arange(1, p.n_candidates + 1) / p.n_candidates)[None, :]
    brain_idx = np.flatnonzero(anatomy.brain.ravel())
    vmax = VOL_MAX_BRAIN_FRACTION * len(brain_idx) * anatomy.voxel_cm3
    q_core, q_whole = quant_threshold(THRESHOLDS["core"]), quant_threshold(THRESHOLDS["whole"])
    kept = [[] for _ in range(B)]   # per member: (tau, q, vol_core, vol_whole)
    last = np.zeros(B)

    def on_snapshot(s, u):           # u: (B, n_brain) over brain_idx
        q = torch.round(u * 255).to(torch.uint8).cpu().numpy()
        v_whole = (q >= q_whole).sum(axis=1) * anatomy.voxel_cm3
        v_core = (q >= q_core).sum(axis=1) * anatomy.voxel_cm3
        stop = v_whole > vmax
        for b in range(B):
            if VOL_MIN_CM3 <= v_whole[b] <= vmax and (last[b] == 0 or
                                                      v_whole[b] >= p.growth * last[b]):
                kept[b].append((taus[b, s], q[b].copy(), v_core[b], v_whole[b]))
                last[b] = v_whole[b]
        return stop

    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # deterministic and fastest per process; parallel = --workers
    try:
        integrate(anatomy, lam, origin, taus, on_snapshot, device=device, progress=progress,
                  cancel=cancel, compact=True)
    finally:
        torch.set_num_threads(threads)
    mm = anatomy.vox_to_mm(origin)
    runs, snaps, arrays = [], [], []
    for b in range(B):
        rid = int(sel[b])
        runs.append({"run_id": rid, "batch": batch, "lambda_mm": float(lam[b]),
                     "i": float(origin[b, 0]), "j": float(origin[b, 1]), "k": float(origin[b, 2]),
                     "x_mm": float(mm[b, 0]), "y_mm": float(mm[b, 1]), "z_mm": float(mm[b, 2]),
                     "seed": seed})
        for tau, q, vc, vw in kept[b]:
            snaps.append({"batch": batch, "local": len(snaps), "run_id": rid, "tau": float(tau),
                          "mu1_cm": float(lam[b] / 10 * np.sqrt(tau)), "mu2": float(np.sqrt(tau)),
                          "vol_core_cm3": float(vc), "vol_whole_cm3": float(vw),
                          "thr_core": THRESHOLDS["core"], "thr_whole": THRESHOLDS["whole"]})
            arrays.append(q)
    array = np.stack(arrays) if arrays else np.zeros((0, len(brain_idx)), np.uint8)
    return runs, snaps, array


_PLANS: dict = {}


def _plan_cached(preset: str, seed: int) -> dict:
    key = (preset, seed)
    if key not in _PLANS:
        _PLANS[key] = sampling_plan(preset, seed, load_anatomy(PRESETS[preset].spacing_mm))
    return _PLANS[key]


def _batch_cost(preset: str, seed: int) -> np.ndarray:
    """Estimated relative cost (solver steps) of each batch, for progress and ETA."""
    from engine.tumor.solver import time_step

    p = PRESETS[preset]
    plan = _plan_cached(preset, seed)
    steps = tau_max(plan["lambda_mm"]) / time_step(plan["lambda_mm"], p.spacing_mm)
    n_b = plan["batch"].max() + 1
    return np.array([steps[plan["batch"] == b].max() for b in range(n_b)])


def _worker_init() -> None:
    """Build worker set-up: ignore Ctrl-C (the parent cancels) and exit when the parent dies
    (kill -9 of the build must not leave orphaned workers behind)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _expected_manifest(preset: str, seed: int, anatomy) -> dict:
    p = PRESETS[preset]
    ident = f"{preset}:{seed}:{anatomy.atlas_hash}:{CODE_VERSION}"
    return {
        "id": hashlib.sha256(ident.encode()).hexdigest()[:16],
        "preset": preset, "seed": int(seed), "spacing_mm": float(anatomy.spacing_mm),
        "shape": list(anatomy.shape), "affine": anatomy.affine.tolist(),
        "atlas_hash": anatomy.atlas_hash, "thresholds": dict(THRESHOLDS),
        "code_version": CODE_VERSION, "preset_params": asdict(p),
        "lambda_range_mm": list(lambda_range(p.spacing_mm)),
        "n_brain_voxels": int(anatomy.brain.sum()), "storage": "uint8 round(255 u), brain voxels",
    }


IDENTITY_KEYS = ("preset", "seed", "spacing_mm", "shape", "atlas_hash", "code_version",
                 "thresholds", "preset_params")


def build_database(db_dir, preset: str = "demo", seed: int = 0, workers: int = 1, *,
                   progress, cancel) -> dict:
    """Build (or resume, or repair) the database in ``db_dir``; returns the manifest."""
    if preset not in PRESETS:
        raise InputError(f"Unknown preset '{preset}' (choose one of {', '.join(PRESETS)}).")
    root = Path(db_dir)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file, not a database folder.")
    if root.is_dir() and any(root.iterdir()) and not (root / "manifest.json").is_file():
        raise InputError(f"{root} is not empty and holds no tumor database manifest; "
                         "choose an empty or new folder.")
    anatomy = load_anatomy(PRESETS[preset].spacing_mm)
    expected = _expected_manifest(preset, seed, anatomy)
    store = TumorStore(root, create=True)
    try:
        old = _read_manifest_or_fail(store)
        if old is not None:
            diff = [k for k in IDENTITY_KEYS if old.get(k) != expected[k]]
            if diff:
                raise InputError(
                    f"{store.manifest_path} describes a different database ({', '.join(diff)} "
                    f"differ: preset {old.get('preset')}, seed {old.get('seed')}); choose "
                    "another folder or the same preset and seed.")
            manifest = old
        else:
            manifest = dict(expected, complete=False)
            store.write_manifest(manifest)
        _simulate_missing(store, preset, seed, workers, progress.sub(0.0, 0.95), cancel)
        cancel.check()
        manifest = _finish_index(store, manifest, anatomy, progress.sub(0.95, 1.0), cancel)
        progress.done(f"{manifest['n_snapshots']} snapshots from {manifest['n_runs']} runs")
        return manifest
    finally:
        store.close()


def _read_manifest_or_fail(store: TumorStore) -> dict | None:
    try:
        return store.read_manifest()
    except (ValueError, OSError):
        raise InputError(f"The manifest {store.manifest_path} is unreadable; "
                         "delete the folder and build again.") from None


def _simulate_missing(store: TumorStore, preset: str, seed: int, workers: int, progress,
                      cancel) -> None:
    for batch, _why in store.check_shards(full_hash=True):
        store.drop_batch(batch)                       # damaged: recompute it
    cost = _batch_cost(preset, seed)
    done = set(store.shard_rows())
    todo = [b for b in range(len(cost)) if b not in done]
    total = cost.sum()
    finished = cost[sorted(done)].sum() if done else 0.0
    t0, n0 = time.monotonic(), len(done)
    progress.update(finished / total, f"{len(done)}/{len(cost)} batches")

    def record(batch, result):
        nonlocal finished
        store.write_batch(batch, result[2], result[0], result[1])
        finished += cost[batch]
        done.add(batch)
        rate = (len(done) - n0) / max(1e-9, time.monotonic() - t0)
        progress.update(finished / total, f"{len(done)}/{len(cost)} batches "
                                          f"({rate * PRESETS[preset].batch:.1f} runs/s)")

    if workers <= 1 or len(todo) <= 1:
        for batch in todo:
            cancel.check()
            sub = progress.sub(finished / total, (finished + cost[batch]) / total)
            record(batch, run_batch(preset, seed, batch, progress=sub, cancel=cancel))
        return
    import multiprocessing

    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(run_batch, preset, seed, b, device="cpu"): b for b in todo}
        while pending:
            ready, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            cancel.check()
            for fut in ready:
                record(pending.pop(fut), fut.result())
    except BaseException:
        for proc in list((pool._processes or {}).values()):   # our own workers only
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _finish_index(store: TumorStore, manifest: dict, anatomy, progress, cancel) -> dict:
    """(Re)build the embedding and FAISS index unless the saved ones match the catalog."""
    n_runs, n_snap = store.counts()
    ok = (manifest.get("complete") and manifest.get("n_snapshots") == n_snap
          and store.index_path.is_file() and store.embedding_path.is_file()
          and sha256_file(store.index_path) == manifest.get("index_sha256")
          and sha256_file(store.embedding_path) == manifest.get("embedding_sha256"))
    if ok:
        progress.done("index up to date")
        return manifest
    if n_snap == 0:
        raise InputError(f"The database in {store.root} has no snapshots to index.")
    from engine._faiss import faiss

    progress.update(0.0, "embedding snapshots")
    emb = Embedder(anatomy)
    table = store.snapshot_table()
    batches = np.unique(table["batch"])
    # PCA on an evenly spaced subsample of at most ~2000 snapshots
    stride = max(1, n_snap // 2000)
    feats = []
    for b in batches:
        rows = np.flatnonzero(table["batch"] == b)
        q = store.load_shard(int(b))
        pick = rows[rows % stride == 0] - rows[0]
        feats.append(emb.features_from_q(np.asarray(q[pick])))
    cancel.check()
    emb.fit(np.concatenate(feats))
    index = faiss.IndexFlatIP(emb.dim)
    for i, b in enumerate(batches):
        index.add(emb.project(emb.features_from_q(np.asarray(store.load_shard(int(b))))))
        if i % 16 == 0:
            cancel.check()
            progress.update(0.2 + 0.8 * i / len(batches), "indexing")
    emb_sha = store.save_embedding(**emb.state())
    idx_sha = store.save_index(faiss.serialize_index(index).tobytes())
    manifest = dict(manifest, complete=True, n_runs=int(n_runs), n_snapshots=int(n_snap),
                    n_batches=int(len(batches)), embedding_dim=int(emb.dim),
                    index_sha256=idx_sha, embedding_sha256=emb_sha, index_type="IndexFlatIP")
    store.write_manifest(manifest)
    return manifest


class Embedder:
    """Core and whole-tumor masks pooled into ~8 mm cells (voxel counts per cell), each of the
    two blocks scaled to unit L2 norm times sqrt(1/2), then projected on uncentred PCA axes.

    The inner product of two such feature vectors is the mean of the cosine similarities of
    the pooled core and whole-tumor masks (an empty block counts 0), a close stand-in for the
    mean of the two Dice (for binary masks cosine = |A & B| / sqrt(|A| |B|) >= Dice); the
    index ranks by that inner product in the PCA subspace (IndexFlatIP), and the search
    returns distance = 1 - inner product.

    features: (n, 2 D) float32, D = pooled cells touching the brain; embedding: (n, d)."""

    def __init__(self, anatomy, state: dict | None = None):
        from scipy import sparse

        f = max(1, int(round(EMBED_CELL_MM / anatomy.spacing_mm)))
        shape = np.array(anatomy.shape)
        cell = np.stack(np.meshgrid(*[np.arange(n) // f for n in shape], indexing="ij"), -1)
        cshape = (shape + f - 1) // f
        cid = np.ravel_multi_index(cell.reshape(-1, 3).T, cshape)
        brain = anatomy.brain.ravel()
        used = np.unique(cid[brain])
        col = np.full(int(np.prod(cshape)), -1)
        col[used] = np.arange(len(used))
        self.cell_of = col[cid]              # (X*Y*Z,) pooled cell of each voxel, -1: none
        self.n_cells = len(used)
        keep = self.cell_of >= 0
        rows = np.flatnonzero(keep)
        pool = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, self.cell_of[keep])),
                                 shape=(brain.size, len(used)))
        self.pool_brain_T = pool[np.flatnonzero(brain)].T.tocsr()    # (D, n_brain)
        self.q_core = quant_threshold(THRESHOLDS["core"])
        self.q_whole = quant_threshold(THRESHOLDS["whole"])
        self.components = self._components_T = None
        if state is not None:
            self._set(state["components"])

    def _set(self, components: np.ndarray) -> None:
        self.components = np.ascontiguousarray(components, dtype=np.float32)     # (d, 2 D)
        self._components_T = np.ascontiguousarray(self.components.T)             # (2 D, d)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @staticmethod
    def _normalize(c: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Cell counts (n, D) x2 -> (n, 2 D) float32, each block of norm sqrt(1/2) (or 0)."""
        out = []
        for x in (c, w):
            x = np.asarray(x, dtype=np.float32)
            nrm = np.linalg.norm(x, axis=1, keepdims=True)
            out.append(x * (np.float32(np.sqrt(0.5)) / np.maximum(nrm, np.float32(1e-12))))
        return np.hstack(out).astype(np.float32)

    def features(self, core: np.ndarray, whole: np.ndarray) -> np.ndarray:
        """core, whole (n, X, Y, Z) bool -> (n, 2 D) float32 (counts by bincount over the
        tumor voxels only: cheap for one observed tumor)."""
        n = len(core)
        counts = []
        for m in (core, whole):
            m = np.asarray(m, dtype=bool).reshape(n, -1)
            row, vox = np.nonzero(m)
            cells = self.cell_of[vox]
            ok = cells >= 0
            flat = np.bincount(row[ok] * self.n_cells + cells[ok],
                               minlength=n * self.n_cells)
            counts.append(flat.reshape(n, self.n_cells))
        return self._normalize(*counts)

    def features_from_q(self, q: np.ndarray) -> np.ndarray:
        """q (n, n_brain) uint8 stored snapshots -> (n, 2 D) float32."""
        c = (q >= self.q_core).astype(np.float32)
        w = (q >= self.q_whole).astype(np.float32)
        return self._normalize(self.pool_brain_T.dot(c.T).T, self.pool_brain_T.dot(w.T).T)

    def fit(self, feats: np.ndarray) -> None:
        """Uncentred PCA (the top right singular vectors of the (n, 2 D) features, so inner
        products are preserved) by a randomized range finder (fixed seed, 4 power
        iterations) in O(n D d) instead of an O(n^3) eigensolver. Done in torch on one thread
        (BLAS thread pools thrash on a busy machine)."""
        from engine._torch import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float64))
            d = max(1, min(EMBED_DIM, x.shape[0], x.shape[1]))
            k = min(d + 16, min(x.shape))
            gen = torch.Generator().manual_seed(0)
            q = torch.linalg.qr(x @ torch.randn(x.shape[1], k, generator=gen,
                                                dtype=torch.float64))[0]
            for _ in range(4):
                q = torch.linalg.qr(x.T @ q)[0]
                q = torch.linalg.qr(x @ q)[0]
            comp = torch.linalg.svd(q.T @ x, full_matrices=False)[2][:d].numpy()
        finally:
            torch.set_num_threads(threads)
        comp = comp * np.where(comp[np.arange(d), np.abs(comp).argmax(axis=1)] < 0,
                               -1, 1)[:, None]
        self._set(comp)

    def project(self, feats: np.ndarray) -> np.ndarray:
        """(n, 2 D) -> (n, d) float32. A few rows (a query) are projected through their nonzero
        columns only with einsum: no multi-threaded BLAS call, which waited ~15 ms for a free
        core on a busy machine; many rows (building the index) with one float32 matmul."""
        feats = np.asarray(feats, dtype=np.float32)
        if len(feats) <= 8:
            out = np.empty((len(feats), self.dim), dtype=np.float32)
            for n, row in enumerate(feats):
                nz = np.flatnonzero(row)
                out[n] = np.einsum("j,jk->k", row[nz], self._components_T[nz])
            return out
        return np.ascontiguousarray(feats @ self._components_T, dtype=np.float32)

    def state(self) -> dict:
        return {"components": self.components}


class TumorDatabase:
    """A built database, opened read-only. Snapshot id = row of ``snapshots`` (see api doc)."""

    def __init__(self, root: Path, manifest: dict, anatomy, store: TumorStore, index, emb):
        self.root = root
        self.manifest = manifest
        self.anatomy = anatomy
        self._store = store
        self._index = index
        self._emb = emb
        table = store.snapshot_table()
        runs = store.runs_table()
        pos = np.searchsorted(runs["run_id"], table["run_id"])
        ov = np.stack([runs["i"], runs["j"], runs["k"]], 1)[pos]
        om = np.stack([runs["x_mm"], runs["y_mm"], runs["z_mm"]], 1)[pos]
        self.snapshots = {
            "run_id": table["run_id"].astype(np.int64),
            "lambda_mm": runs["lambda_mm"][pos].astype(np.float64),
            "tau": table["tau"].astype(np.float64),
            "origin_vox": ov.astype(np.float64), "origin_mm": om.astype(np.float64),
            "mu1_cm": table["mu1_cm"].astype(np.float64), "mu2": table["mu2"].astype(np.float64),
            "vol_core_cm3": table["vol_core_cm3"].astype(np.float64),
            "vol_whole_cm3": table["vol_whole_cm3"].astype(np.float64),
        }
        self._batch = table["batch"].astype(np.int64)
        self._local = table["local"].astype(np.int64)
        self._shards: dict[int, np.ndarray] = {}
        self._brain_idx = np.flatnonzero(anatomy.brain.ravel())

    @classmethod
    def open(cls, db_dir) -> "TumorDatabase":
        from engine._faiss import faiss

        root = Path(db_dir)
        hint = f"rerun `main.py tumor build-db --db {root}` to repair it"
        if not (root / "manifest.json").is_file() or not (root / "catalog.sqlite").is_file():
            raise InputError(f"No tumor database in {root} (build one with "
                             f"`main.py tumor build-db --db {root} --preset demo`).")
        store = TumorStore(root)
        try:
            m = _read_manifest_or_fail(store)
            if m.get("code_version") != CODE_VERSION:
                raise InputError(f"The database {root} was built by code version "
                                 f"{m.get('code_version')}, this program reads {CODE_VERSION}; "
                                 "build it again in a new folder.")
            if not m.get("complete"):
                raise InputError(f"The database {root} is incomplete; {hint}.")
            anatomy = load_anatomy(m["spacing_mm"])
            if (m.get("atlas_hash") != anatomy.atlas_hash
                    or list(m.get("shape", [])) != list(anatomy.shape)):
                raise InputError(f"The database {root} was built on a different atlas grid "
                                 "than the bundled one; build it again in a new folder.")
            n_runs, n_snap = store.counts()
            if (n_runs, n_snap) != (m.get("n_runs"), m.get("n_snapshots")):
                raise InputError(f"The catalog of {root} holds {n_snap} snapshots but its "
                                 f"manifest says {m.get('n_snapshots')}; {hint}.")
            bad = store.check_shards(full_hash=False)
            if bad:
                raise InputError(f"In the database {root}, {bad[0][1]}; {hint}.")
            for path, key in ((store.index_path, "index_sha256"),
                              (store.embedding_path, "embedding_sha256")):
                if not path.is_file() or sha256_file(path) != m.get(key):
                    raise InputError(f"The file {path} is missing or corrupted; {hint}.")
            index = faiss.deserialize_index(np.frombuffer(store.load_index_bytes(), np.uint8))
            if index.ntotal != n_snap:
                raise InputError(f"The index {store.index_path} holds {index.ntotal} entries "
                                 f"for {n_snap} snapshots; {hint}.")
            emb = Embedder(anatomy, store.load_embedding())
        except BaseException:
            store.close()
            raise
        return cls(root, m, anatomy, store, index, emb)

    def close(self) -> None:
        self._store.close()

    def __len__(self) -> int:
        return len(self._batch)

    @property
    def brain_index(self) -> np.ndarray:
        """(n_brain,) int64: flat indices (C order) into the (X, Y, Z) grid of the stored
        values' columns (the voxels of anatomy.brain)."""
        return self._brain_idx

    def quantized(self, ids, columns=None) -> np.ndarray:
        """Stored values (n, n_brain) uint8 of snapshot ids: u = q / 255 over ``brain_index``
        (a threshold t becomes q >= quant_threshold(t)). ``columns``: optional (m,) positions
        into ``brain_index`` -> (n, m), read without copying whole rows. Gathered per shard."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        cols = None if columns is None else np.asarray(columns, dtype=np.int64)
        width = len(self._brain_idx) if cols is None else len(cols)
        out = np.empty((len(ids), width), dtype=np.uint8)
        batch = self._batch[ids]
        for b in np.unique(batch):
            b = int(b)
            if b not in self._shards:
                self._shards[b] = self._store.load_shard(b)
            sel = np.flatnonzero(batch == b)
            rows = self._local[ids[sel]]
            out[sel] = (self._shards[b][rows] if cols is None
                        else self._shards[b][rows[:, None], cols[None, :]])
        return out

    def concentration(self, ids) -> np.ndarray:
        """(n, X, Y, Z) float32 in [0, 1] (quantized to 1/255)."""
        q = self.quantized(ids)
        out = np.zeros((len(q), int(np.prod(self.anatomy.shape))), dtype=np.float32)
        out[:, self._brain_idx] = q.astype(np.float32) / np.float32(255)
        return out.reshape((len(q),) + tuple(self.anatomy.shape))

    def masks(self, ids, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
        """Core and whole-tumor masks (n, X, Y, Z) bool at ``thresholds``: a dict with keys
        core / whole, or a (core, whole) pair (default THRESHOLDS)."""
        if thresholds is not None and not isinstance(thresholds, dict):
            thresholds = {"core": float(thresholds[0]), "whole": float(thresholds[1])}
        t = dict(THRESHOLDS, **(thresholds or {}))
        u = self.concentration(ids)
        return u >= np.float32(t["core"]), u >= np.float32(t["whole"])

    def embed(self, core, whole) -> np.ndarray:
        """core, whole (n, X, Y, Z) bool -> (n, d) float32 embedding."""
        core = np.asarray(core, dtype=bool)
        whole = np.asarray(whole, dtype=bool)
        if core.ndim == 3:
            core, whole = core[None], whole[None]
        return self._emb.project(self._emb.features(core, whole))

    def search(self, embedding, k: int, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Exact nearest snapshots by inner product of the embeddings, among all snapshots or
        only the snapshot ``ids`` (a FAISS IDSelectorBitmap, ~2x faster than IDSelectorBatch).
        embedding (n, d) or (d,) -> distances = 1 - inner product (ascending), ids; both
        (n, k') with k' = min(k, snapshots searched); ids -1 (distance inf) pad short rows."""
        from engine._faiss import faiss

        x = np.ascontiguousarray(np.atleast_2d(embedding), dtype=np.float32)
        if ids is None:
            sim, found = self._index.search(x, int(min(k, len(self))))
        else:
            member = np.zeros(len(self), dtype=bool)
            member[np.asarray(ids, dtype=np.int64)] = True
            n_ids = int(member.sum())
            if n_ids == 0 or k < 1:
                return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
            bits = np.packbits(member, bitorder="little")      # kept alive during the search
            sel = faiss.IDSelectorBitmap(len(self), faiss.swig_ptr(bits))
            sim, found = self._index.search(x, int(min(k, n_ids)),
                                            params=faiss.SearchParameters(sel=sel))
        dist = np.where(found >= 0, 1.0 - sim, np.inf).astype(np.float32)
        return dist, found

    def stored_embeddings(self) -> np.ndarray:
        """(n_snapshots, d) float32: the vectors in the index (for brute-force comparisons)."""
        return self._index.reconstruct_n(0, self._index.ntotal)


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


def default_db_dir(preset: str = "demo") -> Path:
    """Where the program keeps its own databases: $TUMOR_DB, else <user data dir>/tumor_db/PRESET."""
    from db.store import data_dir

    return Path(os.environ["TUMOR_DB"]) if os.environ.get("TUMOR_DB") else data_dir() / "tumor_db" / preset
