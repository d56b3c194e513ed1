"""Fit a patient in native scanner space: register the scan to MNI152, fit there, map back.

Used by `tumor fit --scan/--patient` (engine/tumor/fit_cli.py calls :func:`fit_cmd` through a
small hook), `tumor register` (:func:`register_cmd`) and the GUI (:func:`personalize_native`).
The fit itself is the one fit service (engine/tumor/service.py) with a ``prepare`` hook that
returns the segmentation warped to the 1 mm MNI152 grid (core / whole masks trilinear >= 1/2).

Space rules (never guessed from grid overlap alone): with a scan, the image decides (an affine
fit to the template that moves it by < 3 mm means it already is in MNI152 space: registration
skipped, space "mni"); a segmentation alone is MNI152 only when its header says so
(sform/qform code 4), when it lies on a known MNI152 template grid, or with ``--space mni``.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress

# RAS+ grids of MNI152 templates: (shape, origin of voxel 0 in mm, voxel mm)
KNOWN_MNI_GRIDS = (
    ((197, 233, 189), (-98.0, -134.0, -72.0), 1.0),     # ICBM 2009 (bundled, nilearn)
    ((182, 218, 182), (-90.0, -126.0, -72.0), 1.0),     # FSL MNI152 1 mm
    ((91, 109, 91), (-90.0, -126.0, -72.0), 2.0),       # FSL MNI152 2 mm
    ((193, 229, 193), (-96.0, -132.0, -78.0), 1.0),     # ICBM 2009c (templateflow)
)
MNI_SHIFT_MM = 3.0


def on_known_mni_grid(vol) -> bool:
    """True when the (RAS+) grid of ``vol`` is one of KNOWN_MNI_GRIDS (0.5 mm tolerance)."""
    for shape, origin, h in KNOWN_MNI_GRIDS:
        want = np.diag([h, h, h, 1.0])
        want[:3, 3] = origin
        if tuple(vol.shape) == shape and np.allclose(vol.affine, want, atol=0.5):
            return True
    return False


def header_says_mni(path) -> bool:
    import nibabel as nib

    try:
        h = nib.load(str(path)).header
        return int(h["sform_code"]) == 4 or int(h["qform_code"]) == 4
    except Exception:
        return False


def require_mni_segmentation(vol, path, space: str = "auto") -> None:
    """One sentence unless a segmentation given alone may be read as MNI152."""
    if space == "mni" or header_says_mni(path) or on_known_mni_grid(vol):
        return
    raise InputError(
        f"'{path}' is not known to be in MNI152 space: its header does not say so (sform/qform "
        "code 4) and its grid is not a known MNI152 template grid; give the patient's scan with "
        "--scan to register it, or --space mni if it already is in MNI152 space.")


# ----------------------------------------------------------------------------- the fit
@dataclass
class NativeFit:
    """A native-space fit (see docs/dev/native_api.md)."""

    estimate: object
    registration: object
    space: str
    seg: object
    scan: object
    origin_native_mm: np.ndarray
    files: dict = field(default_factory=dict)
    u_native: np.ndarray | None = None
    labels_native: np.ndarray | None = None
    timings_s: dict = field(default_factory=dict)

    @property
    def origin_mni_mm(self) -> np.ndarray:
        return np.asarray(self.estimate.origin_mm, float)

    def u_on_scan(self) -> np.ndarray:
        """Fitted u on the scan's RAS+ grid (viewer overlay) -> (scan.shape) float32."""
        return _u_to(self, self.scan.shape, self.scan.affine)

    def extra_dict(self) -> dict:
        reg = self.registration
        return {"space": self.space,
                "origin_native_mm": [float(v) for v in self.origin_native_mm],
                "registration": reg.summary() if reg is not None else None}


