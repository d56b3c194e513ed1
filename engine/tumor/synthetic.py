"""Synthetic patients for testing and benchmarking the inverse.

Each patient is simulated by the project's solver on an anatomy grid FINER than the database
(by default the next finer derived atlas grid: 4 mm for the 8 mm tiny preset, 3 mm for the
4 mm demo preset; ``fine_spacing_mm`` picks another), with lambda drawn log-uniformly over the
database's lambda range and the origin uniformly over tissue voxels (continuous, so off the
database's sampling plan), grown until the whole tumor reaches a random target volume. The
concentration is interpolated (trilinear) onto the 1 mm MNI152 grid, thresholded at jittered
thresholds (core 0.6 +- 0.05, whole 0.2 +- 0.05), each boundary perturbed by a random 1 voxel
erosion or dilation (or left alone), and written as a BraTS label map (1 necrosis where
u >= 0.9 inside the core, 4 enhancing for the rest of the core, 2 edema) with db/atomic.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, Progress

MNI_1MM_SHAPE = (197, 233, 189)
MNI_1MM_AFFINE = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])
THRESHOLD_JITTER = 0.05
VOLUME_RANGE_CM3 = (4.0, 120.0)     # target whole-tumor volumes (log-uniform)


def fine_spacing_for(db_spacing_mm: float) -> float:
    """The coarsest derived atlas grid finer than the database grid."""
    from engine.tumor.anatomy import available_spacings

    finer = [s for s in available_spacings() if s < db_spacing_mm]
    if not finer:
        raise ValueError(f"no atlas grid finer than {db_spacing_mm:g} mm")
    return max(finer)


def draw_parameters(rng: np.random.Generator, anatomy, lambda_range_mm) -> dict:
    """lambda_mm log-uniform in the range, origin_vox uniform in a tissue voxel (continuous),
    target whole-tumor volume log-uniform, jittered thresholds, boundary perturbations."""
    tissue = np.argwhere(anatomy.brain & ((anatomy.wm + anatomy.gm) >= 0.9))
    o = tissue[rng.integers(len(tissue))] + rng.uniform(-0.5, 0.5, 3)
    lo, hi = np.log(lambda_range_mm)
    return {
        "lambda_mm": float(np.exp(rng.uniform(lo, hi))),
        "origin_vox_fine": o,
        "target_cm3": float(np.exp(rng.uniform(*np.log(VOLUME_RANGE_CM3)))),
        "thresholds": {"core": float(0.6 + rng.uniform(-THRESHOLD_JITTER, THRESHOLD_JITTER)),
                       "whole": float(0.2 + rng.uniform(-THRESHOLD_JITTER, THRESHOLD_JITTER))},
        "perturb": {"core": int(rng.integers(-1, 2)), "whole": int(rng.integers(-1, 2))},
    }


def grow_to_volume(anatomy, lambda_mm, origin_vox, target_cm3, threshold=0.2, *,
                   n_taus: int = 120, crop_mm: float | None = None, progress=None,
                   cancel=None) -> tuple[np.ndarray, float]:
    """Simulate one tumor until its volume at ``threshold`` reaches ``target_cm3`` (or tau_max).
    Integrates on a crop of half-width ``crop_mm`` (default 45 mm + 4 lambda) around the
    origin. Returns (u (X, Y, Z) float32 on the full grid, tau)."""
    from engine.tumor.anatomy import make_anatomy
    from engine.tumor.presets import tau_max
    from engine.tumor.solver import integrate

    h = anatomy.spacing_mm
    half = (crop_mm if crop_mm is not None else 45.0 + 4.0 * lambda_mm) / h
    o = np.asarray(origin_vox, dtype=float)
    lo = np.maximum(np.floor(o - half).astype(int), 0)
    hi = np.minimum(np.ceil(o + half).astype(int) + 1, anatomy.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shift = np.eye(4)
    shift[:3, 3] = lo
    sub = make_anatomy(anatomy.wm[box], anatomy.gm[box], anatomy.affine @ shift, h)
    taus = float(tau_max(lambda_mm)) * np.arange(1, n_taus + 1) / n_taus
    kept = {}

    def on_snapshot(s, u):
        vol = float((u >= threshold).sum()) * sub.voxel_cm3
        kept["u"], kept["tau"], kept["vol"] = u[0].cpu().numpy().copy(), taus[s], vol
        return np.array([vol >= target_cm3])

    integrate(sub, [lambda_mm], (o - lo)[None], taus, on_snapshot, progress=progress,
              cancel=cancel)
    full = np.zeros(anatomy.shape, dtype=np.float32)
    full[box] = kept["u"]
    return full, float(kept["tau"])


def labels_from(u1, thresholds, perturb) -> np.ndarray:
    """BraTS labels (X, Y, Z) uint8 from u on the 1 mm grid with perturbed boundaries."""
    from scipy import ndimage

    def bend(mask, p):
        if p > 0:
            return ndimage.binary_dilation(mask, iterations=p)
        if p < 0:
            return ndimage.binary_erosion(mask, iterations=-p)
        return mask

    whole = bend(u1 >= thresholds["whole"], perturb["whole"])
    core = bend(u1 >= thresholds["core"], perturb["core"]) & whole
    lab = np.zeros(u1.shape, dtype=np.uint8)
    lab[whole] = 2
    lab[core] = 4
    lab[core & (u1 >= 0.9)] = 1
    return lab


def make_patient(path, seed: int, db_spacing_mm: float, lambda_range_mm, *,
                 fine_spacing_mm: float | None = None, overrides: dict | None = None,
                 progress=None, cancel=None) -> dict:
    """Simulate one synthetic patient and write its 1 mm BraTS label map to ``path``.
    ``overrides`` replaces drawn parameters (keys of :func:`draw_parameters`, or
    ``origin_mm`` instead of ``origin_vox_fine``).
    Returns the ground truth: lambda_mm, tau, origin_mm, mu1_cm, mu2, thresholds, ..."""
    import nibabel as nib

    from db.atomic import write_with
    from engine.tumor.anatomy import load_anatomy

    progress = progress or Progress()
    cancel = cancel or CancelToken()
    fine = fine_spacing_mm or fine_spacing_for(db_spacing_mm)
    anatomy = load_anatomy(fine)
    rng = np.random.default_rng(seed)
    p = draw_parameters(rng, anatomy, lambda_range_mm)
    over = dict(overrides or {})
    if "origin_mm" in over:
        over["origin_vox_fine"] = anatomy.mm_to_vox(np.asarray(over.pop("origin_mm"), float))
    p.update(over)
    u, tau = grow_to_volume(anatomy, p["lambda_mm"], p["origin_vox_fine"], p["target_cm3"],
                            progress=progress.sub(0, 0.9), cancel=cancel)
    from engine.tumor.export import on_grid

    u1 = on_grid(u, anatomy.affine, MNI_1MM_SHAPE, MNI_1MM_AFFINE)
    lab = labels_from(u1, p["thresholds"], p["perturb"])
    write_with(path, lambda tmp: nib.save(nib.Nifti1Image(lab, MNI_1MM_AFFINE), tmp))
    progress.done(f"patient {seed}")
    return {"seed": int(seed), "path": str(path), "fine_spacing_mm": float(fine),
            "lambda_mm": p["lambda_mm"], "tau": float(tau),
            "origin_mm": [float(v) for v in anatomy.vox_to_mm(p["origin_vox_fine"])],
            "mu1_cm": p["lambda_mm"] / 10 * math.sqrt(tau), "mu2": math.sqrt(tau),
            "thresholds": p["thresholds"], "perturb": p["perturb"],
            "target_cm3": p["target_cm3"],
            "vol_whole_cm3": float((lab > 0).sum() / 1000.0),
            "vol_core_cm3": float(np.isin(lab, (1, 4)).sum() / 1000.0)}


def write_patients(out_dir, n: int, db_spacing_mm: float, lambda_range_mm, *, seed0: int = 0,
                   fine_spacing_mm: float | None = None, progress=None, cancel=None) -> list:
    """``n`` patients ``patient_SEED.nii.gz`` + ``truth.json`` in ``out_dir``; reuses patients
    already listed in truth.json (same seed and fine grid)."""
    import json

    from db.atomic import write_json

    out = Path(out_dir)
    progress = progress or Progress()
    truth_path = out / "truth.json"
    old = {}
    if truth_path.is_file():
        old = {t["seed"]: t for t in json.loads(truth_path.read_text(encoding="utf-8"))}
    fine = fine_spacing_mm or fine_spacing_for(db_spacing_mm)
    truths = []
    for i in range(n):
        s = seed0 + i
        t = old.get(s)
        if t is None or t.get("fine_spacing_mm") != fine or not Path(t["path"]).is_file():
            t = make_patient(out / f"patient_{s:03d}.nii.gz", s, db_spacing_mm,
                             lambda_range_mm, fine_spacing_mm=fine,
                             progress=progress.sub(i / n, (i + 1) / n), cancel=cancel)
            old[s] = t
            write_json(truth_path, sorted(old.values(), key=lambda r: r["seed"]))
        truths.append(t)
    return truths
