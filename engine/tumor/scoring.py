"""Scoring an observation against stored snapshots: the one Dice, the combined score, the exact
re-rank kernels (full / sparse), the brute-force baseline, the metadata pre-filter and the
FAISS query. Masks (X, Y, Z) bool on the database grid.
"""
from __future__ import annotations

import numpy as np

from engine.tumor.params import THRESHOLDS, quant_threshold


def dice_from_counts(inter, n_a, n_b) -> np.ndarray:
    """Dice from counts: 2 |A & B| / (|A| + |B|), 1 where both are empty (arrays broadcast)."""
    inter = np.asarray(inter, dtype=np.float64)
    tot = np.asarray(n_a, dtype=np.float64) + np.asarray(n_b, dtype=np.float64)
    return np.where(tot > 0, 2.0 * inter / np.maximum(tot, 1), 1.0)


def dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice of masks a (n, V) against b (V,) or (n, V) -> (n,); 1 where both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    return dice_from_counts((a & b).sum(axis=-1), a.sum(axis=-1), b.sum(axis=-1))


CORE_SHARE_FULL = 0.2    # an observed core of at least this share of the whole tumor counts fully


def score(dice_core, dice_whole, obs_core_frac: float, model_core_frac=None):
    """Combined fit quality in [0, 1] = w Dice core + (1/2 - w) core-share agreement
    + 1/2 Dice whole, with w = 1/2 min(1, obs_core_frac / CORE_SHARE_FULL) and core-share
    agreement = 1 - |model_core_frac - obs_core_frac| (core_frac: the fraction of a whole tumor
    that is core; model_core_frac (n,) or None). So a core of >= 20 % of the whole tumor gives
    the plain mean of the two Dice; a tiny or absent core (few voxels, or none: Dice core is
    then 0 or 1 on almost nothing) weighs little, and the model's core share must match it
    instead (a model showing a core where none is seen loses score). Without model_core_frac
    the core-share term is left out and the weights renormalized."""
    dc, dw = np.asarray(dice_core, dtype=float), np.asarray(dice_whole, dtype=float)
    w = 0.5 * min(1.0, float(obs_core_frac) / CORE_SHARE_FULL)
    if model_core_frac is None:
        return (w * dc + 0.5 * dw) / (w + 0.5)
    agree = 1.0 - np.abs(np.asarray(model_core_frac, dtype=float) - float(obs_core_frac))
    return w * dc + (0.5 - w) * agree + 0.5 * dw


def core_fraction(n_core, n_whole) -> np.ndarray:
    """Fraction of the whole tumor that is core (0 for an empty tumor)."""
    return np.asarray(n_core, dtype=float) / np.maximum(np.asarray(n_whole, dtype=float), 1e-12)


def stored_core_fraction(db, ids) -> np.ndarray:
    """core_fraction of stored snapshots ``ids`` from their stored volumes (n,)."""
    sn = db.snapshots
    return core_fraction(sn["vol_core_cm3"][ids], sn["vol_whole_cm3"][ids])


def stored_brain_values(db, ids) -> tuple[np.ndarray, float]:
    """Stored snapshots ``ids`` over the brain voxels: (values (n, n_brain), scale) with
    u = values / scale: the database's uint8 storage (``TumorDatabase.quantized``), or the
    float concentration() of a database object without it."""
    if hasattr(db, "quantized"):
        return db.quantized(ids), 255.0
    return db.concentration(ids)[:, db.anatomy.brain], 1.0


def _thresholds_in(scale: float, thresholds: dict) -> tuple:
    """Thresholds in the units of stored_brain_values: for uint8 the smallest q with
    q / 255 >= t (float32), so masks equal ``db.masks``."""
    if scale == 1.0:
        return np.float32(thresholds["core"]), np.float32(thresholds["whole"])
    return quant_threshold(thresholds["core"]), quant_threshold(thresholds["whole"])


