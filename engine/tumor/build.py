"""Build, resume and repair a tumor simulation database (presets: engine/tumor/presets.py).

One run per (lambda, origin) integrates the dimensionless model up to tau_max(lambda) and keeps
snapshots whenever the whole-tumor volume has grown by the preset's factor (presets.py).
Snapshots are stored as uint8 round(255 u) over the brain voxels: re-ranking with exact Dice at
any threshold needs the concentration, and 1 byte per voxel keeps it within 1/510 of it.
Batches are computed in this process, in local worker processes or on a Dask cluster
(engine/tumor/execute.py); only this process writes (db/shards.py: crash safety).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine.jobs import InputError
from engine.tumor.anatomy import load_anatomy
from engine.tumor.catalog import CatalogError, open_store
from engine.tumor.params import THRESHOLDS, quant_threshold
from engine.tumor.presets import (CODE_VERSION, PRESETS, VOL_MAX_BRAIN_FRACTION, VOL_MIN_CM3,
                                  lambda_range, tau_max)

MAX_SEED = 2 ** 32 - 1             # as engine.cli.seed_int
IDENTITY_KEYS = ("preset", "seed", "spacing_mm", "shape", "atlas_hash", "code_version",
                 "thresholds", "preset_params")


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


_PLANS: dict = {}


def plan_cached(preset: str, seed: int) -> dict:
    key = (preset, seed)
    if key not in _PLANS:
        _PLANS[key] = sampling_plan(preset, seed, load_anatomy(PRESETS[preset].spacing_mm))
    return _PLANS[key]


def run_batch(preset: str, seed: int, batch: int, *, device=None, progress=None, cancel=None):
    """Integrate one batch of runs -> (runs rows, snapshot rows, uint8 array (n, n_brain)).
    Deterministic: torch runs on one thread (also in Dask or pool workers)."""
    from engine._torch import torch
    from engine.tumor.solver import integrate

    p = PRESETS[preset]
    anatomy = load_anatomy(p.spacing_mm)
    plan = plan_cached(preset, seed)
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
    torch.set_num_threads(1)       # deterministic and fastest per process; parallel = workers
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


def batch_cost(preset: str, seed: int) -> np.ndarray:
    """Estimated relative cost (solver steps) of each batch, for progress and ETA."""
    from engine.tumor.solver import time_step

    p = PRESETS[preset]
    plan = plan_cached(preset, seed)
    steps = tau_max(plan["lambda_mm"]) / time_step(plan["lambda_mm"], p.spacing_mm)
    n_b = plan["batch"].max() + 1
    return np.array([steps[plan["batch"] == b].max() for b in range(n_b)])


def expected_manifest(preset: str, seed: int, anatomy) -> dict:
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


def read_manifest_or_fail(path: Path) -> dict | None:
    """The manifest dict at ``path`` (None if absent); InputError if unreadable."""
    import json

    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        m = None
    if not isinstance(m, dict):
        raise InputError(f"The manifest {path} is unreadable; "
                         "delete the folder and build again.")
    return m


def validate_request(root: Path, preset: str, seed, workers: int, scheduler) -> None:
    """Refuse bad arguments before anything is created (one sentence each)."""
    if preset not in PRESETS:
        raise InputError(f"Unknown preset '{preset}' (choose one of {', '.join(PRESETS)}).")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"The seed must be an integer from 0 to {MAX_SEED} (got {seed}).")
    if scheduler is None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InputError(f"The number of workers must be at least 1 (got {workers}).")
    if scheduler is not None and not str(scheduler).strip():
        raise InputError("The Dask scheduler address is empty (e.g. tcp://127.0.0.1:8786).")
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file, not a database folder.")
    if root.is_dir() and any(root.iterdir()) and not (root / "manifest.json").is_file():
        raise InputError(f"{root} is not empty and holds no tumor database manifest; "
                         "choose an empty or new folder.")


def open_for_build(root: Path, progress):
    """The store, created if needed; a damaged catalog is replaced and refilled from the
    shards' sidecars (every shard whose sha256 still matches is kept)."""
    from db.shards import remove_catalog

    try:
        store = open_store(root, create=True)
    except CatalogError as err:
        progress.update(0.0, f"{err}: rebuilding it from the shards")
        remove_catalog(root)
        store = open_store(root, create=True)
    store.adopt_orphans()
    return store


