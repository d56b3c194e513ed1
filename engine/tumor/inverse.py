"""Tumor inverse: find lambda, tau (hence Dw, rho for a stated T) and the origin whose simulated
tumor best reproduces an observed segmentation.

Stages (timed separately, see ``Estimate.timings_s``):

1. load    read the label map (or core + whole masks), validate it, and resample the core and
           whole-tumor masks onto the database grid through the two affines (partial-volume
           fraction >= 1/2 when the input is finer than the database, nearest voxel otherwise).
2. query   embed the two masks with the database's embedding, FAISS top-k among the
           snapshots whose stored origin and volume allow any overlap (metadata pre-filter).
3. rerank  exact Dice of core and whole tumor against the k stored snapshots (sparse kernel:
           only the observed voxels are read, snapshot mask sizes come from stored volumes);
           score = (Dice core + Dice whole) / 2 (whole only when the observation has no core).
4. refine  a small pattern search over (lambda, origin) around the best candidates, tau free:
           each generation is ONE batched solver call (members = perturbed candidates), every
           member scored at a dense grid of taus around its candidate's tau on a crop of the
           grid around the tumor; the winner is re-simulated on the full grid and kept only if
           it beats the best stored snapshot.

``brute_force`` is the for-loop baseline: exact Dice against every snapshot of the database.
Shapes: masks (X, Y, Z) bool on the database grid; ``u`` (X, Y, Z) float32 in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress
from engine.tumor.params import THRESHOLDS, dimensional, quant_threshold

VERSION = "tumor-inverse-1"
MIN_GRID_COVERAGE = 0.5     # the input grid must cover at least half of the MNI brain box
MIN_IN_BRAIN = 0.5          # at least half of the tumor must lie on brain tissue
PLAUSIBLE_DELTA = 0.05      # candidates within this score of the best are "plausible"


# ---------------------------------------------------------------------------------------------
# observation
@dataclass
class Observation:
    """An observed tumor. ``core``/``whole``: (X, Y, Z) bool on the INPUT grid (RAS+), with
    ``affine`` (4, 4); ``file_shape``/``file_affine``: the input file's own grid (outputs go
    there); ``paths``: the files read; ``voxel_cm3``: volume of one input voxel."""

    core: np.ndarray
    whole: np.ndarray
    affine: np.ndarray
    file_shape: tuple
    file_affine: np.ndarray
    paths: list
    labels: np.ndarray | None = None     # (X, Y, Z) int16 BraTS labels (RAS+) when given

    @property
    def name(self) -> str:
        """The input file(s), as given (for messages)."""
        return ", ".join(str(p) for p in self.paths)

    @property
    def voxel_cm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def _load_mask(path, what: str, progress, cancel):
    from engine.imaging import load_volume

    vol = load_volume(path, "scan", progress=progress, cancel=cancel)
    values = np.unique(vol.data)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(f"{v:g}" for v in values[~np.isin(values, (0, 1))][:5])
        raise InputError(f"'{path}' is not a binary {what} mask: it holds values {shown} "
                         "besides 0 and 1.")
    return vol


def observation_from_volume(vol) -> Observation:
    """An Observation from a loaded BraTS label Volume (engine.imaging.load_volume(.., "labels"))."""
    from engine.imaging.labels import core_mask, whole_mask

    path = vol.path if vol.path is not None else Path("(in memory)")
    obs = Observation(core_mask(vol.data), whole_mask(vol.data), vol.affine, vol.file_shape,
                      vol.file_affine, [path], labels=vol.data)
    if not obs.whole.any():
        raise InputError(f"'{path}' contains no tumor: none of its voxels has a tumor label "
                         "(1 necrosis, 2 edema, 3 or 4 enhancing).")
    return obs


def load_observation(seg=None, core=None, whole=None, *, progress=None,
                     cancel=None) -> Observation:
    """Read a BraTS label map ``seg`` or a pair of binary masks ``core``/``whole`` (paths)."""
    from engine.imaging import load_volume, resample

    progress = progress or Progress()
    if seg is not None:
        return observation_from_volume(load_volume(seg, "labels", progress=progress,
                                                   cancel=cancel))
    if core is None or whole is None:
        raise InputError("Give either a label map (--seg) or both a core and a whole-tumor "
                         "mask (--core and --whole).")
    c = _load_mask(core, "tumor-core", progress.sub(0, 0.5), cancel)
    w = _load_mask(whole, "whole-tumor", progress.sub(0.5, 1), cancel)
    if not w.data.any():
        raise InputError(f"'{whole}' contains no tumor: the whole-tumor mask is empty.")
    if c.shape == w.shape and np.allclose(c.affine, w.affine, atol=1e-4):
        c_on_w = c.data > 0
    else:
        c_on_w = resample(c.data.astype(np.uint8), c.affine, w.shape, w.affine, order=0) > 0
    return Observation(c_on_w, (w.data > 0) | c_on_w, w.affine, w.file_shape, w.file_affine,
                       [Path(core), Path(whole)])


def _box_mm(shape, affine, pad: float = 0.5):
    s = np.asarray(shape, dtype=float)
    corners = np.array([[x, y, z] for x in (-pad, s[0] - 1 + pad) for y in (-pad, s[1] - 1 + pad)
                        for z in (-pad, s[2] - 1 + pad)])
    mm = corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    return mm.min(axis=0), mm.max(axis=0)


def to_database_grid(obs: Observation, anatomy) -> tuple[np.ndarray, np.ndarray, dict]:
    """Resample the observation onto the database grid and validate it there.

    Returns core, whole (X, Y, Z) bool on the anatomy's grid (inside the brain) and facts
    (volumes in cm3, fraction in brain, grid coverage). Raises InputError for a segmentation
    in the wrong space, a tumor outside the brain mask or one too small for the grid."""
    from engine.imaging import resample

    name = obs.name
    # 1. wrong space: the input grid must cover most of the MNI brain's bounding box
    bidx = np.argwhere(anatomy.brain)
    b_lo, b_hi = _box_mm(bidx.max(0) - bidx.min(0) + 1, anatomy.affine @ _shift(bidx.min(0)))
    g_lo, g_hi = _box_mm(obs.file_shape, obs.file_affine)
    inter = np.clip(np.minimum(b_hi, g_hi) - np.maximum(b_lo, g_lo), 0, None).prod()
    coverage = float(inter / np.prod(b_hi - b_lo))
    if coverage < MIN_GRID_COVERAGE:
        raise InputError(
            f"'{name}' does not look like it is in MNI152 space: its grid "
            f"({_fmt_box(g_lo, g_hi)} mm) covers only {100 * coverage:.0f} % of the MNI brain "
            f"({_fmt_box(b_lo, b_hi)} mm); register it to MNI152 first.")
    # 2. tumor voxels -> database voxels
    tum = np.argwhere(obs.whole)
    mm = tum @ obs.affine[:3, :3].T + obs.affine[:3, 3]
    dv = np.rint(anatomy.mm_to_vox(mm)).astype(np.int64)
    shape = np.array(anatomy.shape)
    inside = np.all((dv >= 0) & (dv < shape), axis=1)
    on_brain = np.zeros(len(dv), dtype=bool)
    on_brain[inside] = anatomy.brain[tuple(dv[inside].T)]
    frac_brain = float(on_brain.mean())
    if frac_brain < MIN_IN_BRAIN:
        raise InputError(
            f"The tumor in '{name}' lies outside the brain mask: only {100 * frac_brain:.0f} % "
            "of its voxels fall on MNI brain tissue (is it registered to MNI152?).")
    ratio = obs.voxel_cm3 / anatomy.voxel_cm3        # input voxels per database voxel (inverse)
    if ratio <= 0.5:                                  # finer input: partial-volume fractions
        flat_shape = tuple(int(s) for s in shape)

        def frac(mask):
            v = np.rint(anatomy.mm_to_vox(np.argwhere(mask) @ obs.affine[:3, :3].T
                                          + obs.affine[:3, 3])).astype(np.int64)
            ok = np.all((v >= 0) & (v < shape), axis=1)
            flat = np.ravel_multi_index(tuple(v[ok].T), flat_shape)
            n = np.bincount(flat, minlength=int(np.prod(flat_shape))) * ratio
            return n.reshape(flat_shape) >= 0.5

        core, whole = frac(obs.core), frac(obs.whole)
    else:                                             # coarser input: nearest input voxel
        def near(mask):
            return resample(mask.astype(np.uint8), obs.affine, anatomy.shape, anatomy.affine,
                            order=0) > 0

        core, whole = near(obs.core), near(obs.whole)
    whole = (whole | core) & anatomy.brain
    core = core & anatomy.brain
    if not whole.any():
        raise InputError(
            f"The tumor in '{name}' ({obs.whole.sum() * obs.voxel_cm3:.2f} cm^3) is too small "
            f"to show on the database's {anatomy.spacing_mm:g} mm grid.")
    facts = {"vol_core_cm3": float(obs.core.sum() * obs.voxel_cm3),
             "vol_whole_cm3": float(obs.whole.sum() * obs.voxel_cm3),
             "fraction_in_brain": frac_brain, "grid_coverage": coverage}
    return core, whole, facts


def _shift(v) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = v
    return t


def _fmt_box(lo, hi) -> str:
    return " x ".join(f"[{a:.0f}, {b:.0f}]" for a, b in zip(lo, hi))


# ---------------------------------------------------------------------------------------------
# scoring
def dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice of masks a (n, V) against b (V,) or (n, V) -> (n,); 1 where both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    inter = (a & b).sum(axis=-1)
    tot = a.sum(axis=-1) + b.sum(axis=-1)
    return np.where(tot > 0, 2.0 * inter / np.maximum(tot, 1), 1.0)


def score(dice_core, dice_whole, has_core: bool):
    """Combined fit quality in [0, 1]."""
    return 0.5 * (np.asarray(dice_core) + np.asarray(dice_whole)) if has_core else \
        np.asarray(dice_whole, dtype=float)


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

    def d(inter, a, b):
        return np.where(a + b > 0, 2.0 * inter / np.maximum(a + b, 1), 1.0)

    return d(i_c, n_c, int(in_core.sum())), d(i_w, n_w, int(in_whole.sum()))


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
    s = score(dc, dw, bool(core.any()))
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
    """FAISS k nearest snapshots of one embedding (1, d) among ``allowed`` ids (all if None or
    empty) -> distances (k',), ids (k'), nearest first."""
    dist, ids = db.search(embedding, k, ids=allowed if allowed is not None and len(allowed)
                          else None)
    keep = ids[0] >= 0
    return dist[0][keep], ids[0][keep]


# ---------------------------------------------------------------------------------------------
# estimate
@dataclass
class Estimate:
    """The fit. ``u``: fitted concentration (X, Y, Z) float32 on the database grid."""

    lambda_mm: float
    tau: float
    origin_mm: np.ndarray                  # (3,) RAS MNI mm
    T_days: float
    dice_core: float
    dice_whole: float
    score: float
    thresholds: dict
    u: np.ndarray
    anatomy: object
    candidates: list
    uncertainty: dict
    timings_s: dict
    database: str
    observation: Observation | None = None
    facts: dict = field(default_factory=dict)
    refined: bool = False
    source: str = "database"              # "database" or "refine": where the winner came from

    @property
    def params(self) -> dict:
        d = dimensional(self.lambda_mm, self.tau, self.T_days)
        return {k: float(v) for k, v in d.items()}

    def to_dict(self) -> dict:
        p = self.params
        return {
            "mu1_cm": p["mu1_cm"], "mu2": p["mu2"], "Dw_cm2_per_day": p["Dw_cm2_per_day"],
            "rho_per_day": p["rho_per_day"], "T_days": float(self.T_days),
            "lambda_mm": float(self.lambda_mm), "tau": float(self.tau),
            "origin_mm": [float(v) for v in self.origin_mm],
            "dice_core": float(self.dice_core), "dice_whole": float(self.dice_whole),
            "score": float(self.score),
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "uncertainty": self.uncertainty, "candidates": self.candidates,
            "timings_s": {k: float(v) for k, v in self.timings_s.items()},
            "database": self.database, "refined": bool(self.refined), "source": self.source,
            "observed": self.facts,
            "inputs": [str(p) for p in (self.observation.paths if self.observation else [])],
            "version": VERSION,
        }


def _candidate_row(db, i, dc, dw, s, dist, T_days) -> dict:
    sn = db.snapshots
    d = dimensional(sn["lambda_mm"][i], sn["tau"][i], T_days)
    return {"id": int(i), "run_id": int(sn["run_id"][i]), "lambda_mm": float(sn["lambda_mm"][i]),
            "tau": float(sn["tau"][i]), "mu1_cm": float(d["mu1_cm"]), "mu2": float(d["mu2"]),
            "Dw_cm2_per_day": float(d["Dw_cm2_per_day"]), "rho_per_day": float(d["rho_per_day"]),
            "origin_mm": [float(v) for v in sn["origin_mm"][i]], "dice_core": float(dc),
            "dice_whole": float(dw), "score": float(s), "faiss_distance": float(dist)}


def _uncertainty(points: list[dict], best: dict, T_days: float) -> dict:
    """Spread (std, min, max) of each parameter over the plausible points (lambda_mm, tau,
    origin_mm, score), plus the RMS distance of their origins from the best origin (mm)."""
    top = max(p["score"] for p in points)
    keep = [p for p in points if p["score"] >= top - PLAUSIBLE_DELTA]
    lam = np.array([p["lambda_mm"] for p in keep])
    tau = np.array([p["tau"] for p in keep])
    org = np.array([p["origin_mm"] for p in keep], dtype=float)
    d = dimensional(lam, tau, T_days)
    out = {"n_plausible": len(keep), "score_delta": PLAUSIBLE_DELTA}
    for key, v in (("mu1_cm", d["mu1_cm"]), ("mu2", d["mu2"]),
                   ("Dw_cm2_per_day", d["Dw_cm2_per_day"]), ("rho_per_day", d["rho_per_day"]),
                   ("lambda_mm", lam), ("tau", tau)):
        out[key] = {"std": float(np.std(v)), "min": float(np.min(v)), "max": float(np.max(v))}
    dist = np.linalg.norm(org - np.asarray(best["origin_mm"], dtype=float), axis=1)
    out["origin_mm"] = {"rms_distance": float(np.sqrt(np.mean(dist ** 2))),
                        "max_distance": float(dist.max()),
                        "std": [float(v) for v in org.std(axis=0)]}
    return out


def fit(db, observation: Observation, T_days: float = 100.0, *, top_k: int = 50,
        refine: bool = True, progress=None, cancel=None, prepared=None,
        refine_opts: dict | None = None, rerank_kernel: str = "sparse") -> Estimate:
    """Fit one observation against an open :class:`TumorDatabase` ``db``.

    ``prepared``: (core, whole, facts) already on the database grid (skips the resampling).
    ``refine_opts``: keyword arguments of :func:`refine_search`; ``rerank_kernel``: the exact
    Dice kernel of the re-rank (:func:`score_snapshots`)."""
    progress = progress or Progress()
    cancel = cancel or CancelToken()
    if T_days <= 0:
        raise InputError(f"The stated time T must be positive (got {T_days:g} days).")
    t_all = time.perf_counter()
    timings = {}
    t = time.perf_counter()
    progress.update(0.02, "resampling onto the database grid")
    core, whole, facts = prepared or to_database_grid(observation, db.anatomy)
    timings["load"] = time.perf_counter() - t
    cancel.check()
    has_core = bool(core.any())

    t = time.perf_counter()
    progress.update(0.1, "querying the index")
    allowed = overlap_candidates(db, whole)
    dist, ids = search(db, embed(db, core, whole), top_k, allowed)
    facts = dict(facts, n_overlap_candidates=int(len(allowed)))
    timings["query"] = time.perf_counter() - t
    cancel.check()

    t = time.perf_counter()
    progress.update(0.15, "re-ranking by exact Dice")
    dc, dw = score_snapshots(db, ids, core, whole, rerank_kernel)
    s = score(dc, dw, has_core)
    order = np.argsort(-s, kind="stable")
    T = float(T_days)
    candidates = [_candidate_row(db, ids[o], dc[o], dw[o], s[o], dist[o], T) for o in order]
    timings["rerank"] = time.perf_counter() - t
    cancel.check()

    best = candidates[0]
    points = [dict(c) for c in candidates]
    thresholds = dict(db.manifest.get("thresholds", THRESHOLDS))
    result = {"lambda_mm": best["lambda_mm"], "tau": best["tau"],
              "origin_mm": np.asarray(best["origin_mm"]), "dice_core": best["dice_core"],
              "dice_whole": best["dice_whole"], "score": best["score"], "source": "database"}
    u = None
    if refine:
        from engine._torch import torch     # imported before the refine clock starts
    t = time.perf_counter()
    if refine:

        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # small batched grids: one thread is fastest (and on 2 busy
        try:                       # cores several threads were 30x slower, see docs)
            ref = refine_search(db.anatomy, candidates, core, whole, thresholds,
                                progress=progress.sub(0.2, 0.95), cancel=cancel,
                                **(refine_opts or {}))
        finally:
            torch.set_num_threads(threads)
        points += ref["points"] if ref is not None else []
        if ref is not None and ref["score"] > best["score"] + 1e-9:
            result = dict(ref, source="refine")
            u = ref["u"]
    timings["refine"] = time.perf_counter() - t
    if u is None:
        u = db.concentration([best["id"]])[0]
    timings["total"] = time.perf_counter() - t_all
    progress.done(f"Dice core {result['dice_core']:.2f}, whole {result['dice_whole']:.2f}")
    return Estimate(
        lambda_mm=float(result["lambda_mm"]), tau=float(result["tau"]),
        origin_mm=np.asarray(result["origin_mm"], dtype=float), T_days=T,
        dice_core=float(result["dice_core"]), dice_whole=float(result["dice_whole"]),
        score=float(result["score"]), thresholds=thresholds, u=u, anatomy=db.anatomy,
        candidates=candidates, uncertainty=_uncertainty(points, result, T), timings_s=timings,
        database=str(db.manifest.get("id", "")), observation=observation, facts=facts,
        refined=bool(refine), source=result["source"])


# ---------------------------------------------------------------------------------------------
# refine
def _crop(anatomy, masks, margin: int):
    """Bounding box (tuple of slices) of the union of ``masks`` grown by ``margin`` voxels."""
    idx = np.argwhere(np.any(masks, axis=0))
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, anatomy.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _work(members, n_vox, h, m_max, taus_hi) -> float:
    """Solver cost of one batch in voxel-steps: B x voxels x the largest member's step count."""
    from engine.tumor.solver import time_step

    lam = np.array([m["lambda_mm"] for m in members])
    steps = np.ceil(np.asarray(taus_hi) / time_step(lam, h, m_max)).max()
    return float(len(members) * n_vox * steps)


