"""Refine: a small pattern search over (log lambda, origin) with tau free, around the best
database candidates. Each generation is ONE batched solver call on a crop of the grid around
the tumor; every member is scored at a geometric grid of taus around its candidate's tau and
stops once its whole tumor is well past the observed one. The winner is re-simulated on the
full grid. Masks (X, Y, Z) bool on the database grid; origins in voxel coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.jobs import Progress
from engine.tumor.scoring import core_fraction, dice, dice_from_counts, score


@dataclass(frozen=True)
class RefineOptions:
    """Pattern-search settings (see :func:`refine_search`)."""

    n_starts: int = 2             # distinct database runs to start from
    generations: int = 3          # generations after the starts
    lambda_step: float = 1.3      # first lambda factor (later: its square root each generation)
    origin_step_vox: float = 1.0  # first origin step (later: halved each generation)
    n_taus: int = 24              # taus scored per member in [tau / tau_span, tau * tau_span]
    tau_span: float = 1.6
    work_budget: float = 1.5e8    # member voxel-steps in all
    sweep_lambdas: tuple = (2.0, 3.2, 5.0, 8.0, 12.7)   # generation 0 (see refine_search)
    sweep_origins: int = 2        # core centroid, whole-tumor centroid (the first n of them)
    margin_lambdas: float = 1.0   # crop margin around the tumor: 3 voxels + this x max lambda


def shift_affine(v) -> np.ndarray:
    """(4, 4) translation by voxel offset v (3,)."""
    t = np.eye(4)
    t[:3, 3] = v
    return t


def crop_box(shape, masks, margin: int) -> tuple:
    """Bounding box (tuple of slices) of the union of ``masks`` (n, X, Y, Z) grown by
    ``margin`` voxels, clipped to ``shape``."""
    idx = np.argwhere(np.any(masks, axis=0))
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def work(lambdas, n_vox: int, h: float, m_max: float, taus_hi) -> float:
    """Solver cost of one batch in member voxel-steps: voxels x the sum of the members' step
    counts (the scipy loop steps only the members still running)."""
    from engine.tumor.solver import time_step

    steps = np.ceil(np.asarray(taus_hi) / time_step(np.asarray(lambdas), h, m_max)).sum()
    return float(n_vox * steps)


def distinct_starts(candidates: list[dict], n: int) -> list[dict]:
    """The best ``n`` candidates from distinct runs (candidates sorted best first)."""
    starts, seen = [], set()
    for c in candidates:
        if c["run_id"] not in seen:
            seen.add(c["run_id"])
            starts.append(c)
        if len(starts) == n:
            break
    return starts


class CropProblem:
    """The observation on a crop of the grid around the tumor and the starts' origins, with the
    scoring of batched simulations there. ``lo`` (3,): the crop's first voxel on the full grid;
    ``sub``: the cropped Anatomy."""

    def __init__(self, anatomy, starts, core, whole, thresholds, lam_max: float, backend,
                 margin_lambdas: float = 1.0):
        from engine.tumor.anatomy import make_anatomy

        h = anatomy.spacing_mm
        margin = int(np.ceil(3 + margin_lambdas * lam_max / h))
        seeds = np.zeros(anatomy.shape, dtype=bool)
        for c in starts:
            v = np.clip(np.rint(anatomy.mm_to_vox(c["origin_mm"])).astype(int), 0,
                        np.array(anatomy.shape) - 1)
            seeds[tuple(v)] = True
        box = crop_box(anatomy.shape, np.stack([whole, seeds]), margin)
        self.anatomy, self.backend = anatomy, backend
        self.lo = np.array([b.start for b in box])
        self.sub = make_anatomy(anatomy.wm[box], anatomy.gm[box],
                                anatomy.affine @ shift_affine(self.lo), h)
        brain = self.sub.brain.ravel()
        self.c_obs = core[box].ravel()[brain]          # observed masks over the crop's brain
        self.w_obs = whole[box].ravel()[brain]
        self.n_c, self.n_w = int(self.c_obs.sum()), int(self.w_obs.sum())
        self.coords = np.argwhere(self.sub.brain).astype(np.float64)    # (n_brain, 3)
        self.obs_centroid = np.argwhere(whole[box]).mean(axis=0)
        self.thr_c, self.thr_w = float(thresholds["core"]), float(thresholds["whole"])
        self.obs_frac = float(core_fraction(core.sum(), whole.sum()))
        self.m_max = float(anatomy.m.max()) or 1.0
        self.n_vox = int(brain.sum())
        from engine.tumor.solver import diffusion_matrix

        self.operator = diffusion_matrix(self.sub)        # built once, reused by every batch

    def inside(self, m: dict) -> bool:
        """Member origin on a brain voxel of the crop."""
        v = np.rint(np.asarray(m["origin_vox"]) - self.lo).astype(int)
        return bool(np.all((v >= 0) & (v < self.sub.shape))) and bool(self.sub.brain[tuple(v)])

    def evaluate(self, members: list[dict], frac, progress, cancel) -> list[dict]:
        """members (lambda_mm, origin_vox on the full grid, tau0 or taus (len(frac) + 1,)) ->
        each with its best tau, score, Dice and whole-tumor centroid (crop voxels) over its
        taus (default tau0 * frac and tau0)."""
        from engine.tumor.solver import integrate

        B = len(members)
        lam = np.array([m["lambda_mm"] for m in members])
        org = np.array([m["origin_vox"] for m in members]) - self.lo
        taus = np.stack([m["taus"] if "taus" in m else
                         np.sort(np.append(m["tau0"] * frac, m["tau0"])) for m in members])
        best = [dict(score=-1.0, tau=0.0, dice_core=0.0, dice_whole=0.0, centroid=None)
                for _ in range(B)]

        def on_snapshot(s, u):                       # u: (B, n_brain) over the crop's brain
            u = np.asarray(u)
            pc, pw = u >= np.float32(self.thr_c), u >= np.float32(self.thr_w)
            sc, sw = pc.sum(1), pw.sum(1)
            dc = dice_from_counts((pc & self.c_obs).sum(1), sc, self.n_c)
            dw = dice_from_counts((pw & self.w_obs).sum(1), sw, self.n_w)
            sco = score(dc, dw, self.obs_frac, core_fraction(sc, sw))
            for b in np.flatnonzero(sco > [m["score"] for m in best]):
                cen = pw[b] @ self.coords / sw[b] if sw[b] else None
                best[b] = dict(score=float(sco[b]), tau=float(taus[b, s]),
                               dice_core=float(dc[b]), dice_whole=float(dw[b]), centroid=cen)
            return sw > 2.0 * self.n_w + 8          # grown well past the observation: stop

        integrate(self.sub, lam, org, taus, on_snapshot, progress=progress, cancel=cancel,
                  compact=True, backend=self.backend, operator=self.operator)
        return [dict({k: v for k, v in m.items() if k not in ("taus", "tau_stop")}, **b,
                     origin_mm=[float(v) for v in self.anatomy.vox_to_mm(m["origin_vox"])])
                for m, b in zip(members, best)]

    def sweep_origins(self, core, whole) -> list[np.ndarray]:
        """Origins (full-grid voxels) for the lambda sweep: the observed core centroid (when
        there is a core) and the whole-tumor centroid, each moved to the nearest brain voxel
        of the crop when it lies off tissue; duplicates within one voxel dropped."""
        out = []
        for mask in (core, whole):
            if not mask.any():
                continue
            c = np.argwhere(mask).mean(axis=0)
            v = np.rint(c - self.lo).astype(int)
            if not (np.all((v >= 0) & (v < self.sub.shape)) and self.sub.brain[tuple(v)]):
                b = np.argwhere(self.sub.brain)
                c = b[np.argmin(((b - (c - self.lo)) ** 2).sum(1))] + self.lo
            if all(np.linalg.norm(c - o) > 1.0 for o in out):
                out.append(np.asarray(c, dtype=float))
        return out

    def neighbours(self, c: dict, ls: float, os_: float) -> list[dict]:
        """Members around the current best ``c``, in priority order: centroid shift, lambda x/÷
        ls, origin +- os_ voxels along each axis."""
        o = np.asarray(c["origin_vox"], dtype=float)
        out = []
        if c.get("centroid") is not None:
            shift = self.obs_centroid - np.asarray(c["centroid"])      # crop voxels
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


def refine_search(anatomy, candidates: list[dict], core, whole, thresholds, *,
                  options: RefineOptions | None = None, backend: str = "scipy", progress=None,
                  cancel=None, **overrides) -> dict | None:
    """Pattern search over (log lambda, origin) with tau free, from the best re-ranked
    candidates (best first, with lambda_mm, tau, origin_mm, run_id). Generation 0: the
    ``n_starts`` best distinct runs; then around the best member so far: the centroid shift
    (observed minus simulated whole-tumor centroid), lambda x/÷ step, origin +- step per axis;
    each later generation uses sqrt(lambda step) and half the origin step. ``work_budget``
    bounds the total cost deterministically: members are dropped from the end of a generation
    (or the search ends) when it would be exceeded. ``overrides``: RefineOptions fields.

    Returns {lambda_mm, tau, origin_mm, dice_core, dice_whole, score, u (X, Y, Z) on the full
    grid, n_evaluated, points}, or None when not even one member fits the budget."""
    from engine.tumor.solver import min_lambda_mm, simulate

    opt = RefineOptions(**{**(options.__dict__ if options else {}), **overrides})
    progress = progress or Progress()
    starts = distinct_starts(candidates, opt.n_starts)
    h = anatomy.spacing_mm
    lam_max = max([c["lambda_mm"] for c in starts] + list(opt.sweep_lambdas)) * opt.lambda_step
    prob = CropProblem(anatomy, starts, core, whole, thresholds, lam_max, backend,
                       opt.margin_lambdas)
    frac = np.geomspace(1.0 / opt.tau_span, opt.tau_span, opt.n_taus)
    lam_lo = max(min_lambda_mm(h), 1e-3)
    from engine.tumor.presets import tau_max

    r_obs = np.cbrt(3 * whole.sum() * anatomy.voxel_cm3 * 1000 / (4 * np.pi))    # mm
    # expected stop (2x the observed volume): ~4 to appear, then the front at 2 lambda / tau
    sweep = [dict(lambda_mm=lam, origin_vox=o, tau0=float(tau_max(lam)) / 2,
                  taus=np.geomspace(0.5, float(tau_max(lam)), len(frac) + 1),
                  tau_stop=min(float(tau_max(lam)), 4.0 + 1.3 * r_obs / (2 * lam)))
             for o in prob.sweep_origins(core, whole)[:opt.sweep_origins]
             for lam in opt.sweep_lambdas]
    starts_m = [dict(lambda_mm=c["lambda_mm"], origin_vox=anatomy.mm_to_vox(c["origin_mm"]),
                     tau0=c["tau"]) for c in starts]
    members = starts_m + sweep
    budget = float(opt.work_budget)
    points: list[dict] = []
    current = None
    ls, os_ = opt.lambda_step, opt.origin_step_vox
    n_gen = opt.generations + 1
    for g in range(n_gen):
        members = [m for m in members if m["lambda_mm"] >= lam_lo and prob.inside(m)]

        def cost(ms):
            return work([m["lambda_mm"] for m in ms], prob.n_vox, h, prob.m_max,
                        [m.get("tau_stop", m["tau0"] * opt.tau_span) for m in ms])

        while members and cost(members) > budget:
            members = members[:-1]
        if not members:
            break
        budget -= cost(members)
        res = prob.evaluate(members, frac, progress.sub(g / (n_gen + 1), (g + 1) / (n_gen + 1)),
                            cancel)
        points += res
        top = max(res, key=lambda r: r["score"])
        if current is None or top["score"] > current["score"]:
            current = top
        if g > 0:
            ls, os_ = np.sqrt(ls), os_ / 2
        members = prob.neighbours(current, ls, os_)
    if current is None:
        return None
    # the winner again on the crop (the members' scores came from the same crop), embedded in
    # the full grid of ``anatomy``
    sub_u = simulate(prob.sub, [current["lambda_mm"]],
                     (np.asarray(current["origin_vox"]) - prob.lo)[None], [current["tau"]],
                     progress=progress.sub(0.9, 1.0), cancel=cancel, backend=backend)[0, 0]
    u = np.zeros(anatomy.shape, dtype=np.float32)
    u[tuple(slice(int(a), int(a) + n) for a, n in zip(prob.lo, sub_u.shape))] = sub_u
    brain = anatomy.brain
    pc, pw = u >= np.float32(prob.thr_c), u >= np.float32(prob.thr_w)
    dc = float(dice(pc[brain][None], core[brain])[0])
    dw = float(dice(pw[brain][None], whole[brain])[0])
    return {"lambda_mm": float(current["lambda_mm"]), "tau": float(current["tau"]),
            "origin_mm": np.asarray(current["origin_mm"], dtype=float), "dice_core": dc,
            "dice_whole": dw, "u": u, "anatomy": anatomy,
            "score": float(score(dc, dw, prob.obs_frac, core_fraction(pc.sum(), pw.sum()))),
            "n_evaluated": len(points), "work_voxel_steps": float(opt.work_budget - budget),
            "points": [{k: p[k] for k in ("lambda_mm", "tau", "origin_mm", "score")}
                       for p in points]}
