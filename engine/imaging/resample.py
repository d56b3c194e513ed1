"""Resample a volume onto another voxel grid through the two voxel->mm affines.

Nearest neighbour (order 0) for label maps, trilinear (order 1) for intensities; voxels of the
destination grid that fall outside the source get ``cval``.
"""
from __future__ import annotations

import numpy as np


def grid_transform(src_affine, dst_affine) -> np.ndarray:
    """(4, 4) map from destination voxel indices to source voxel indices."""
    return np.linalg.inv(np.asarray(src_affine, float)) @ np.asarray(dst_affine, float)


def resample(source, src_affine=None, dst_shape=None, dst_affine=None, order: int | None = None,
             cval: float = 0.0) -> np.ndarray:
    """Resample ``source`` (a (X, Y, Z) array or a :class:`~engine.imaging.nifti.Volume`)
    onto the grid ``dst_shape`` (3,) with voxel->mm ``dst_affine`` (4, 4).

    ``src_affine`` defaults to the Volume's affine. ``order`` None picks 0 (nearest) for label
    volumes and integer-typed arrays that look like labels, 1 (linear) otherwise.
    Returns a (dst_shape) array: labels keep their dtype, intensities come back float32.
    """
    from scipy import ndimage

    is_volume = not isinstance(source, np.ndarray) and hasattr(source, "affine")
    kind = source.kind if is_volume else None
    data = source.data if is_volume else np.asarray(source)
    if src_affine is None:
        src_affine = source.affine
    if dst_shape is None or dst_affine is None:
        raise ValueError("dst_shape and dst_affine are required")
    if order is None:
        order = 0 if kind == "labels" or (kind is None and data.dtype.kind in "biu"
                                          and data.dtype.itemsize <= 2) else 1
    m = grid_transform(src_affine, dst_affine)
    dst_shape = tuple(int(s) for s in dst_shape)
    if order == 0:
        out = ndimage.affine_transform(data, m[:3, :3], offset=m[:3, 3], output_shape=dst_shape,
                                       order=0, mode="constant", cval=cval, prefilter=False)
        return out.astype(data.dtype, copy=False)
    out = ndimage.affine_transform(data.astype(np.float32, copy=False), m[:3, :3],
                                   offset=m[:3, 3], output_shape=dst_shape, order=order,
                                   mode="constant", cval=cval, prefilter=False)
    return out.astype(np.float32, copy=False)


def resample_like(source, target) -> np.ndarray:
    """Resample a Volume onto another Volume's grid (order chosen from ``source.kind``)."""
    return resample(source, None, target.shape, target.affine)
