"""DICOM series -> Volume / NIfTI with SimpleITK's series reader (keeps orientation, spacing).

``list_series(folder) -> [SeriesInfo]``, ``read_series(folder, uid=None) -> Volume``,
``import_dicom(folder, out, uid=None) -> Path`` (atomic NIfTI write). Shared by
`main.py tumor import-dicom` and the GUI's File > Import DICOM.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress

F = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class SeriesInfo:
    uid: str
    description: str
    n_files: int
    files: tuple


def _sitk():
    import SimpleITK as sitk

    from engine.imaging.registration import set_threads

    set_threads()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    return sitk


def list_series(folder) -> list[SeriesInfo]:
    """Every image series under ``folder`` (searched recursively)."""
    sitk = _sitk()
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"The DICOM folder '{folder}' does not exist or is not a folder.")
    dirs = [folder] + sorted(p for p in folder.rglob("*") if p.is_dir())
    out = []
    for d in dirs:
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(d)) or ():
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(d), uid)
            if not files:
                continue
            desc = ""
            try:
                r = sitk.ImageFileReader()
                r.SetFileName(files[0])
                r.ReadImageInformation()
                if r.HasMetaDataKey("0008|103e"):
                    desc = r.GetMetaData("0008|103e").strip()
            except RuntimeError:
                pass
            out.append(SeriesInfo(uid, desc, len(files), tuple(files)))
    return out


def read_series(folder, uid: str | None = None, *, progress=None, cancel=None):
    """Read one series into a Volume (RAS+, path = the folder). Several series and no ``uid``:
    InputError listing them; no image series: InputError."""
    from engine.imaging.nifti import from_array, _check_shape

    sitk = _sitk()
    progress = progress or Progress()
    cancel = cancel or CancelToken()
    folder = Path(folder)
    progress.update(0.05, "scanning the DICOM folder")
    series = list_series(folder)
    if not series:
        raise InputError(f"The folder '{folder}' holds no DICOM image series.")
    if uid is None:
        if len(series) > 1:
            listed = "; ".join(f"{s.uid} ({s.description or 'no description'}, {s.n_files} "
                               "files)" for s in series)
            raise InputError(f"The folder '{folder}' holds {len(series)} DICOM series; choose one "
                             f"with --series UID: {listed}.")
        chosen = series[0]
    else:
        chosen = next((s for s in series if s.uid == uid), None)
        if chosen is None:
            raise InputError(f"The folder '{folder}' has no DICOM series '{uid}' (it has "
                             f"{', '.join(s.uid for s in series)}).")
    cancel.check()
    progress.update(0.2, f"reading {chosen.n_files} slices")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    try:
        img = reader.Execute()
    except RuntimeError as err:
        msg = str(err).strip().splitlines()[-1][:120] if str(err).strip() else "unreadable"
        raise InputError(f"The DICOM series {chosen.uid} in '{folder}' cannot be read "
                         f"({msg}).") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"The DICOM series {chosen.uid} in '{folder}' is not a grey-value "
                         "image (it has several components per voxel).")
    arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))       # (i, j, k)
    _check_shape(folder, arr.shape)
    sp = np.array(img.GetSpacing(), float)
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection(), float).reshape(3, 3) * sp
    lps[:3, 3] = img.GetOrigin()
    data = arr.astype(np.float32) if arr.dtype.kind == "f" or arr.dtype.itemsize > 2 else arr
    if not np.all(np.isfinite(data)):
        raise InputError(f"The DICOM series {chosen.uid} in '{folder}' has non-finite values.")
    vol = from_array(data, F @ lps, "scan", folder)
    progress.done(f"read DICOM series ({vol.shape[0]} x {vol.shape[1]} x {vol.shape[2]})")
    return vol


def import_dicom(folder, out, uid: str | None = None, *, progress=None, cancel=None) -> Path:
    """Read a series and write it as NIfTI (file orientation as read, scanner space: sform and
    qform code 1) atomically -> the written path."""
    import nibabel as nib

    from db.atomic import write_with

    out = Path(out)
    name = out.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise InputError(f"The output '{out}' must end in .nii or .nii.gz.")
    vol = read_series(folder, uid, progress=progress, cancel=cancel)
    data = np.asarray(vol.data)
    if data.dtype.kind == "f" or data.dtype.itemsize > 2:
        data = data.astype(np.float32)
    img = nib.Nifti1Image(data, vol.affine)
    img.set_sform(vol.affine, code=1)
    img.set_qform(vol.affine, code=1)
    img.header.set_xyzt_units("mm")
    write_with(out, lambda tmp: nib.save(img, tmp))
    return out
