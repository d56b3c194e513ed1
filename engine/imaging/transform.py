"""The registration's transform representation and the grids it lives on (no Qt).

A :class:`Registration` maps MNI point x -> native point y = A (x + w(x)) and native -> MNI
z = A^-1 y, x = z + w_inv(z) (A affine, w / w_inv displacement fields on a template-aligned grid;
ANTs' own composition). Also: the bundled MNI152 template, its brain mask, and the grid helpers
(sampling, voxel-centre points) that the registration procedure (registration.py), its library
backends (reg_backends.py) and the ITK files (reg_files.py) share.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "resources" / "mni152" / "mni152_t1_1mm.nii.gz"
F = np.diag([-1.0, -1.0, 1.0, 1.0])   # RAS <-> LPS

@functools.lru_cache(maxsize=1)
def template_volume():
    """The bundled MNI152 T1 (1 mm, 197x233x189, RAS) as a Volume (float32 data)."""
    from engine.imaging import load_volume

    vol = load_volume(TEMPLATE_PATH, "scan")
    vol.data = vol.data.astype(np.float32)
    return vol


@functools.lru_cache(maxsize=4)
def template_brain_mask(spacing_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Template brain (gm + wm >= 0.3 of the bundled 2 mm atlas, closed over 4 mm and
    hole-filled: ventricles included) on a template-aligned grid of ``spacing_mm`` ->
    (mask (X, Y, Z) bool, affine (4, 4)). Finer grids interpolate the 2 mm mask (>= 1/2)."""
    from scipy import ndimage

    from engine.tumor.anatomy import load_anatomy

    a = load_anatomy(2.0)
    mask = (a.wm + a.gm) >= 0.3
    mask = ndimage.binary_closing(np.pad(mask, 2), ball(2))[2:-2, 2:-2, 2:-2]
    mask = ndimage.binary_fill_holes(mask)
    shape, affine = grid_like(template_volume(), spacing_mm)
    frac = sample(mask.astype(np.float32), a.affine, grid_points(shape, affine), order=1)
    return frac.reshape(shape) >= 0.5, affine


def ball(r: int) -> np.ndarray:
    g = np.indices((2 * r + 1,) * 3) - r
    return (g ** 2).sum(0) <= r * r


def grid_like(vol, spacing_mm: float) -> tuple[tuple, np.ndarray]:
    """A RAS grid covering ``vol``'s box with isotropic ``spacing_mm`` voxels."""
    lo = vol.vox_to_mm(np.zeros(3))
    hi = vol.vox_to_mm(np.array(vol.shape) - 1)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    shape = tuple(int(np.floor((h - l) / spacing_mm)) + 1 for l, h in zip(lo, hi))
    affine = np.diag([spacing_mm] * 3 + [1.0])
    affine[:3, 3] = lo
    return shape, affine


