"""Brain anatomy for the tumor solver: MNI ICBM152 2009 gray/white-matter maps on a regular grid.

The maps are derived into ``resources/atlas/atlas_<f>mm.npz`` by ``resources/derive_atlas.py``
(area-averaged from the 1 mm maps in the nilearn wheel). Grids are RAS+; ``affine`` maps voxel
(i, j, k) to MNI mm. ``brain`` is where tumor cells may live (gm + wm >= 0.5); everything else
(CSF, background) gets no cells and no flux.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.jobs import InputError

ATLAS_DIR = Path(__file__).resolve().parents[2] / "resources" / "atlas"
BRAIN_THRESHOLD = 0.5   # gm + wm >= this: tissue (else CSF / background)
GM_FACTOR = 0.1         # gray matter diffuses 10x slower than white matter


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Tissue maps on one grid. Arrays are (X, Y, Z); ``m`` = wm + gm / 10 inside the brain."""

    wm: np.ndarray          # (X, Y, Z) float32 in [0, 1]
    gm: np.ndarray          # (X, Y, Z) float32 in [0, 1]
    affine: np.ndarray      # (4, 4) voxel -> MNI mm
    spacing_mm: float
    brain: np.ndarray       # (X, Y, Z) bool
    m: np.ndarray           # (X, Y, Z) float32, 0 outside the brain
    atlas_hash: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.wm.shape)

    @property
    def voxel_cm3(self) -> float:
        return (self.spacing_mm / 10.0) ** 3

    def vox_to_mm(self, ijk) -> np.ndarray:
        """(..., 3) voxel coordinates -> (..., 3) MNI mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def mm_to_vox(self, xyz) -> np.ndarray:
        """(..., 3) MNI mm -> (..., 3) float voxel coordinates."""
        xyz = np.asarray(xyz, dtype=np.float64)
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]


def make_anatomy(wm, gm, affine, spacing_mm: float, atlas_hash: str | None = None) -> Anatomy:
    """Build an Anatomy from probability maps (X, Y, Z) in [0, 1] (tests build synthetic ones)."""
    wm = np.clip(np.asarray(wm, dtype=np.float32), 0, 1)
    gm = np.clip(np.asarray(gm, dtype=np.float32), 0, 1)
    if wm.shape != gm.shape or wm.ndim != 3:
        raise ValueError(f"wm {wm.shape} and gm {gm.shape} must be equal 3-D shapes")
    brain = (wm + gm) >= BRAIN_THRESHOLD
    m = np.where(brain, wm + GM_FACTOR * gm, 0).astype(np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if atlas_hash is None:
        h = hashlib.sha256()
        for a in (wm, gm, affine):
            h.update(np.ascontiguousarray(a).tobytes())
        atlas_hash = h.hexdigest()[:16]
    for a in (wm, gm, brain, m):
        a.setflags(write=False)
    return Anatomy(wm=wm, gm=gm, affine=affine, spacing_mm=float(spacing_mm), brain=brain,
                   m=m, atlas_hash=atlas_hash)


def available_spacings() -> list[float]:
    return sorted(float(p.stem.split("_")[1][:-2]) for p in ATLAS_DIR.glob("atlas_*mm.npz"))


@functools.lru_cache(maxsize=8)
def load_anatomy(spacing_mm: float) -> Anatomy:
    """The MNI anatomy at ``spacing_mm`` (one of the derived grids: 1.5, 2, 3, 4, 8 mm)."""
    spacing = float(spacing_mm)
    path = ATLAS_DIR / f"atlas_{spacing:g}mm.npz"
    if not path.is_file():
        raise InputError(f"No atlas grid at {spacing:g} mm in {ATLAS_DIR} (available: "
                         f"{', '.join(f'{s:g}' for s in available_spacings()) or 'none'} mm; "
                         "run resources/derive_atlas.py).")
    try:
        with np.load(path) as z:
            wm, gm, affine = z["wm"], z["gm"], z["affine"]
    except Exception as err:
        raise InputError(f"The atlas file {path} cannot be read ({err}).") from None
    h = hashlib.sha256()
    for a in (wm, gm, affine):
        h.update(np.ascontiguousarray(a).tobytes())
    return make_anatomy(wm / 255.0, gm / 255.0, affine, spacing, h.hexdigest()[:16])