def _u_to(nf, shape, affine) -> np.ndarray:
    """u (database grid) -> ``shape``/``affine`` (native RAS), computed on the box around the
    mapped support of u only."""
    est = nf.estimate
    if nf.registration is None:
        from engine.tumor.export import on_grid

        return on_grid(est.u, est.anatomy.affine, shape, affine)
    out = np.zeros(tuple(int(s) for s in shape), np.float32)
    sup = np.argwhere(est.u >= 1e-3)
    if not len(sup):
        return out
    pts = nf.registration.mni_to_native(est.anatomy.vox_to_mm(sup[:: max(1, len(sup) // 4000)]))
    inv = np.linalg.inv(affine)
    v = pts @ inv[:3, :3].T + inv[:3, 3]
    pad = np.ceil(2 * est.anatomy.spacing_mm / np.sqrt((affine[:3, :3] ** 2).sum(0))) + 2
    lo = np.clip(np.floor(v.min(0) - pad).astype(int), 0, out.shape)
    hi = np.clip(np.ceil(v.max(0) + pad).astype(int) + 1, 0, out.shape)
    if np.any(hi <= lo):
        return out
    shift = np.eye(4)
    shift[:3, 3] = lo
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = nf.registration.to_native(
        est.u, est.anatomy.affine, tuple(hi - lo), affine @ shift, order=1)
    return out


def _observation_in_mni(reg, seg):
    """The segmentation's core / whole masks warped to the 1 mm MNI grid (trilinear >= 1/2),
    computed on the box around the mapped tumor only."""
    from engine.imaging.labels import core_mask, whole_mask
    from engine.imaging.registration import template_volume
    from engine.tumor.observation import Observation

    t = template_volume()
    name = seg.path or seg.name
    whole_n = whole_mask(seg.data)
    idx = np.argwhere(whole_n)
    pts = reg.native_to_mni(seg.vox_to_mm(idx[:: max(1, len(idx) // 5000)]))
    v = t.mm_to_vox(pts)
    lo = np.clip(np.floor(v.min(0)).astype(int) - 8, 0, t.shape)
    hi = np.clip(np.ceil(v.max(0)).astype(int) + 9, 0, t.shape)
    core = np.zeros(t.shape, bool)
    whole = np.zeros(t.shape, bool)
    if np.all(hi > lo):
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        shift = np.eye(4)
        shift[:3, 3] = lo
        sub = (tuple(int(x) for x in hi - lo), t.affine @ shift)
        core[box] = reg.to_mni(core_mask(seg.data).astype(np.float32), seg.affine, 1, *sub) >= 0.5
        whole[box] = reg.to_mni(whole_n.astype(np.float32), seg.affine, 1, *sub) >= 0.5
    if not whole.any():
        raise InputError(f"The tumor in '{name}' vanishes when mapped to MNI152 space (it lies "
                         "outside the registered brain).")
    return Observation(core & whole | core, whole | core, t.affine, t.shape, t.affine,
                       [seg.path or Path("(in memory)")])


def _check_seg_in_brain(scan, seg) -> None:
    """A segmentation whose tumor lies mostly outside the scan's head/brain foreground."""
    from engine.imaging import resample
    from engine.imaging.registration import foreground

    fg = foreground(scan)
    on_scan = resample(seg, None, scan.shape, scan.affine, order=0) > 0
    n = int(on_scan.sum())
    if n == 0 or (fg & on_scan).sum() < 0.5 * n:
        frac = 0.0 if n == 0 else 100.0 * (fg & on_scan).sum() / n
        raise InputError(f"The tumor labels in '{seg.path or seg.name}' fall outside the brain "
                         f"of the scan '{scan.path or scan.name}' (only {frac:.0f} % of them lie "
                         "on it).")


def personalize_native(patient, db, *, days: float = 100.0, top_k: int = 50,
                       refine: bool = True, options=None, progress=None,
                       cancel=None) -> NativeFit:
    """Register ``patient.scan`` (its ``seg`` masked out), fit in MNI152 space with the fit
    service, map u / labels / origin back. Renders every output file into ``nf.files``."""
    from engine.imaging.registration import RegOptions, register
    from engine.tumor import service

    progress = progress or Progress()
    cancel = cancel or CancelToken()
    scan, seg = patient.scan, patient.seg
    if scan is None or seg is None:
        raise InputError("A native fit needs both the patient's scan and its segmentation.")
    _check_seg_in_brain(scan, seg)
    holder = {}

    def prepare(request, prog, canc):
        t = time.perf_counter()
        reg = register(scan, seg, options or RegOptions(), progress=progress.sub(0, 0.45),
                       cancel=canc)
        t_reg = time.perf_counter() - t
        progress.update(0.45, "segmentation to MNI152")
        t = time.perf_counter()
        if reg.quality.get("already_mni"):
            from engine.tumor.observation import observation_from_volume

            obs, space = observation_from_volume(seg), "mni"
        else:
            obs, space = _observation_in_mni(reg, seg), "native"
        holder.update(reg=reg, space=space)
        return service.Prepared(obs, facts={"registration_ncc_after": reg.metric_after},
                                timings_s={"register": t_reg,
                                           "to_mni": time.perf_counter() - t})

    req = service.FitRequest(volume=seg, T_days=days, top_k=top_k, refine=refine)
    res = service.fit(db, req, prepare=prepare, progress=progress.sub(0.45, 0.95),
                      cancel=cancel)
    est, reg, space = res.estimate, holder["reg"], holder["space"]
    progress.update(0.95, "mapping back to the native grid")
    t = time.perf_counter()
    use = None if space == "mni" else reg
    origin_native = (reg.mni_to_native(est.origin_mm) if use is not None
                     else np.asarray(est.origin_mm, float))
    nf = NativeFit(est, use, space, seg, scan, origin_native)
    nf.u_native = _u_to(nf, seg.file_shape, seg.file_affine)
    from engine.tumor.export import labels_from_u

    nf.labels_native = labels_from_u(nf.u_native, est.thresholds)
    est.timings_s["to_native"] = time.perf_counter() - t
    nf.registration = reg
    nf.files = _render(nf, res.files)
    progress.done(f"Dice core {est.dice_core:.2f}, whole {est.dice_whole:.2f}")
    return nf


def _render(nf, files: dict) -> dict:
    """Every output: the service's files (MNI versions renamed *_mni), native NIfTIs on the
    segmentation's own grid, scan_mni.nii.gz, transforms, estimate.json/.csv with the native
    fields."""
    from engine.imaging.reg_files import transform_bytes
    from engine.imaging.registration import template_volume
    from engine.tumor.export import _nifti_gz

    out = {}
    for name in ("tumor_concentration.nii.gz", "tumor_labels.nii.gz"):
        out[name.replace(".nii.gz", "_mni.nii.gz")] = files[name]
    seg = nf.seg
    out["tumor_concentration.nii.gz"] = _nifti_gz(nf.u_native, seg.file_affine)
    out["tumor_labels.nii.gz"] = _nifti_gz(nf.labels_native, seg.file_affine)
    reg = nf.registration
    t = template_volume()
    if reg is not None and reg.scan_mni is not None:
        out["scan_mni.nii.gz"] = _nifti_gz(reg.scan_mni.astype(np.float32), t.affine)
    if reg is not None and nf.space == "native":
        out.update(transform_bytes(reg))
    d = json.loads(files["estimate.json"])
    d.update(nf.extra_dict())
    d["timings_s"] = {k: float(v) for k, v in nf.estimate.timings_s.items()}
    out["estimate.json"] = (json.dumps(d, indent=2, allow_nan=False) + "\n").encode()
    rows = list(csv.DictReader(io.StringIO(files["estimate.csv"].decode())))
    for r in rows:
        for k, v in zip("xyz", nf.origin_native_mm):
            r[f"origin_native_{k}_mm"] = float(v)
        r["space"] = nf.space
        r["time_register_s"] = float(nf.estimate.timings_s.get("register", 0.0))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    out["estimate.csv"] = buf.getvalue().encode()
    return out


def write_files(files: dict, outdir) -> list[Path]:
    """Every file atomically (db/atomic.py); all were rendered in memory before."""
    from db.atomic import write_bytes
    from engine.tumor.export import check_outdir

    out = check_outdir(outdir)
    paths = []
    for name in sorted(files):
        write_bytes(out / name, files[name])
        paths.append(out / name)
    return paths
