"""Load and validate NIfTI volumes, reoriented to RAS+ with the map back to the file's voxels.

``load_volume(path, kind)`` returns a :class:`Volume` whose ``data`` (X, Y, Z) is the file's
array with its axes permuted/flipped so that i grows to the patient's Right, j to Anterior and
k to Superior (RAS+, the closest axis for oblique files), and whose ``affine`` (4, 4) maps those
voxel indices to scanner/MNI millimetres. ``ras_to_file_index`` maps a displayed voxel back to
the index a user would see in the file itself (FSL, ITK-SNAP show those).

Every problem with the input raises :class:`engine.jobs.InputError` with one sentence naming the
file: unreadable/truncated, not NIfTI, wrong dimensionality, non-finite values, singular affine,
non-integer or out-of-convention labels, segmentation outside the scan.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.jobs import InputError

KINDS = ("scan", "labels")
MAX_VOXELS = 512 ** 3  # refuse absurd headers before allocating memory


@dataclass
class Volume:
    """A 3-D volume on a RAS+ voxel grid.

    data: (X, Y, Z) array, RAS+-reoriented (float32 or the file's integer type for scans,
        int16 for label maps). affine: (4, 4) float64, RAS+ voxel (i, j, k) -> RAS mm.
    file_shape / file_affine: the file's own grid; ``to_file`` (4, 4) maps RAS+ voxel
        indices to file voxel indices (a signed permutation plus offset, exact in integers).
    orientation: the file's axis codes, e.g. "LPS" or "RAS".
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    kind: str = "scan"
    file_shape: tuple[int, int, int] = (0, 0, 0)
    file_affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    to_file: np.ndarray = field(default_factory=lambda: np.eye(4))
    orientation: str = "RAS"
    dtype_on_disk: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "(in memory)"

    @property
    def voxel_size_mm(self) -> np.ndarray:
        """(3,) edge lengths of a voxel along i, j, k in mm."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume_cm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def ras_to_file_index(self, ijk) -> np.ndarray:
        """(..., 3) RAS+ voxel indices -> (..., 3) int indices into the file's own array."""
        ijk = np.asarray(ijk, dtype=float)
        out = ijk @ self.to_file[:3, :3].T + self.to_file[:3, 3]
        return np.rint(out).astype(int)

    def file_to_ras_index(self, ijk_file) -> np.ndarray:
        """(..., 3) file voxel indices -> (..., 3) int RAS+ voxel indices."""
        inv = np.linalg.inv(self.to_file)
        ijk_file = np.asarray(ijk_file, dtype=float)
        return np.rint(ijk_file @ inv[:3, :3].T + inv[:3, 3]).astype(int)

    def vox_to_mm(self, ijk) -> np.ndarray:
        """(..., 3) RAS+ voxel coordinates -> (..., 3) RAS millimetres."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def mm_to_vox(self, xyz) -> np.ndarray:
        """(..., 3) RAS millimetres -> (..., 3) float RAS+ voxel coordinates."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=float)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def value_range(self) -> tuple[float, float]:
        return float(np.min(self.data)), float(np.max(self.data))


def from_array(data, affine, kind: str = "scan", path=None) -> Volume:
    """Wrap an in-memory (X, Y, Z) array with its voxel->mm affine, reoriented to RAS+ like a
    loaded file (used by tests and by code that builds volumes itself)."""
    return _reorient(np.asarray(data), np.asarray(affine, dtype=float), kind,
                     Path(path) if path else None, str(np.asarray(data).dtype))


def _fail(path: Path, problem: str) -> InputError:
    return InputError(f"'{path}' {problem}.")


