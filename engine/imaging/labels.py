"""BraTS label maps: 0 background, 1 necrosis, 2 edema, 3 or 4 enhancing tumor.

Tumor core (what T1Gd shows: enhancing + necrosis) = labels {1, 3, 4};
whole tumor (what FLAIR shows: core + edema) = labels {1, 2, 3, 4}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.jobs import InputError

BACKGROUND, NECROSIS, EDEMA, ENHANCING_3, ENHANCING_4 = 0, 1, 2, 3, 4
ALLOWED = (0, 1, 2, 3, 4)
CORE_LABELS = (1, 3, 4)
WHOLE_LABELS = (1, 2, 3, 4)
ENHANCING_LABELS = (3, 4)

LABEL_NAMES = {0: "background", 1: "necrosis", 2: "edema", 3: "enhancing", 4: "enhancing"}


def label_name(value) -> str:
    return LABEL_NAMES.get(int(value), f"label {int(value)}")


def validate_labels(data: np.ndarray, path) -> np.ndarray:
    """Check a label map (any shape) holds integer BraTS labels; returns it as int16.
    Raises InputError naming ``path`` otherwise."""
    path = Path(path) if path is not None else Path("(in memory)")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise InputError(f"'{path}' contains non-finite values (NaN or infinity) in a "
                             "label map.")
        frac = data != np.round(data)
        if frac.any():
            example = float(data[frac].flat[0])
            raise InputError(f"'{path}' is not a label map: it has non-integer values "
                             f"(e.g. {example:g}) where BraTS labels 0-4 are expected.")
    values = np.unique(data)
    bad = [v for v in values.tolist() if int(v) not in ALLOWED or v != int(v)]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise InputError(f"'{path}' has label values {shown} outside the BraTS convention "
                         "(0 background, 1 necrosis, 2 edema, 3 or 4 enhancing).")
    return data.astype(np.int16)


def core_mask(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) int labels -> bool tumor core (necrosis + enhancing)."""
    return np.isin(labels, CORE_LABELS)


def whole_mask(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) int labels -> bool whole tumor (core + edema)."""
    return np.isin(labels, WHOLE_LABELS)


def volumes_cm3(labels: np.ndarray, voxel_volume_cm3: float) -> dict[str, float]:
    """Volume of each present label (by name) and of core / whole tumor, in cm^3."""
    out: dict[str, float] = {}
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=5)
    for value in (1, 2, 3, 4):
        if counts[value]:
            name = f"{label_name(value)} ({value})"
            out[name] = counts[value] * voxel_volume_cm3
    out["core"] = float(counts[[1, 3, 4]].sum() * voxel_volume_cm3)
    out["whole tumor"] = float(counts[[1, 2, 3, 4]].sum() * voxel_volume_cm3)
    return out
