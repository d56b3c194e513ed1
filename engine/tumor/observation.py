"""Observed tumor: read a BraTS label map (or core + whole masks), validate it, and resample it
onto the database grid (partial-volume fraction >= 1/2 for finer inputs, nearest voxel for
coarser ones). Shapes: masks (X, Y, Z) bool; affines (4, 4) voxel -> MNI mm (RAS+).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.jobs import InputError, Progress

MIN_GRID_COVERAGE = 0.5     # the input grid must cover at least half of the MNI brain box
MIN_IN_BRAIN = 0.5          # at least half of the tumor must lie on brain tissue


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
    """An Observation from a loaded BraTS label Volume (load_volume(path, "labels"))."""
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
