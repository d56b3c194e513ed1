"""Tumor inverse: find lambda, tau (hence Dw, rho for a stated T) and the origin whose simulated
tumor best reproduces an observed segmentation.

Stages (timed separately, see ``Estimate.timings_s``), each in its own module:

1. load    engine/tumor/observation.py: read, validate and resample the core and whole-tumor
           masks onto the database grid.
2. query   engine/tumor/scoring.py: metadata pre-filter, the database's embedding, FAISS top-k.
3. rerank  engine/tumor/scoring.py: exact Dice of core and whole tumor against the k stored
           snapshots; score = (Dice core + Dice whole) / 2 (whole only without a core).
4. refine  engine/tumor/refine.py: batched forward runs around the best candidates; the winner
           is kept only if it beats the best stored snapshot (``refined``), ``refine_tried``
           says whether it ran.

This module: the :class:`Estimate` and :func:`fit` (query + rerank + refine + estimate).
Shapes: masks (X, Y, Z) bool on the database grid; ``u`` (X, Y, Z) float32 in [0, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from engine.jobs import CancelToken, InputError, Progress
from engine.tumor.observation import (Observation, load_observation,  # noqa: F401 (API)
                                      observation_from_volume, to_database_grid)
from engine.tumor.params import THRESHOLDS, dimensional
from engine.tumor.refine import refine_search
from engine.tumor.scoring import (brute_force, dice, embed, overlap_candidates,  # noqa: F401
                                  core_fraction, score, score_snapshots, search,
                                  stored_core_fraction)

VERSION = "tumor-inverse-2"
PLAUSIBLE_DELTA = 0.05      # candidates within this score of the best are "plausible"
NO_OVERLAP_WARNING = ("No stored snapshot passed the metadata pre-filter (none has its origin "
                      "near the observed tumor with a whole-tumor volume within a factor 10 of "
                      "it), so the whole database was searched; the fit may be poor.")


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
    refined: bool = False                 # True only when the refine's winner was kept
    source: str = "database"              # "database" or "refine": where the winner came from
    refine_tried: bool = False            # the refine ran (whether or not it won)
    warnings: list = field(default_factory=list)   # one sentence each (e.g. no pre-filter hit)

    @property
    def params(self) -> dict:
        d = dimensional(self.lambda_mm, self.tau, self.T_days)
        return {k: float(v) for k, v in d.items()}

    def tau_at(self, T_days: float) -> float:
        """tau at another time T' (days) with the same Dw and rho: tau' = rho T' =
        tau T' / T."""
        if not T_days > 0:
            raise InputError(f"The time T must be positive (got {T_days:g} days).")
        return float(self.tau) * float(T_days) / float(self.T_days)

    def regrow(self, T_days: float, *, progress=None, cancel=None) -> np.ndarray:
        """The fitted tumor at another time T' (days), same Dw and rho -> u (X, Y, Z) float32
        on the database grid (one solver run; T' = T gives the fit itself up to round-off)."""
        return regrow(self.anatomy, self.lambda_mm, self.origin_mm, self.tau_at(T_days),
                      progress=progress, cancel=cancel)

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
            "database": self.database, "refined": bool(self.refined),
            "refine_tried": bool(self.refine_tried), "source": self.source,
            "warnings": list(self.warnings),
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

    t = time.perf_counter()
    progress.update(0.1, "querying the index")
    allowed = overlap_candidates(db, whole)
    warnings = [] if len(allowed) else [NO_OVERLAP_WARNING]
    dist, ids = search(db, embed(db, core, whole), top_k, allowed if len(allowed) else None)
    facts = dict(facts, n_overlap_candidates=int(len(allowed)),
                 searched="pre-filtered" if len(allowed) else "whole database (no pre-filter hit)")
    timings["query"] = time.perf_counter() - t
    cancel.check()

    t = time.perf_counter()
    progress.update(0.15, "re-ranking by exact Dice")
    dc, dw = score_snapshots(db, ids, core, whole, rerank_kernel)
    s = score(dc, dw, core_fraction(core.sum(), whole.sum()), stored_core_fraction(db, ids))
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
    u, anatomy = None, db.anatomy
    t = time.perf_counter()
    if refine:
        ref = refine_search(db.anatomy, candidates, core, whole, thresholds,
                            progress=progress.sub(0.2, 0.95), cancel=cancel,
                            **(refine_opts or {}))
        points += ref["points"] if ref is not None else []
        if ref is not None:
            facts = dict(facts, refine_members=ref["n_evaluated"],
                         refine_work_voxel_steps=ref["work_voxel_steps"])
        if ref is not None and ref["score"] > best["score"] + 1e-9:
            result = dict(ref, source="refine")
            u, anatomy = ref["u"], ref["anatomy"]
    timings["refine"] = time.perf_counter() - t
    if u is None:
        u = db.concentration([best["id"]])[0]
    timings["total"] = time.perf_counter() - t_all
    progress.done(f"Dice core {result['dice_core']:.2f}, whole {result['dice_whole']:.2f}")
    return Estimate(
        lambda_mm=float(result["lambda_mm"]), tau=float(result["tau"]),
        origin_mm=np.asarray(result["origin_mm"], dtype=float), T_days=T,
        dice_core=float(result["dice_core"]), dice_whole=float(result["dice_whole"]),
        score=float(result["score"]), thresholds=thresholds, u=u, anatomy=anatomy,
        candidates=candidates, uncertainty=_uncertainty(points, result, T), timings_s=timings,
        database=str(db.manifest.get("id", "")), observation=observation, facts=facts,
        refined=result["source"] == "refine", refine_tried=bool(refine), source=result["source"],
        warnings=warnings)


def regrow(anatomy, lambda_mm: float, origin_mm, tau: float, *, progress=None,
           cancel=None) -> np.ndarray:
    """The fitted tumor regrown to another tau (e.g. rho * T' for another T') -> (X, Y, Z)."""
    from engine.tumor.solver import simulate

    o = anatomy.mm_to_vox(np.asarray(origin_mm, dtype=float))[None]
    return simulate(anatomy, [lambda_mm], o, [max(float(tau), 1e-6)], progress=progress,
                    cancel=cancel, backend="scipy")[0, 0]
