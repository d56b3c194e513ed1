"""Registration transforms on disk (standard ITK files) and the registration cache.

A folder holds ``transform_affine.mat`` (ITK AffineTransform, LPS, MNI point -> native
point), ``transform_warp.nii.gz`` / ``transform_inverse_warp.nii.gz`` (ITK displacement
fields on the coarse template grid, LPS components; absent for an affine-only result) and
``registration.json`` (library, method, quality, timings). With antsApplyTransforms:
native scan -> MNI: ``-t transform_warp.nii.gz -t transform_affine.mat``; MNI -> native:
``-t [transform_affine.mat,1] -t transform_inverse_warp.nii.gz``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

NAMES = {"affine": "transform_affine.mat", "warp": "transform_warp.nii.gz",
         "inverse_warp": "transform_inverse_warp.nii.gz"}
META = "registration.json"


def write_transforms(reg, folder) -> dict:
    """Write the ITK files of ``reg`` into ``folder`` (a private temporary folder: callers
    publish it by renaming it, or copy the bytes with :func:`transform_bytes`)."""
    from engine.imaging.reg_backends import write_itk_affine, write_itk_field

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"affine": folder / NAMES["affine"]}
    write_itk_affine(reg.A, out["affine"])
    if reg.w is not None:
        for key, w in (("warp", reg.w), ("inverse_warp", reg.w_inv)):
            out[key] = folder / NAMES[key]
            write_itk_field(w, reg.field_affine, out[key])
    meta = {"library": reg.library, "method": reg.method, "quality": reg.quality,
            "timings_s": reg.timings_s, "key": reg.key}
    (folder / META).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return out


def transform_bytes(reg) -> dict[str, bytes]:
    """{file name: bytes} of the ITK transform files (for atomic output writes)."""
    with tempfile.TemporaryDirectory(prefix="reg_out_") as tmp:
        paths = write_transforms(reg, tmp)
        return {p.name: p.read_bytes() for p in paths.values()}


def read_transforms(folder):
    """A :class:`Registration` from a folder written by :func:`write_transforms`."""
    import SimpleITK as sitk

    from engine.imaging.reg_backends import _field_from_itk
    from engine.imaging.transform import F, Registration

    folder = Path(folder)
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    tx = sitk.AffineTransform(sitk.ReadTransform(str(folder / NAMES["affine"])))
    M = np.array(tx.GetMatrix()).reshape(3, 3)
    c = np.array(tx.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = M
    lps[:3, 3] = np.array(tx.GetTranslation()) + c - M @ c
    w = w_inv = None
    faff = np.eye(4)
    if (folder / NAMES["warp"]).exists():
        w, faff = _field_from_itk(folder / NAMES["warp"])
        w_inv, _ = _field_from_itk(folder / NAMES["inverse_warp"])
    reg = Registration(F @ lps @ F, w, w_inv, faff, meta["library"], meta["method"],
                       quality=meta["quality"], timings_s=meta["timings_s"], key=meta["key"])
    reg.transforms = {k: folder / v for k, v in NAMES.items() if (folder / v).exists()}
    return reg


def save_cached(reg, folder) -> dict:
    """Write into a temporary sibling folder, then rename it into place (all or nothing)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=folder.parent))
    try:
        write_transforms(reg, tmp)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return {}
    return {k: folder / v for k, v in NAMES.items() if (folder / v).exists()}


def load_cached(folder):
    """The cached Registration in ``folder``, or None (missing or unreadable: recompute)."""
    folder = Path(folder)
    if not (folder / META).is_file():
        return None
    try:
        return read_transforms(folder)
    except Exception:
        return None