def _read_image(path: Path):
    import nibabel as nib

    if not path.exists():
        raise _fail(path, "does not exist")
    if not path.is_file():
        raise _fail(path, "is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from None
    gz = head[:2] == b"\x1f\x8b"
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise _fail(path, "is not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                header_bytes = f.read(540)
        else:
            with open(path, "rb") as f:
                header_bytes = f.read(540)
    except (OSError, EOFError, zlib.error):
        raise _fail(path, "is truncated or corrupt (its gzip stream cannot be read)") from None
    if len(header_bytes) < 348:
        raise _fail(path, "is truncated: it is shorter than a NIfTI header")
    if not _looks_like_nifti(header_bytes):
        raise _fail(path, "is not a NIfTI file (no NIfTI header found)")
    log = logging.getLogger("nibabel")
    level = log.level
    log.setLevel(logging.CRITICAL)  # header "fixes" are not the user's business; errors are
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for corrupt headers
        raise _fail(path, f"has a corrupt NIfTI header ({_short(err)})") from None
    finally:
        log.setLevel(level)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _fail(path, "is not a NIfTI-1 or NIfTI-2 image")
    return img, gz


def _looks_like_nifti(h: bytes) -> bool:
    """NIfTI-1: sizeof_hdr 348 and magic 'n+1'/'ni1' at byte 344; NIfTI-2: 540 and 'n+2'/'ni2'
    at byte 4 (either byte order)."""
    sizeof = {int.from_bytes(h[:4], "little"), int.from_bytes(h[:4], "big")}
    nifti1 = 348 in sizeof and h[344:348] in (b"n+1\x00", b"ni1\x00")
    nifti2 = 540 in sizeof and h[4:8] in (b"n+2\x00", b"ni2\x00")
    return nifti1 or nifti2


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120].rstrip(".")


def _check_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if any(int(s) < 1 for s in shape):
        raise _fail(path, f"declares an empty dimension (shape {tuple(shape)})")
    if len(shape) < 3:
        raise _fail(path, f"holds {len(shape)}-D data {tuple(shape)}; a 3-D volume is needed")
    if len(shape) == 4:
        if shape[3] != 1:
            raise _fail(path, f"holds a 4-D series of {shape[3]} volumes; a single 3-D volume "
                              "is needed")
    elif len(shape) > 4:
        raise _fail(path, f"holds {len(shape)}-D data {tuple(shape)}; a 3-D volume is needed")
    spatial = tuple(int(s) for s in shape[:3])
    if sum(s > 1 for s in spatial) == 0:
        raise _fail(path, f"holds a single voxel (shape {spatial}); a 3-D volume is needed")
    if sum(s > 1 for s in spatial) == 1:
        raise _fail(path, f"holds a single line of voxels (shape {spatial}); a 3-D volume is "
                          "needed")
    if sum(s > 1 for s in spatial) < 3:
        raise _fail(path, f"holds 2-D data (shape {spatial}); a 3-D volume is needed")
    if int(np.prod(spatial, dtype=np.int64)) > MAX_VOXELS:
        raise _fail(path, f"declares {spatial} voxels, too many to load")
    return spatial


def _check_orientation(path: Path, header) -> None:
    """Refuse a header without a position in space: qform_code = sform_code = 0 (nibabel
    would invent an affine, and a label map would be fitted in the wrong place) or voxel
    sizes (pixdim) that are zero, negative or not finite."""
    try:
        q, s = int(header["qform_code"]), int(header["sform_code"])
    except (KeyError, ValueError, TypeError):
        return
    pix = np.asarray(header["pixdim"][1:4], dtype=float)
    if not np.all(np.isfinite(pix)) or np.any(pix <= 0) and q == 0 and s == 0:
        raise _fail(path, f"has voxel sizes (pixdim) {', '.join(f'{v:g}' for v in pix)} mm and "
                          "no orientation in its header, so its position in space is unknown; "
                          "re-save it with its scanner or MNI152 orientation (qform/sform)")
    if q == 0 and s == 0:
        raise _fail(path, "has no orientation in its header (qform_code and sform_code are 0), "
                          "so its position in space is unknown; re-save it with its scanner or "
                          "MNI152 orientation (qform/sform)")


def load_volume(path, kind: str = "scan", progress=None, cancel=None) -> Volume:
    """Read, validate and reorient a .nii/.nii.gz file.

    kind "scan": any finite intensities; "labels": integer BraTS labels (0, 1, 2, 3, 4).
    Accepts 3-D data or 4-D with a singleton 4th axis. Job protocol: ``progress``/``cancel``
    are optional. Raises InputError with one sentence naming the file.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    path = Path(path)
    if progress is not None:
        progress.update(0.05, f"reading {path.name}")
    img, gz = _read_image(path)
    shape = _check_shape(path, tuple(int(s) for s in img.shape))
    header = img.header
    dtype = header.get_data_dtype()
    if not gz:
        n_voxels = int(np.prod(img.shape, dtype=np.int64))
        needed = int(header.get_data_offset()) + n_voxels * dtype.itemsize
        if path.stat().st_size < needed:
            raise _fail(path, f"is truncated: the header needs {needed} bytes, the file has "
                              f"{path.stat().st_size}")
    if cancel is not None:
        cancel.check()
    _check_orientation(path, header)
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise _fail(path, "has a singular or non-finite voxel-to-world affine (check the "
                          "qform/sform and pixdim fields)")
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError:
        raise _fail(path, "is too large to load into memory") from None
    except Exception as err:
        raise _fail(path, f"is truncated or corrupt ({_short(err)})") from None
    if progress is not None:
        progress.update(0.6, f"checking {path.name}")
    if cancel is not None:
        cancel.check()
    data = np.asarray(data).reshape(shape)
    if data.dtype.kind == "c" or data.dtype.fields is not None or data.dtype.kind not in "biuf":
        raise _fail(path, f"stores {dtype} voxels; real-valued numbers are needed")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise _fail(path, f"contains {bad} non-finite voxel values (NaN or infinity)")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
    if kind == "labels":
        from engine.imaging.labels import validate_labels

        data = validate_labels(data, path)
    import nibabel.orientations as nio

    if np.isnan(nio.io_orientation(affine)).any():
        raise _fail(path, "has a degenerate voxel-to-world affine (axes cannot be matched to "
                          "R/A/S directions)")
    vol = _reorient(data, affine, kind, path, str(dtype))
    if progress is not None:
        progress.done(f"loaded {path.name}")
    return vol


def _reorient(data: np.ndarray, affine: np.ndarray, kind: str, path, dtype_on_disk: str) -> Volume:
    import nibabel.orientations as nio

    ornt = nio.io_orientation(affine)
    codes = "".join(nio.aff2axcodes(affine))
    ras = np.ascontiguousarray(nio.apply_orientation(data, ornt))
    to_file = nio.inv_ornt_aff(ornt, data.shape)  # RAS+ voxel -> file voxel
    return Volume(data=ras, affine=affine @ to_file, path=path, kind=kind,
                  file_shape=tuple(int(s) for s in data.shape), file_affine=affine,
                  to_file=to_file, orientation=codes, dtype_on_disk=dtype_on_disk)


def check_overlap(scan: Volume, seg: Volume) -> None:
    """Raise InputError if the segmentation's grid does not overlap the scan's grid in mm
    (boxes through the voxel edges, in RAS millimetres)."""
    a_lo, a_hi = _bounds_mm(scan)
    b_lo, b_hi = _bounds_mm(seg)
    if np.any(b_lo >= a_hi) or np.any(a_lo >= b_hi):
        raise InputError(
            f"'{seg.path or seg.name}' does not overlap the scan '{scan.path or scan.name}': "
            f"its grid spans {_box(b_lo, b_hi)} mm, the scan's spans {_box(a_lo, a_hi)} mm.")


def _bounds_mm(vol: Volume) -> tuple[np.ndarray, np.ndarray]:
    shape = np.array(vol.shape, dtype=float)
    corners = np.array([[x, y, z] for x in (-0.5, shape[0] - 0.5) for y in (-0.5, shape[1] - 0.5)
                        for z in (-0.5, shape[2] - 0.5)])
    mm = vol.vox_to_mm(corners)
    return mm.min(axis=0), mm.max(axis=0)


def _box(lo, hi) -> str:
    return " x ".join(f"[{a:.0f}, {b:.0f}]" for a, b in zip(lo, hi))