def refine_search(anatomy, candidates: list[dict], core, whole, thresholds, *,
                  n_starts: int = 2, generations: int = 3, lambda_step: float = 1.3,
                  origin_step_vox: float = 1.0, n_taus: int = 24, tau_span: float = 1.6,
                  work_budget: float = 1.0e8, device=None, progress=None,
                  cancel=None) -> dict:
    """Pattern search over (log lambda, origin) with tau free, from the best re-ranked
    candidates. Each generation is ONE batched solver call; members, in priority order:
    (gen 1 only) the ``n_starts`` best distinct runs; the current best with its origin moved by
    the offset between the observed and simulated whole-tumor centroids; lambda x/÷ step;
    origin +- step along each axis. Later generations start from the best member so far with
    sqrt(lambda step) and half the origin step. Every member is scored at ``n_taus`` taus in
    [tau / tau_span, tau * tau_span] (geometric) on a crop around the tumor and stops once its
    whole tumor is twice the observed one. ``work_budget`` (voxel-steps, ~16 ns each on one
    core) bounds the total: members are dropped from the end of a generation (or the search
    ends) when the estimate would exceed it, so the cost is bounded and deterministic. The
    winner is re-simulated on the full grid.

    Returns {lambda_mm, tau, origin_mm, dice_core, dice_whole, score, u (X, Y, Z), points},
    or None when not even one member fits the budget."""
    from engine._torch import torch
    from engine.tumor.anatomy import make_anatomy
    from engine.tumor.solver import integrate, min_lambda_mm, simulate

    progress = progress or Progress()
    has_core = bool(core.any())
    starts, seen = [], set()            # distinct runs, best first
    for c in candidates:
        if c["run_id"] not in seen:
            seen.add(c["run_id"])
            starts.append(c)
        if len(starts) == n_starts:
            break
    h = anatomy.spacing_mm
    lam_max = max(c["lambda_mm"] for c in starts) * lambda_step
    margin = int(np.ceil(3 + 2 * lam_max / h))
    seeds = np.zeros(anatomy.shape, dtype=bool)
    for c in starts:
        v = np.clip(np.rint(anatomy.mm_to_vox(c["origin_mm"])).astype(int), 0,
                    np.array(anatomy.shape) - 1)
        seeds[tuple(v)] = True
    box = _crop(anatomy, np.stack([whole, seeds]), margin)
    lo = np.array([b.start for b in box])
    sub = make_anatomy(anatomy.wm[box], anatomy.gm[box], anatomy.affine @ _shift(lo), h)
    m_max = float(anatomy.m.max()) or 1.0
    n_vox = int(np.prod(sub.shape))
    dev = torch.device("cpu") if device is None else torch.device(device)
    c_obs = torch.from_numpy(np.ascontiguousarray(core[box])).to(dev).reshape(-1)
    w_obs = torch.from_numpy(np.ascontiguousarray(whole[box])).to(dev).reshape(-1)
    coords = torch.from_numpy(np.indices(sub.shape).reshape(3, -1).T.astype(np.float32)).to(dev)
    n_c, n_w = int(c_obs.sum()), int(w_obs.sum())
    obs_centroid = np.argwhere(whole[box]).mean(axis=0)
    thr_c, thr_w = float(thresholds["core"]), float(thresholds["whole"])
    frac = np.geomspace(1.0 / tau_span, tau_span, n_taus)
    lam_lo = max(min_lambda_mm(h), 1e-3)

    def evaluate(members: list[dict], prog) -> list[dict]:
        """members: lambda_mm, origin_vox (full grid), tau0 -> each with its best tau."""
        B = len(members)
        lam = np.array([m["lambda_mm"] for m in members])
        org = np.array([m["origin_vox"] for m in members]) - lo
        tau0 = np.array([m["tau0"] for m in members])[:, None]
        taus = np.sort(np.concatenate([tau0 * frac[None, :], tau0], axis=1), axis=1)
        best = [(-1.0, 0.0, 0.0, 0.0, None)] * B  # score, tau, dice core, dice whole, centroid

        def on_snapshot(s, u):
            flat = u.reshape(B, -1)
            pc = flat >= thr_c
            pw = flat >= thr_w
            ic = (pc & c_obs).sum(1).cpu().numpy()
            iw = (pw & w_obs).sum(1).cpu().numpy()
            sc = pc.sum(1).cpu().numpy()
            sw = pw.sum(1).cpu().numpy()
            dc = np.where(sc + n_c > 0, 2.0 * ic / np.maximum(sc + n_c, 1), 1.0)
            dw = np.where(sw + n_w > 0, 2.0 * iw / np.maximum(sw + n_w, 1), 1.0)
            sco = score(dc, dw, has_core)
            better = [b for b in range(B) if sco[b] > best[b][0]]
            if better:
                cen = (pw[better].float() @ coords).cpu().numpy()
                for n, b in enumerate(better):
                    c = cen[n] / sw[b] if sw[b] else None
                    best[b] = (float(sco[b]), float(taus[b, s]), float(dc[b]), float(dw[b]), c)
            return sw > 2.0 * n_w + 8          # grown well past the observation: stop member

        integrate(sub, lam, org, taus, on_snapshot, device=dev, progress=prog, cancel=cancel)
        return [dict(m, score=sco, tau=tau, dice_core=dc, dice_whole=dw, centroid=cen,
                     origin_mm=[float(v) for v in anatomy.vox_to_mm(m["origin_vox"])])
                for m, (sco, tau, dc, dw, cen) in zip(members, best)]

    def neighbours(c, ls, os_) -> list[dict]:
        o = np.asarray(c["origin_vox"], dtype=float)
        out = []
        if c.get("centroid") is not None:
            shift = obs_centroid - np.asarray(c["centroid"])      # crop voxels
            if np.linalg.norm(shift) > 0.25:
                out.append(dict(lambda_mm=c["lambda_mm"], origin_vox=o + shift, tau0=c["tau"]))
        out += [dict(lambda_mm=c["lambda_mm"] * f, origin_vox=o, tau0=c["tau"])
                for f in (ls, 1.0 / ls)]
        for ax in range(3):
            for sgn in (1, -1):
                d = np.zeros(3)
                d[ax] = sgn * os_
                out.append(dict(lambda_mm=c["lambda_mm"], origin_vox=o + d, tau0=c["tau"]))
        return out

    def inside(m) -> bool:
        v = np.rint(np.asarray(m["origin_vox"]) - lo).astype(int)
        return (m["lambda_mm"] >= lam_lo and bool(np.all((v >= 0) & (v < sub.shape)))
                and bool(sub.brain[tuple(v)]))

    # generation 1: the starts themselves (tau free), and their centroid-corrected versions
    members = [dict(lambda_mm=c["lambda_mm"], origin_vox=anatomy.mm_to_vox(c["origin_mm"]),
                    tau0=c["tau"]) for c in starts]
    budget = float(work_budget)
    points: list[dict] = []
    current = None
    ls, os_ = lambda_step, origin_step_vox
    for g in range(generations + 1):
        members = [m for m in members if inside(m)]
        while members and _work(members, n_vox, h, m_max,
                                [m["tau0"] * tau_span for m in members]) > budget:
            members = members[:-1]
        if not members:
            break
        budget -= _work(members, n_vox, h, m_max, [m["tau0"] * tau_span for m in members])
        res = evaluate(members, progress.sub(g / (generations + 2), (g + 1) / (generations + 2)))
        points += res
        top = max(res, key=lambda r: r["score"])
        if current is None or top["score"] > current["score"]:
            current = top
        if g > 0:
            ls, os_ = np.sqrt(ls), os_ / 2
        members = neighbours(current, ls, os_)
    if current is None:                 # not even one member fitted the work budget
        return None
    # the winner on the full grid
    u = simulate(anatomy, [current["lambda_mm"]], np.asarray(current["origin_vox"])[None],
                 [current["tau"]], device=dev, progress=progress.sub(0.9, 1.0),
                 cancel=cancel)[0, 0]
    brain = anatomy.brain
    dc = float(dice((u >= np.float32(thr_c))[brain][None], core[brain])[0])
    dw = float(dice((u >= np.float32(thr_w))[brain][None], whole[brain])[0])
    return {"lambda_mm": float(current["lambda_mm"]), "tau": float(current["tau"]),
            "origin_mm": np.asarray(current["origin_mm"], dtype=float), "dice_core": dc,
            "dice_whole": dw, "score": float(score(dc, dw, has_core)), "u": u,
            "n_evaluated": len(points),
            "points": [{k: p[k] for k in ("lambda_mm", "tau", "origin_mm", "score")}
                       for p in points]}


def regrow(anatomy, lambda_mm: float, origin_mm, tau: float, *, progress=None,
           cancel=None) -> np.ndarray:
    """The fitted tumor regrown to another tau (e.g. rho * T' for another T') -> (X, Y, Z)."""
    from engine.tumor.solver import simulate

    o = anatomy.mm_to_vox(np.asarray(origin_mm, dtype=float))[None]
    return simulate(anatomy, [lambda_mm], o, [max(float(tau), 1e-6)], progress=progress,
                    cancel=cancel)[0, 0]
