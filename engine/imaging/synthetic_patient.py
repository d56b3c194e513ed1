"""Synthetic native-space patients from the bundled MNI152 T1 (demo, tests, benchmark).

Truth map (pull form): a native point y (scanner RAS mm) shows the MNI point
    x = phi(y) = B (y) + e(B y),   B = (rigid motion . affine)^-1  (4, 4)
with e a smooth displacement (peak ``warp_mm``) on a coarse MNI grid. The native image is the
template (skull-stripped or not) sampled at phi(y), with a multiplicative bias field, noise and
the tumor drawn as hypointensity; the segmentation is the MNI-space tumor (simulated by the
project's solver on the atlas) sampled the same way, so the tumor grew on a brain other than
the template (the warped one). The native grid has its own voxel size and axis order.
"""
from __future__ import annotations

import numpy as np

from engine.imaging.registration import (apply_affine, grid_points, sample,
                                         template_brain_mask, template_volume)


def rotation(deg) -> np.ndarray:
    a, b, c = np.deg2rad(deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_motion(rng, max_deg=12.0, max_shift_mm=20.0, affine_pct=0.0, warp_mm=5.0) -> dict:
    return {"rot_deg": rng.uniform(-max_deg, max_deg, 3).tolist(),
            "shift_mm": rng.uniform(-max_shift_mm, max_shift_mm, 3).tolist(),
            "scale": (1 + rng.uniform(-affine_pct, affine_pct, 3) / 100).tolist(),
            "warp_mm": float(warp_mm), "warp_seed": int(rng.integers(1 << 30))}


def motion_matrix(m: dict) -> np.ndarray:
    """(4, 4) MNI mm -> scanner mm (rotation about the brain centre, scaling, shift)."""
    T = np.eye(4)
    T[:3, :3] = rotation(m["rot_deg"]) @ np.diag(m["scale"])
    c = np.array([0.0, -18.0, 18.0])
    T[:3, 3] = c - T[:3, :3] @ c + np.asarray(m["shift_mm"])
    return T


def smooth_field(seed: int, peak_mm: float, spacing_mm: float = 6.0):
    """(3, X, Y, Z) smooth displacement (max |e| = peak_mm) on a coarse MNI grid + affine."""
    from scipy import ndimage

    t = template_volume()
    lo = t.vox_to_mm(np.zeros(3))
    hi = t.vox_to_mm(np.array(t.shape) - 1)
    shape = tuple(int(np.ceil((h - l) / spacing_mm)) + 1 for l, h in zip(lo, hi))
    rng = np.random.default_rng(seed)
    e = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 3.0, mode="wrap")
                  for _ in range(3)])
    mag = np.sqrt((e ** 2).sum(0)).max()
    e *= peak_mm / mag if mag > 0 else 0
    aff = np.diag([spacing_mm] * 3 + [1.0])
    aff[:3, 3] = lo
    return e.astype(np.float32), aff


class TruthMap:
    """phi (native -> MNI) and its numerical inverse (MNI -> native)."""

    def __init__(self, motion: dict):
        self.T = motion_matrix(motion)
        self.B = np.linalg.inv(self.T)
        self.e, self.e_aff = smooth_field(motion["warp_seed"], motion["warp_mm"])

    def native_to_mni(self, y) -> np.ndarray:
        y = np.asarray(y, float)
        z = apply_affine(self.B, y.reshape(-1, 3))
        return (z + np.stack([sample(c, self.e_aff, z) for c in self.e], 1)).reshape(y.shape)

    def mni_to_native(self, x, iters: int = 20) -> np.ndarray:
        x = np.asarray(x, float)
        p = x.reshape(-1, 3)
        z = p.copy()
        for _ in range(iters):            # z + e(z) = x  (fixed point; |grad e| << 1)
            z = p - np.stack([sample(c, self.e_aff, z) for c in self.e], 1)
        return apply_affine(self.T, z).reshape(x.shape)


def native_grid(truth: TruthMap, voxel_mm, margin_mm: float = 12.0):
    """A scanner-aligned RAS+ grid of ``voxel_mm`` covering the moved template brain."""
    mask, aff = template_brain_mask(2.0)
    pts = np.argwhere(mask) @ aff[:3, :3].T + aff[:3, 3]
    y = truth.mni_to_native(pts[::7])
    lo, hi = y.min(0) - margin_mm, y.max(0) + margin_mm
    v = np.asarray(voxel_mm, float)
    shape = tuple(int(s) for s in np.ceil((hi - lo) / v).astype(int) + 1)
    A = np.diag(list(v) + [1.0])
    A[:3, 3] = lo
    return shape, A


def to_orientation(data, affine, codes: str):
    """RAS+ (data, affine) -> the same image stored with axis codes like "LPS" / "LAS"."""
    import nibabel.orientations as nio

    ornt = nio.axcodes2ornt(tuple(codes))
    ras = nio.axcodes2ornt(("R", "A", "S"))
    tr = nio.ornt_transform(ras, ornt)
    out = nio.apply_orientation(data, tr)
    return np.ascontiguousarray(out), affine @ nio.inv_ornt_aff(tr, data.shape)


