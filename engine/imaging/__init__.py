"""NIfTI loading, validation, orientation, resampling, label maps.

``load_volume(path, kind="scan"|"labels") -> Volume`` (RAS+ data + affine + map back to the
file's voxel indices), ``check_overlap(scan, seg)``, ``resample(...)``, BraTS label helpers in
:mod:`engine.imaging.labels`.
"""
from engine.imaging.nifti import Volume, check_overlap, from_array, load_volume  # noqa: F401
from engine.imaging.resample import resample, resample_like  # noqa: F401