def grid_points(shape, affine, k_slice: slice | None = None) -> np.ndarray:
    """(N, 3) RAS mm of every voxel centre of ``shape`` (C order), optionally slab k."""
    ks = np.arange(shape[2])[k_slice] if k_slice is not None else np.arange(shape[2])
    ijk = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), ks, indexing="ij"),
                   -1).reshape(-1, 3).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def sample(data, affine, pts_mm, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Values of ``data`` (X, Y, Z) with voxel->mm ``affine`` at (N, 3) mm points."""
    from scipy import ndimage

    inv = np.linalg.inv(affine)
    v = pts_mm @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(np.asarray(data), v.T, order=order, mode="constant",
                                   cval=cval, prefilter=False)


def apply_affine(a, pts) -> np.ndarray:
    return pts @ a[:3, :3].T + a[:3, 3]


# ----------------------------------------------------------------------------- result
@dataclass
class Registration:
    """A scan-to-template registration (see the module docstring for the maps)."""

    A: np.ndarray                       # (4, 4) RAS, MNI point -> native point (linear part)
    w: np.ndarray | None                # (3, X, Y, Z) float32 mm, or None (affine only)
    w_inv: np.ndarray | None
    field_affine: np.ndarray            # (4, 4) grid of w / w_inv
    library: str = "ants"
    method: str = "syn"
    quality: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    transforms: dict = field(default_factory=dict)   # name -> Path (ITK files)
    cached: bool = False
    key: str = ""
    scan: object = None                 # the registered Volume (for scan_mni)
    _scan_mni: np.ndarray | None = None

    @property
    def scan_mni(self) -> np.ndarray | None:
        """(197, 233, 189) float32: the registered scan on the 1 mm template grid (computed on
        first use)."""
        if self._scan_mni is None and self.scan is not None:
            self._scan_mni = self.to_mni(self.scan.data, self.scan.affine, order=1)
        return self._scan_mni

    @property
    def metric_before(self) -> float:
        return float(self.quality.get("ncc_before", 0.0))

    @property
    def metric_after(self) -> float:
        return float(self.quality.get("ncc_after", 0.0))

    def mni_to_native(self, xyz) -> np.ndarray:
        """(..., 3) MNI mm -> (..., 3) native RAS mm."""
        x = np.asarray(xyz, dtype=np.float64)
        p = x.reshape(-1, 3)
        if self.w is not None:
            p = p + np.stack([sample(c, self.field_affine, p) for c in self.w], 1)
        return apply_affine(self.A, p).reshape(x.shape)

    def native_to_mni(self, xyz) -> np.ndarray:
        """(..., 3) native RAS mm -> (..., 3) MNI mm."""
        y = np.asarray(xyz, dtype=np.float64)
        z = apply_affine(np.linalg.inv(self.A), y.reshape(-1, 3))
        if self.w_inv is not None:
            z = z + np.stack([sample(c, self.field_affine, z) for c in self.w_inv], 1)
        return z.reshape(y.shape)

    def to_mni(self, data, affine, order: int = 1, shape=None, affine_out=None) -> np.ndarray:
        """Native (X, Y, Z) array with its affine -> the template grid (default the 1 mm
        MNI152 grid) or ``shape``/``affine_out``; order 0 (labels) or 1."""
        if shape is None:
            t = template_volume()
            shape, affine_out = t.shape, t.affine
        return pull(data, affine, shape, affine_out, self.mni_to_native, order)

    def to_native(self, data_mni, affine_mni, shape, affine, order: int = 1) -> np.ndarray:
        """MNI (X, Y, Z) array with its affine -> a native grid ``shape``/``affine``."""
        return pull(data_mni, affine_mni, shape, affine, self.native_to_mni, order)

    def summary(self) -> dict:
        """The estimate.json "registration" block (strict JSON)."""
        return {"library": self.library, "method": self.method,
                "metric": "ncc inside the template brain",
                "metric_before": self.metric_before, "metric_after": self.metric_after,
                "quality": self.quality, "cached": bool(self.cached),
                "transforms": {k: Path(v).name for k, v in self.transforms.items()}}


def pull(data, src_affine, shape, out_affine, out_to_src, order) -> np.ndarray:
    """Resample ``data`` onto ``shape``/``out_affine``: each output voxel centre is mapped by
    ``out_to_src`` (mm -> mm) and sampled (slabs along k to bound memory)."""
    shape = tuple(int(s) for s in shape)
    data = np.asarray(data)
    out = np.zeros(shape, dtype=np.float32 if order else data.dtype)
    step = max(1, int(2_000_000 // max(1, shape[0] * shape[1])))
    src = data.astype(np.float32) if order else data
    for k0 in range(0, shape[2], step):
        sl = slice(k0, min(shape[2], k0 + step))
        pts = out_to_src(grid_points(shape, out_affine, sl))
        out[:, :, sl] = sample(src, src_affine, pts, order=order).reshape(
            shape[0], shape[1], sl.stop - sl.start)
    return out


def foreground(scan) -> np.ndarray:
    """(X, Y, Z) bool: voxels above 10 % of the 99th intensity percentile (head or brain)."""
    d = scan.data
    hi = float(np.percentile(d[::2, ::2, ::2], 99))
    return d > 0.1 * hi if hi > 0 else np.zeros(d.shape, bool)