def make_native_patient(mni_labels, mni_u=None, *, seed: int = 0, motion: dict | None = None,
                        voxel_mm=(0.94, 0.94, 1.5), orientation: str = "LPS",
                        stripped: bool = True, bias: float = 0.15, noise: float = 0.02,
                        hypo: float = 0.45) -> dict:
    """Warp an MNI 1 mm tumor (BraTS labels (197, 233, 189), optional u for the intensity) into
    a native patient. Returns {scan, seg: (data, affine) in the file orientation, truth: TruthMap,
    motion, shape}. Data: scan float32, seg uint8."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    motion = motion or draw_motion(rng)
    truth = TruthMap(motion)
    shape, A = native_grid(truth, voxel_mm)
    t = template_volume()
    src = t.data.astype(np.float32)
    if stripped:
        bm, baff = template_brain_mask(1.0)
        src = src * ndimage.gaussian_filter(bm.astype(np.float32), 0.7)
    tum = (mni_u if mni_u is not None else (mni_labels > 0).astype(np.float32))
    tum = ndimage.gaussian_filter(np.asarray(tum, np.float32), 1.0)
    src = src * (1 - hypo * np.clip(tum / max(tum.max(), 1e-6), 0, 1))
    scan = np.zeros(shape, np.float32)
    seg = np.zeros(shape, np.uint8)
    brain = np.ones(shape, bool)
    step = max(1, 1_500_000 // (shape[0] * shape[1]))
    for k0 in range(0, shape[2], step):
        sl = slice(k0, min(shape[2], k0 + step))
        x = truth.native_to_mni(grid_points(shape, A, sl))
        n = (shape[0], shape[1], sl.stop - sl.start)
        scan[:, :, sl] = sample(src, t.affine, x, order=1).reshape(n)
        seg[:, :, sl] = sample(mni_labels, t.affine, x, order=0).reshape(n)
        if stripped:
            brain[:, :, sl] = sample(bm.astype(np.uint8), t.affine, x, order=0).reshape(n) > 0
    gshape = tuple(max(2, s // 24) for s in shape)
    b = ndimage.zoom(rng.normal(size=gshape), np.array(shape) / np.array(gshape), order=3)
    b = b[:shape[0], :shape[1], :shape[2]]
    b = np.pad(b, [(0, s - bs) for s, bs in zip(shape, b.shape)], mode="edge")
    scan *= np.exp(bias * b / max(1e-6, np.abs(b).max()))
    scan += noise * float(scan.max()) * rng.normal(size=shape).astype(np.float32)
    if stripped:
        scan = np.where(brain | (seg > 0), np.clip(scan, 0, None), 0)
    scan_f, aff_f = to_orientation(scan.astype(np.float32), A, orientation)
    seg_f, _ = to_orientation(seg, A, orientation)
    return {"scan": (scan_f, aff_f), "seg": (seg_f, aff_f), "truth": truth, "motion": motion,
            "shape": shape, "ras_affine": A}


def mni_tumor(seed: int, spacing_mm: float = 2.0, lambda_range_mm=(2.0, 8.0),
              volume_cm3=None) -> dict:
    """A tumor simulated by the project's solver on the atlas (``spacing_mm`` grid), grown to a
    random (or given) whole-tumor volume -> {labels, u (197, 233, 189) on the 1 mm MNI grid,
    lambda_mm, tau, origin_mm}."""
    from engine.tumor.anatomy import load_anatomy
    from engine.tumor.export import on_grid
    from engine.tumor.synthetic import draw_parameters, grow_to_volume, labels_from

    anatomy = load_anatomy(spacing_mm)
    rng = np.random.default_rng(seed)
    p = draw_parameters(rng, anatomy, lambda_range_mm)
    if volume_cm3 is not None:
        p["target_cm3"] = float(volume_cm3)
    u, tau = grow_to_volume(anatomy, p["lambda_mm"], p["origin_vox_fine"], p["target_cm3"])
    t = template_volume()
    u1 = on_grid(u, anatomy.affine, t.shape, t.affine)
    lab = labels_from(u1, {"core": 0.6, "whole": 0.2}, {"core": 0, "whole": 0})
    return {"labels": lab, "u": u1, "lambda_mm": float(p["lambda_mm"]), "tau": float(tau),
            "origin_mm": [float(v) for v in anatomy.vox_to_mm(p["origin_vox_fine"])],
            "spacing_mm": float(spacing_mm)}


def save_nifti(path, data, affine, code: int = 1) -> None:
    """Write a NIfTI with scanner-space header codes (sform = qform = 1) atomically."""
    import nibabel as nib

    from db.atomic import write_with

    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=code)
    img.set_qform(affine, code=code)
    img.header.set_xyzt_units("mm")
    write_with(path, lambda tmp: nib.save(img, tmp))
