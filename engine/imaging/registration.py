"""Register a patient scan to the bundled MNI152 T1 template (no Qt).

(over ~400 lines: one transform representation, its two backends' glue, checks and cache.)

Transform representation (library-independent, RAS millimetres everywhere):
    forward  (MNI point x -> native point y):  y = A (x + w(x))
    inverse  (native point y -> MNI point x):  z = A^-1 y,  x = z + w_inv(z)
``A`` (4, 4) is the rigid/affine part, ``w`` / ``w_inv`` (3, X, Y, Z) float32 displacement
fields in mm on a coarse template grid (``field_affine``); zero for an affine-only result.
This is exactly ANTs' composition (fwdtransforms = [warp, affine], invtransforms =
[affine^-1, inverse warp]) and the SimpleITK backend's (moving-initial affine, then a
B-spline), so both are saved in the standard ITK files: ``transform_affine.mat``
(AffineTransform, LPS), ``transform_warp.nii.gz`` and ``transform_inverse_warp.nii.gz``
(ITK displacement fields, LPS components).

Registration runs at ``level_mm`` (2 mm) with the dilated tumor masked out of the metric;
a skull-stripped scan (foreground < 2.2 litres) registers against the template's brain.
Results are cached by sha256(scan + segmentation + options) in the user data dir.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.imaging.transform import (F, TEMPLATE_PATH, Registration, apply_affine,  # noqa: F401
                                      ball, foreground, grid_like, grid_points, pull, sample,
                                      template_brain_mask, template_volume)
from engine.jobs import CancelToken, InputError, Progress

VERSION = "native-reg-1"
MAX_THREADS = 2
STRIPPED_LITRES = 2.2      # foreground below this: skull-stripped (brain only)
MIN_LITRES = 0.4           # foreground below this (or above MAX): not a head
MAX_LITRES = 12.0
MIN_COVERAGE = 0.85        # fraction of the template brain the scan's field of view must cover
MIN_NCC = 0.35             # |NCC| inside the template brain after the affine stage
GOOD_NCC = 0.6             # below this, mirrors along all three axes are tried
MNI_SHIFT_MM = 3.0         # an affine moving the brain less than this: already in MNI152
MIRROR_MARGIN = 0.05       # a mirrored copy matching this much better: flipped header
AXES = ("left-right", "anterior-posterior", "superior-inferior")


@dataclass(frozen=True)
class RegOptions:
    """library "ants" | "sitk"; method "syn" (deformable) | "affine"; level_mm: working grid
    (mm); iterations: deformable iterations per level (None: library default for the level);
    affine_iterations: per level of the affine stage; cache: reuse a cached result."""

    library: str = "ants"
    method: str = "syn"
    level_mm: float = 2.0
    iterations: tuple | None = None
    affine_iterations: tuple | None = None
    cache: bool = True
    mask_tumor: bool = True

    def key(self) -> dict:
        d = asdict(self)
        d.pop("cache")
        d["iterations"] = list(self.iterations) if self.iterations else None
        d["affine_iterations"] = list(self.affine_iterations) if self.affine_iterations else None
        return d


def set_threads(n: int = MAX_THREADS) -> None:
    """ITK / ANTs / SimpleITK thread count (at most 2, the machine's budget), and a fixed
    ANTs random seed: antsRegistration otherwise seeds its metric sampling from the clock,
    so the same scan could register differently from one run to the next."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    os.environ.setdefault("ANTS_RANDOM_SEED", "1")
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    except Exception:  # pragma: no cover - SimpleITK missing
        pass


# ----------------------------------------------------------------------------- metrics
def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 0 else 0.0


def _metric_points(level_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) MNI mm of the template brain voxels at ``level_mm`` and the template there."""
    mask, aff = template_brain_mask(level_mm)
    pts = np.argwhere(mask) @ aff[:3, :3].T + aff[:3, 3]
    t = template_volume()
    return pts, sample(t.data, t.affine, pts, order=1)


def match(scan, to_native, level_mm: float = 4.0) -> tuple[float, float]:
    """(NCC, coverage): NCC of the scan against the template over the template brain points
    x inside the scan's field of view, the scan looked up at ``to_native(x)``, and the
    fraction of the template brain inside the field of view. Sign kept (T2 < 0)."""
    pts, tv = _metric_points(level_mm)
    q = to_native(pts)
    v = scan.mm_to_vox(q)
    inside = np.all((v >= -0.5) & (v <= np.array(scan.shape) - 0.5), axis=1)
    if inside.sum() < 100:
        return 0.0, float(inside.mean())
    sv = sample(scan.data.astype(np.float32), scan.affine, q[inside], order=1)
    return ncc(tv[inside], sv), float(inside.mean())


# ----------------------------------------------------------------------------- inputs

def describe_input(scan) -> dict:
    """Foreground volume (litres) and whether the scan looks skull-stripped."""
    fg = foreground(scan)
    litres = float(fg.sum() * scan.voxel_volume_cm3 / 1000.0)
    d = scan.data
    zero_frac = float((d[::2, ::2, ::2] == d.min()).mean())
    return {"foreground_litres": litres,
            "skull_stripped": bool(litres < STRIPPED_LITRES and zero_frac > 0.3)}


def input_hash(scan, seg, options: RegOptions) -> str:
    h = hashlib.sha256(VERSION.encode())
    for vol in (scan, seg):
        if vol is None:
            h.update(b"none")
            continue
        h.update(np.ascontiguousarray(vol.data).tobytes())
        h.update(np.ascontiguousarray(vol.affine, dtype=np.float64).tobytes())
    h.update(json.dumps(options.key(), sort_keys=True).encode())
    return h.hexdigest()


def cache_dir() -> Path:
    from db.store import data_dir

    return data_dir() / "registration_cache"


# ----------------------------------------------------------------------------- register
def register(scan, seg=None, options: RegOptions | None = None, *, progress=None,
             cancel=None) -> Registration:
    """Register ``scan`` (Volume, native) to the MNI152 T1; ``seg`` (labels Volume, any grid
    overlapping the scan) is dilated and excluded from the metric. A job (stage progress).
    Raises InputError (one sentence) when the registration fails: not a brain, a flipped
    header, a scan covering only part of the head."""
    from engine.imaging import reg_backends as backends, reg_files

    options = options or RegOptions()
    progress = progress or Progress()
    cancel = cancel or CancelToken()
    if options.library not in ("ants", "sitk") or options.method not in ("syn", "affine"):
        raise InputError(f"Unknown registration {options.library}/{options.method} (library "
                         "ants or sitk, method syn or affine).")
    set_threads()
    name = f"'{scan.path or scan.name}'"
    key = input_hash(scan, seg, options)
    progress.update(0.02, "preparing")
    if options.cache:
        hit = reg_files.load_cached(cache_dir() / key[:32])
        if hit is not None:
            hit.key, hit.cached, hit.scan = key, True, scan
            progress.done("registration (cached)")
            return hit
    info = describe_input(scan)
    if not MIN_LITRES <= info["foreground_litres"] <= MAX_LITRES:
        raise InputError(f"The scan {name} does not look like a brain: its foreground is "
                         f"{info['foreground_litres']:.2f} litres (a head or a skull-stripped "
                         "brain is about 1-6 litres).")
    before, _ = match(scan, lambda p: p)
    timings = {}
    t = time.perf_counter()
    job = backends.prepare(scan, seg, info["skull_stripped"], options)
    timings["prepare"] = time.perf_counter() - t
    cancel.check()
    progress.update(0.1, "affine")
    t = time.perf_counter()
    A = backends.affine(job, options)
    timings["affine"] = time.perf_counter() - t
    cancel.check()
    lin = Registration(A, None, None, np.eye(4))
    after_aff, coverage = match(scan, lin.mni_to_native)
    progress.update(0.35, "checking for a flipped header")
    mirror = {}
    if coverage >= MIN_COVERAGE:     # a partial field of view makes mirrors meaningless
        mirror = _mirror_checks(scan, job, options, only_lr=abs(after_aff) >= GOOD_NCC)
    for axis, val in mirror.items():
        if val > abs(after_aff) + MIRROR_MARGIN and val >= MIN_NCC:
            raise InputError(f"Registration of {name} failed: {axis} look flipped in its header "
                             f"(the mirrored scan matches the template better, NCC {val:.2f} "
                             f"vs {abs(after_aff):.2f}); fix the orientation in the header.")
    if abs(after_aff) < MIN_NCC:
        raise InputError(f"Registration of {name} failed: it does not look like a brain (match "
                         f"with the MNI152 template after alignment NCC {after_aff:.2f}, "
                         f"below {MIN_NCC}).")
    if coverage < MIN_COVERAGE:
        raise InputError(f"Registration of {name} failed: the scan covers only part of the head "
                         f"({100 * coverage:.0f} % of the template brain lies inside its field "
                         "of view).")
    cancel.check()
    pts, _ = _metric_points(4.0)
    shift = float(np.percentile(np.linalg.norm(apply_affine(A, pts) - pts, axis=1), 95))
    already_mni = shift < MNI_SHIFT_MM
    if already_mni:            # the image says it is in MNI152 space: no registration
        A = np.eye(4)
    w = w_inv = None
    field_affine = np.eye(4)
    if options.method == "syn" and not already_mni:
        progress.update(0.4, "deformable")
        t = time.perf_counter()
        w, w_inv, field_affine = backends.deformable(job, A, options, cancel)
        timings["deformable"] = time.perf_counter() - t
    reg = Registration(A, w, w_inv, field_affine, options.library,
                       "none" if already_mni else options.method, key=key)
    shutil.rmtree(job.tmp, ignore_errors=True)
    progress.update(0.9, "checking")
    after, coverage = match(scan, reg.mni_to_native)
    reg.quality = {"ncc_before": before, "ncc_affine": after_aff, "ncc_after": after,
                   "fov_coverage": coverage, "mirror_ncc": mirror, **info,
                   "affine_shift_p95_mm": shift, "already_mni": bool(already_mni),
                   "level_mm": options.level_mm}
    reg.scan = scan
    if info["skull_stripped"]:
        mask, maff = template_brain_mask(4.0)
        fg = pull(foreground(scan).astype(np.uint8), scan.affine, mask.shape, maff,
                   reg.mni_to_native, 0) > 0
        reg.quality["brain_dice"] = float(2 * (fg & mask).sum() / (fg.sum() + mask.sum()))
    reg.timings_s = timings
    if options.cache:
        reg.transforms = reg_files.save_cached(reg, cache_dir() / key[:32])
    progress.done(f"registered (NCC {before:.2f} -> {after:.2f})")
    return reg


def _mirror_checks(scan, job, options, only_lr: bool) -> dict:
    """NCC after the affine stage of the scan mirrored along each world axis (left-right only
    when the scan already matches): {axis name: ncc}."""
    from engine.imaging import reg_backends as backends

    out = {}
    for ax in ((0,) if only_lr else (0, 1, 2)):
        M = np.eye(4)
        M[ax, ax] = -1
        c = job.center
        M[ax, 3] = 2 * c[ax]
        A = backends.affine(job, options, mirror=M, coarse=True)
        reg = Registration(M @ A, None, None, np.eye(4))
        out[AXES[ax]] = abs(match(scan, reg.mni_to_native)[0])
    return out


def atlas_check(reg, tiles: int = 8) -> tuple[np.ndarray, object]:
    """Checkerboard of the registered scan and the template on the 1 mm template grid, both
    scaled to 0..1 by their 99th percentile in the brain -> (checker (197, 233, 189) float32,
    template Volume). Alternate cubes of ``tiles`` per axis come from either image."""
    t = template_volume()
    mask, _ = template_brain_mask(1.0)
    a = reg.scan_mni
    a = np.clip(a / max(1e-6, float(np.percentile(a[mask], 99))), 0, 1.2)
    b = np.clip(t.data / max(1e-6, float(np.percentile(t.data[mask], 99))), 0, 1.2)
    idx = np.indices(t.shape)
    size = np.array(t.shape) / tiles
    parity = sum((idx[i] // size[i]).astype(int) for i in range(3)) % 2
    return np.where(parity == 0, a, b).astype(np.float32), t
