"""Write a fit: estimate.json, estimate.csv, tumor_concentration.nii.gz, tumor_labels.nii.gz.

The NIfTI outputs lie on the input segmentation's own grid and affine (the file's voxel order,
not the RAS+-reoriented one): the fitted u (database grid) is interpolated trilinearly there;
labels are core = 1 (u >= core threshold) and whole-only = 2 (whole <= u < core).
Everything is computed in memory first and each file is written atomically (db/atomic.py), so a
failure before the writes leaves OUTDIR untouched and a reader never sees a torn file.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np

from engine.jobs import InputError

FILES = ("estimate.json", "estimate.csv", "tumor_concentration.nii.gz", "tumor_labels.nii.gz")
U_MIN = 1e-3     # concentrations below this are written as 0 (outside the interpolated box)
CSV_FIELDS = ("mu1_cm", "mu2", "Dw_cm2_per_day", "rho_per_day", "T_days", "lambda_mm", "tau",
              "origin_x_mm", "origin_y_mm", "origin_z_mm", "dice_core", "dice_whole", "score",
              "threshold_core", "threshold_whole", "mu1_cm_std", "mu2_std",
              "Dw_cm2_per_day_std", "rho_per_day_std", "origin_rms_mm", "n_plausible",
              "time_load_s", "time_query_s", "time_rerank_s", "time_refine_s", "time_total_s",
              "database", "source", "version")


def on_grid(u, src_affine, shape, affine) -> np.ndarray:
    """Trilinear u (database grid, ``src_affine``) onto ``shape``/``affine``; only the box where
    u >= U_MIN is interpolated, zeros elsewhere. -> (shape) float32."""
    from engine.imaging import resample

    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, dtype=np.float32)
    nz = np.argwhere(u >= U_MIN)
    if not len(nz):
        return out
    lo_v, hi_v = nz.min(0) - 1, nz.max(0) + 1
    corners = np.array([[a, b, c] for a in (lo_v[0], hi_v[0]) for b in (lo_v[1], hi_v[1])
                        for c in (lo_v[2], hi_v[2])], dtype=float)
    mm = corners @ src_affine[:3, :3].T + src_affine[:3, 3]
    inv = np.linalg.inv(affine)
    d = mm @ inv[:3, :3].T + inv[:3, 3]
    lo = np.clip(np.floor(d.min(0)).astype(int), 0, shape)
    hi = np.clip(np.ceil(d.max(0)).astype(int) + 1, 0, shape)
    if np.any(hi <= lo):
        return out
    shift = np.eye(4)
    shift[:3, 3] = lo
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = resample(
        u, src_affine, tuple(hi - lo), np.asarray(affine, float) @ shift, order=1)
    return out


def labels_from_u(u, thresholds) -> np.ndarray:
    """core = 1, whole-only = 2, else 0 (uint8)."""
    lab = np.zeros(u.shape, dtype=np.uint8)
    lab[u >= np.float32(thresholds["whole"])] = 2
    lab[u >= np.float32(thresholds["core"])] = 1
    return lab


def csv_row(d: dict) -> dict:
    u = d["uncertainty"]
    t = d["timings_s"]
    row = {k: d[k] for k in ("mu1_cm", "mu2", "Dw_cm2_per_day", "rho_per_day", "T_days",
                             "lambda_mm", "tau", "dice_core", "dice_whole", "score",
                             "database", "source", "version")}
    row.update(origin_x_mm=d["origin_mm"][0], origin_y_mm=d["origin_mm"][1],
               origin_z_mm=d["origin_mm"][2], threshold_core=d["thresholds"]["core"],
               threshold_whole=d["thresholds"]["whole"],
               origin_rms_mm=u["origin_mm"]["rms_distance"], n_plausible=u["n_plausible"])
    for k in ("mu1_cm", "mu2", "Dw_cm2_per_day", "rho_per_day"):
        row[f"{k}_std"] = u[k]["std"]
    for k in ("load", "query", "rerank", "refine", "total"):
        row[f"time_{k}_s"] = t.get(k, 0.0)
    return {k: row[k] for k in CSV_FIELDS}


def _nifti_gz(data, affine) -> bytes:
    """A .nii.gz as bytes: nibabel's NIfTI-1 header (qform / sform from ``affine``, mm units)
    followed by the raw Fortran-order voxels, gzip level 1 (skips nibabel's chunked writer,
    which cost as much as the compression)."""
    import nibabel as nib

    data = np.asarray(data)
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=float))
    img.header.set_xyzt_units("mm")
    img.update_header()
    hdr = img.header
    hdr.set_data_offset(352)
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    raw = hdr.binaryblock + b"\0" * 4 + data.astype(hdr.get_data_dtype()).tobytes(order="F")
    return gzip.compress(raw, compresslevel=1)


def render_text(estimate) -> tuple[bytes, bytes]:
    """estimate.json and estimate.csv as bytes."""
    d = estimate.to_dict()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerow(csv_row(d))
    return (json.dumps(d, indent=2, allow_nan=False) + "\n").encode(), buf.getvalue().encode()


def render_nifti(estimate, shape=None, affine=None) -> tuple[bytes, bytes]:
    """tumor_concentration.nii.gz and tumor_labels.nii.gz as bytes, on the observation's file
    grid unless ``shape``/``affine`` are given."""
    obs = estimate.observation
    shape = shape if shape is not None else obs.file_shape
    affine = affine if affine is not None else obs.file_affine
    from concurrent.futures import ThreadPoolExecutor

    u = on_grid(estimate.u, estimate.anatomy.affine, shape, affine)
    lab = labels_from_u(u, estimate.thresholds)
    with ThreadPoolExecutor(2) as pool:        # zlib releases the GIL: both files at once
        conc, labels = pool.map(lambda a: _nifti_gz(a, affine), (u, lab))
    return conc, labels


def render(estimate, shape=None, affine=None, before_text=None) -> dict[str, bytes]:
    """All output files as {name: bytes}: the NIfTIs, then ``before_text()`` if given (the
    service stamps its final timings there), then estimate.json / .csv."""
    conc, labels = render_nifti(estimate, shape, affine)
    if before_text is not None:
        before_text()
    js, cs = render_text(estimate)
    return {"estimate.json": js, "estimate.csv": cs, "tumor_concentration.nii.gz": conc,
            "tumor_labels.nii.gz": labels}


def check_outdir(outdir) -> Path:
    """Refuse an OUTDIR that is a file (before any work, so nothing is written)."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"The output folder '{out}' is a file; choose a folder.")
    return out


def write_outputs(estimate, outdir, files: dict[str, bytes] | None = None) -> list[Path]:
    """Render (unless given) then write every file atomically; returns the written paths."""
    from db.atomic import write_bytes

    out = check_outdir(outdir)
    files = files if files is not None else render(estimate)
    paths = []
    for name in FILES:
        if name in files:
            write_bytes(out / name, files[name])
            paths.append(out / name)
    return paths
