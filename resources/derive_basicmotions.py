#!/usr/bin/env python3
"""Derive resources/basicmotions/ from the BasicMotions .ts files shipped in the sktime wheel.

Writes ``{train,test}.npy`` (N, T=100, D=6) float32 (accelerometer x/y/z, gyroscope x/y/z,
10 Hz), ``{train,test}_labels.csv`` (case index, activity) and PROVENANCE.md. The .ts
format is parsed directly (one case per line, dimensions separated by ':', values by ',',
the class label last), so sktime is needed only to locate the files.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "basicmotions"
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")


def source_dir() -> Path:
    import sktime

    return Path(sktime.__file__).parent / "datasets" / "data" / "BasicMotions"


def parse_ts(path: Path) -> tuple[np.ndarray, list[str]]:
    """Return (N, T, D) values and N labels from a UEA/UCR .ts file."""
    cases, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            in_data = True
            continue
        if not in_data:
            continue
        *dims, label = line.split(":")
        cases.append(np.array([[float(v) for v in d.split(",")] for d in dims]).T)  # (T, D)
        labels.append(label)
    return np.stack(cases).astype(np.float32), labels


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from db.atomic import write_npy, write_text

    src = source_dir()
    lines = []
    for split in ("train", "test"):
        path = src / f"BasicMotions_{split.upper()}.ts"
        x, labels = parse_ts(path)
        assert x.shape[1:] == (100, 6), x.shape
        write_npy(OUT / f"{split}.npy", x)
        write_text(OUT / f"{split}_labels.csv",
                   "case,activity\n" + "".join(f"{i},{a}\n" for i, a in enumerate(labels)))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        counts = {a: labels.count(a) for a in sorted(set(labels))}
        lines.append(f"- `{split}.npy` {x.shape} from `{path.name}` (sha256 {sha}...), "
                     f"activities {counts}")
        print(split, x.shape, counts)
    import sktime

    write_text(OUT / "PROVENANCE.md", f"""# BasicMotions (derived)

Source: the `sktime` wheel (version {sktime.__version__}), files
`sktime/datasets/data/BasicMotions/BasicMotions_{{TRAIN,TEST}}.ts`, originally from the
UEA & UCR time series classification archive (https://timeseriesclassification.com,
Bagnall et al.). Licence: distributed with sktime under its BSD-3-Clause licence; the
archive asks users to cite Bagnall et al., "The UEA multivariate time series
classification archive, 2018", arXiv:1811.00075.

Content: four students performed four activities (standing, walking, running,
badminton) wearing a smart watch; 3-D accelerometer and 3-D gyroscope sampled at
10 Hz for 10 s, so each case is 100 steps x 6 channels ({", ".join(CHANNELS)}).

Derived by `resources/derive_basicmotions.py`: the .ts text parsed into float32 arrays
(N, T, D) with the archive's own train/test split; no other change (no scaling; the
PV-RNN stores its own scaling with each model).

{chr(10).join(lines)}
- `{{train,test}}_labels.csv`: case index and activity label.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