def score_snapshots(db, ids, core, whole, kernel: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """Exact Dice (core, whole) of stored snapshots ``ids`` (n,) against the observed masks.

    kernel "full": threshold every brain voxel of each snapshot. "sparse": read only the
    observed tumor's voxels (the intersections) and take the snapshots' mask sizes from their
    stored volumes (counted at the database's thresholds when it was built) - the same Dice,
    O(n x observed voxels) instead of O(n x brain voxels); needs ``db.quantized``."""
    if kernel == "full" or not hasattr(db, "quantized"):
        brain = db.anatomy.brain
        c_obs, w_obs = core[brain], whole[brain]
        v, scale = stored_brain_values(db, ids)                  # (n, n_brain)
        tc, tw = _thresholds_in(scale, db.manifest.get("thresholds", THRESHOLDS))
        return dice(v >= tc, c_obs), dice(v >= tw, w_obs)
    ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
    tc, tw = _thresholds_in(255.0, db.manifest.get("thresholds", THRESHOLDS))
    flat = np.flatnonzero((core | whole).ravel() & db.anatomy.brain.ravel())
    pos = np.searchsorted(db.brain_index, flat)                     # observed, on brain
    in_core, in_whole = core.ravel()[flat], whole.ravel()[flat]
    v = db.quantized(ids, columns=pos)                               # (n, observed voxels)
    vox = db.anatomy.voxel_cm3
    n_c = np.rint(db.snapshots["vol_core_cm3"][ids] / vox)
    n_w = np.rint(db.snapshots["vol_whole_cm3"][ids] / vox)
    i_c = (v[:, in_core] >= tc).sum(axis=1)
    i_w = (v[:, in_whole] >= tw).sum(axis=1)
    return (dice_from_counts(i_c, n_c, int(in_core.sum())),
            dice_from_counts(i_w, n_w, int(in_whole.sum())))


def brute_force(db, core, whole, *, chunk: int = 256, kernel: str = "full", progress=None,
                cancel=None) -> dict:
    """For-loop baseline: exact Dice against EVERY snapshot, in chunks of ``chunk``
    (``kernel``: see :func:`score_snapshots`).
    Returns {"ids": best-first (n,), "score", "dice_core", "dice_whole"} (n,) arrays."""
    n = len(db)
    dc = np.empty(n)
    dw = np.empty(n)
    step = chunk if kernel == "full" else max(chunk, 4096)   # sparse rows are short
    for lo in range(0, n, step):
        if cancel is not None:
            cancel.check()
        ids = np.arange(lo, min(n, lo + step))
        dc[ids], dw[ids] = score_snapshots(db, ids, core, whole, kernel)
        if progress is not None:
            progress.update(min(n, lo + step) / n, "scoring every snapshot")
    s = score(dc, dw, core_fraction(core.sum(), whole.sum()),
              stored_core_fraction(db, np.arange(n)))
    order = np.argsort(-s, kind="stable")
    return {"ids": order, "score": s[order], "dice_core": dc[order], "dice_whole": dw[order]}


def overlap_candidates(db, whole) -> np.ndarray:
    """Snapshot ids that can overlap the observed whole tumor, from the stored metadata only:
    origin within 2 r_snap + r_obs + 2 h of the observed centroid (r_snap: radius of the sphere
    with the snapshot's whole-tumor volume; r_obs: farthest observed voxel from the centroid)
    and whole-tumor volume within a factor 10 of the observed one (beyond it Dice < 0.19).
    (n,) int64, sorted."""
    a = db.anatomy
    sn = db.snapshots
    idx = np.argwhere(whole)
    c = idx.mean(axis=0)
    r_obs = float(np.sqrt(((idx - c) ** 2).sum(axis=1).max())) * a.spacing_mm
    v_obs = len(idx) * a.voxel_cm3
    r_snap = np.cbrt(3.0 * sn["vol_whole_cm3"] * 1000.0 / (4.0 * np.pi))
    dist = np.linalg.norm(sn["origin_mm"] - a.vox_to_mm(c), axis=1)
    ratio = sn["vol_whole_cm3"] / v_obs
    ok = (dist <= 2.0 * r_snap + r_obs + 2.0 * a.spacing_mm) & (ratio <= 10) & (ratio >= 0.1)
    return np.flatnonzero(ok).astype(np.int64)


def embed(db, core, whole) -> np.ndarray:
    """(X, Y, Z) masks -> (1, d) float32 embedding (``db.embed``)."""
    return db.embed(core[None], whole[None])


def search(db, embedding, k: int, allowed: np.ndarray | None = None):
    """FAISS k nearest snapshots of one embedding (1, d) among ``allowed`` ids (all if None;
    an EMPTY ``allowed`` is the caller's business: :func:`engine.tumor.inverse.fit` reports it
    and searches everything) -> distances (k',), ids (k'), nearest first."""
    dist, ids = db.search(embedding, k, ids=allowed if allowed is not None and len(allowed)
                          else None)
    keep = ids[0] >= 0
    return dist[0][keep], ids[0][keep]
