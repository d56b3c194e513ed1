#!/usr/bin/env python3
"""Derive resources/atlas/atlas_{1.5,2,3,4,8}mm.npz from the MNI ICBM152 2009 tissue maps in nilearn.

Source: ``nilearn/datasets/data/mni_icbm152_{gm,wm}_tal_nlin_sym_09a_converted.nii.gz``
(197x233x189 voxels of 1 mm, uint8 probabilities 0..255, RAS+ affine to MNI mm).
For each spacing f (mm, an integer multiple of 1 mm): crop the 1 mm volume to the bounding
box of the tissue (gm + wm > 0) plus a margin of f voxels, pad to a multiple of f, average
every f x f x f block (area average = partial-volume fraction), store uint8 round(255 p).
The coarse voxel (i, j, k) is the mean of 1 mm voxels f*i .. f*i+f-1 (after the crop), so its
centre is at 1 mm index start + f*i + (f-1)/2: ``affine = A1 @ T(start + (f-1)/2) @ S(f)``.
A half-integer spacing (1.5 mm) first splits every 1 mm voxel into 2x2x2 voxels of 0.5 mm
(exact, values repeated; half-voxel h is centred at 1 mm index h/2 - 1/4) and then averages
blocks of 2f half-voxels, which is the same area average.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "atlas"
SPACINGS_MM = (1.5, 2, 3, 4, 8)

PROVENANCE = """# MNI ICBM152 2009 tissue probability maps, downsampled

- **Source**: `nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz` and
  `..._wm_tal_nlin_sym_09a_converted.nii.gz` from the `nilearn` wheel (version {version}),
  197x233x189 voxels of 1 mm, uint8 probabilities 0..255, RAS+ affine to MNI mm.
  sha256: gm `{sha_gm}`, wm `{sha_wm}`.
- **Original data**: MNI ICBM152 non-linear symmetric 2009a template, VS Fonov, AC Evans,
  RC McKinstry, CR Almli, DL Collins (NeuroImage 2009/2011).
  Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal
  Neurological Institute, McGill University. Permission to use, copy, modify, and distribute
  this software and its documentation for any purpose and without fee is hereby granted,
  provided that the above copyright notice appear in all copies. The authors and McGill
  University make no representations about the suitability of this software for any
  purpose. It is provided "as is" without express or implied warranty. The authors are not
  responsible for any data loss, equipment damage, property loss, or injury to subjects or
  patients resulting from the use or misuse of this software package.
- **Derived** by `resources/derive_atlas.py`: for each spacing f in {spacings} mm, crop the
  1 mm maps to the bounding box of gm + wm > 0 plus a margin of f voxels, pad to a multiple
  of f, average each f^3 block (partial-volume fraction), round to uint8 0..255.
  Each `atlas_<f>mm.npz` holds `wm`, `gm` (X, Y, Z) uint8 and `affine` (4, 4) float64 mapping
  voxel (i, j, k) to MNI mm (RAS+; the voxel centre is the centre of its 1 mm block).
{table}
- **Used by**: `engine/tumor/anatomy.py` (`load_anatomy(spacing_mm)`): the simulation grid of
  the tumor solver (tiny preset 8 mm, demo 4 mm, standard 3 mm).
"""


def source_paths() -> tuple[Path, Path]:
    import nilearn

    base = Path(nilearn.__file__).resolve().parent / "datasets" / "data"
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    return base / stem.format("gm"), base / stem.format("wm")


def downsample(vol: np.ndarray, start: np.ndarray, stop: np.ndarray, f: int) -> np.ndarray:
    """Block-average vol[start:stop] (stop - start divisible by f) by f along each axis."""
    sub = vol[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]].astype(np.float64)
    X, Y, Z = (sub.shape[0] // f, sub.shape[1] // f, sub.shape[2] // f)
    return sub.reshape(X, f, Y, f, Z, f).mean(axis=(1, 3, 5))


def derive(gm: np.ndarray, wm: np.ndarray, affine1: np.ndarray, f: int) -> dict:
    """gm, wm (197, 233, 189) float in [0, 1] -> dict of uint8 maps and the coarse affine."""
    tissue = (gm + wm) > 0
    idx = np.argwhere(tissue)
    lo = idx.min(axis=0) - f
    hi = idx.max(axis=0) + 1 + f
    size = hi - lo
    size = ((size + f - 1) // f) * f
    # pad the 1 mm volume with zeros so the crop never leaves it
    pad = f * 2
    gm_p = np.pad(gm, pad)
    wm_p = np.pad(wm, pad)
    start = lo + pad
    stop = start + size
    out = {}
    for name, vol in (("gm", gm_p), ("wm", wm_p)):
        out[name] = np.clip(np.rint(downsample(vol, start, stop, f) * 255), 0, 255).astype(np.uint8)
    shift = np.eye(4)
    shift[:3, 3] = lo + (f - 1) / 2.0          # 1 mm index of coarse voxel 0's centre
    scale = np.diag([f, f, f, 1.0])
    out["affine"] = affine1 @ shift @ scale
    return out


def _split(vol: np.ndarray) -> np.ndarray:
    """(X, Y, Z) 1 mm -> (2X, 2Y, 2Z) 0.5 mm with each value repeated (exact)."""
    return vol.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)


def _half_voxels() -> np.ndarray:
    """0.5 mm voxel index -> 1 mm voxel index: h / 2 - 1/4."""
    m = np.diag([0.5, 0.5, 0.5, 1.0])
    m[:3, 3] = -0.25
    return m


def main() -> int:
    import nibabel as nib
    import nilearn

    sys.path.insert(0, str(HERE.parent))
    from db.atomic import write_npz, write_text

    p_gm, p_wm = source_paths()
    img_gm, img_wm = nib.load(str(p_gm)), nib.load(str(p_wm))
    if not np.allclose(img_gm.affine, img_wm.affine):
        raise SystemExit("gm and wm affines differ")
    gm = np.asarray(img_gm.dataobj, dtype=np.float64) / 255.0
    wm = np.asarray(img_wm.dataobj, dtype=np.float64) / 255.0
    rows = ["\n  | file | shape | voxels with gm+wm >= 0.5 | sha256 (first 16) |",
            "  |---|---|---|---|"]
    for f in SPACINGS_MM:
        if float(f).is_integer():
            d = derive(gm, wm, img_gm.affine, int(f))
        else:  # split into 0.5 mm voxels, then average blocks of 2f of them
            half = img_gm.affine @ _half_voxels()
            d = derive(_split(gm), _split(wm), half, int(round(2 * f)))
        path = OUT / f"atlas_{f:g}mm.npz"
        write_npz(path, wm=d["wm"], gm=d["gm"], affine=d["affine"])
        n_brain = int(((d["wm"].astype(int) + d["gm"]) >= 128).sum())
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        rows.append(f"  | `{path.name}` | {d['wm'].shape} | {n_brain} | `{sha}` |")
        print(f"wrote {path}: {d['wm'].shape}, {n_brain} brain voxels, "
              f"{path.stat().st_size / 1e3:.0f} kB")
    write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
        version=nilearn.__version__, spacings=", ".join(map(str, SPACINGS_MM)),
        sha_gm=hashlib.sha256(p_gm.read_bytes()).hexdigest(),
        sha_wm=hashlib.sha256(p_wm.read_bytes()).hexdigest(), table="\n".join(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
