"""Open a patient: a BraTS folder, a scan and/or a segmentation file, or a DICOM series.

``load_patient(folder=, scan=, seg=, dicom=, series=) -> Patient`` (no Qt; job protocol).
BraTS names (case-insensitive, .nii or .nii.gz): 2023 ``*-t1n *-t1c *-t2w *-t2f *-seg``,
2021 ``*_t1 *_t1ce *_t2 *_flair *_seg``. The scan registered to MNI152 is T1 first, else T1c,
else T2, else FLAIR.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress

SUFFIXES = {"t1": ("-t1n", "_t1"), "t1c": ("-t1c", "_t1ce", "_t1gd"), "t2": ("-t2w", "_t2"),
            "flair": ("-t2f", "_flair"), "seg": ("-seg", "_seg")}
PREFERENCE = ("t1", "t1c", "t2", "flair")


@dataclass
class Patient:
    """scan: Volume (native scanner space) or None; seg: labels Volume on its own grid or None;
    seg_on_scan: (X, Y, Z) int16 labels on the scan's RAS+ grid (nearest) or None."""

    scan: object = None
    seg: object = None
    seg_on_scan: np.ndarray | None = None
    modality: str = ""
    found: dict = field(default_factory=dict)
    paths: list = field(default_factory=list)
    source: str = "files"


def _stem(p: Path) -> str:
    n = p.name.lower()
    for ext in (".nii.gz", ".nii"):
        if n.endswith(ext):
            return n[:-len(ext)]
    return ""


def find_brats_files(folder) -> dict[str, Path]:
    """{modality: Path} for the BraTS-named NIfTI files in ``folder`` (not recursive)."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = _stem(p)
        if not stem or not p.is_file():
            continue
        for key, sufs in SUFFIXES.items():
            if any(stem.endswith(s) for s in sufs) and key not in found:
                found[key] = p
    return found


def _describe(found: dict) -> str:
    return ", ".join(f"{k} ({v.name})" for k, v in found.items()) or "no BraTS-named NIfTI file"


def load_patient(folder=None, *, scan=None, seg=None, dicom=None, series=None,
                 progress=None, cancel=None) -> Patient:
    """Read and validate a patient; InputError (one sentence) for a folder missing the scan or
    the segmentation (naming what was found), scan and segmentation that do not overlap in
    world space, or any invalid file."""
    from engine.imaging import check_overlap, load_volume, resample

    progress = progress or Progress()
    cancel = cancel or CancelToken()
    p = Patient()
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"The patient folder '{folder}' does not exist or is not a folder.")
        found = find_brats_files(folder)
        p.found, p.source = found, "brats"
        mod = next((m for m in PREFERENCE if m in found), None)
        if mod is None:
            raise InputError(f"The patient folder '{folder}' has no scan (*-t1n, *-t1c, *-t2w, "
                             f"*-t2f or *_t1, *_t1ce, *_t2, *_flair); found: {_describe(found)}.")
        if "seg" not in found and seg is None:
            raise InputError(f"The patient folder '{folder}' has no segmentation (*-seg or "
                             f"*_seg); found: {_describe(found)}.")
        scan, p.modality = found[mod], mod
        seg = seg if seg is not None else found["seg"]
    if dicom is not None:
        from engine.imaging.dicom import read_series

        p.scan = read_series(dicom, series, progress=progress.sub(0, 0.5), cancel=cancel)
        p.source, p.paths = "dicom", [Path(dicom)]
    elif scan is not None:
        p.scan = load_volume(scan, "scan", progress=progress.sub(0, 0.5), cancel=cancel)
        p.paths.append(Path(scan))
        p.modality = p.modality or "t1"
    cancel.check()
    if seg is not None:
        p.seg = load_volume(seg, "labels", progress=progress.sub(0.5, 0.9), cancel=cancel)
        p.paths.append(Path(seg))
    if p.scan is not None and p.seg is not None:
        check_overlap(p.scan, p.seg)
        p.seg_on_scan = resample(p.seg, None, p.scan.shape, p.scan.affine, order=0)
    progress.done("patient loaded")
    return p