def build_database(db_dir, preset: str = "demo", seed: int = 0, workers: int = 1, *,
                   scheduler: str | None = None, device=None, progress, cancel) -> dict:
    """Build (or resume, or repair) the database in ``db_dir``; returns the manifest.
    ``workers``: local worker processes (1: in this process); ``scheduler``: the address of a
    Dask scheduler (tcp://HOST:PORT) whose workers compute the batches instead. The result
    does not depend on either. Progress messages: "12/30 batches, 2 workers, 3 running"."""
    from engine.tumor.index import build_index_files

    root = Path(db_dir)
    validate_request(root, preset, seed, workers, scheduler)
    seed = int(seed)
    anatomy = load_anatomy(PRESETS[preset].spacing_mm)
    expected = expected_manifest(preset, seed, anatomy)
    old = read_manifest_or_fail(root / "manifest.json")
    if old is not None:
        diff = [k for k in IDENTITY_KEYS if old.get(k) != expected[k]]
        if diff:
            raise InputError(
                f"{root / 'manifest.json'} describes a different database ({', '.join(diff)} "
                f"differ: preset {old.get('preset')}, seed {old.get('seed')}); choose "
                "another folder or the same preset and seed.")
    if scheduler is not None:
        from engine.tumor.execute import check_scheduler

        check_scheduler(scheduler)                    # before anything is created
    store = open_for_build(root, progress)
    try:
        manifest = read_manifest_or_fail(store.manifest_path)
        if manifest is None:
            manifest = dict(expected, complete=False)
            store.write_manifest(manifest)
        simulate_missing(store, preset, seed, workers, scheduler, device,
                         progress.sub(0.0, 0.95), cancel)
        cancel.check()
        manifest = build_index_files(store, manifest, anatomy, seed, progress.sub(0.95, 1.0),
                                     cancel)
        progress.done(f"{manifest['n_snapshots']} snapshots from {manifest['n_runs']} runs")
        return manifest
    finally:
        store.close()


def simulate_missing(store, preset: str, seed: int, workers: int, scheduler, device, progress,
                     cancel) -> None:
    """Recompute every batch without an intact shard (sha256 of every byte checked)."""
    from engine.tumor.execute import compute_batches

    for batch, _why in store.check_shards(mode="full"):
        store.drop_batch(batch)                       # damaged: recompute it
    cost = batch_cost(preset, seed)
    done = set(store.shard_rows())
    todo = [b for b in range(len(cost)) if b not in done]
    total = cost.sum()
    state = {"finished": cost[sorted(done)].sum() if done else 0.0, "cluster": ""}
    t0, n0 = time.monotonic(), len(done)

    def message() -> str:
        rate = (len(done) - n0) / max(1e-9, time.monotonic() - t0)
        return (f"{len(done)}/{len(cost)} batches{state['cluster']} "
                f"({rate * PRESETS[preset].batch:.1f} runs/s)")

    progress.update(state["finished"] / total, f"{len(done)}/{len(cost)} batches")

    def on_result(batch: int, result) -> None:
        runs, snaps, array = result
        store.write_batch(batch, array, {"runs": runs, "snapshots": snaps})
        state["finished"] += cost[batch]
        done.add(batch)
        progress.update(state["finished"] / total, message())

    def on_status(n_workers: int, n_running: int) -> None:
        state["cluster"] = f", {n_workers} workers, {n_running} running"
        progress.update(state["finished"] / total, message())

    def sub_progress(batch: int):
        f = state["finished"]
        return progress.sub(f / total, (f + cost[batch]) / total)

    compute_batches(run_batch, [(preset, seed, b) for b in todo], todo, workers=workers,
                    scheduler=scheduler, device=device, on_result=on_result,
                    on_status=on_status, sub_progress=sub_progress, cancel=cancel)
