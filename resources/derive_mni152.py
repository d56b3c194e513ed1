#!/usr/bin/env python3
"""Derive resources/mni152/mni152_t1_1mm.nii.gz from the MNI ICBM152 2009a T1 in the nilearn wheel.

Source: ``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`` (197x233x189,
1 mm, RAS, uint8 0..255). Output: the same voxels and affine as uint8 in a fresh NIfTI-1 header
(sform = qform = MNI152 "aligned", no scaling), gzip-compressed. Used by the Tumor workbench as
the scan shown when no file is open.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "mni152"
NAME = "mni152_t1_1mm.nii.gz"
SOURCE_NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

PROVENANCE = """# MNI ICBM152 2009a T1 template (1 mm)

- **Source**: `nilearn/datasets/data/{source}` from the `nilearn` wheel (version {version},
  BSD-3-Clause), sha256 of the source file `{sha_src}`.
- **Original data**: ICBM 2009a Nonlinear Symmetric T1-weighted average (MNI152NLin2009aSym),
  V. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli, D. L. Collins, *Unbiased nonlinear
  average age-appropriate brain templates from birth to adulthood*, NeuroImage 47 (S1), S102,
  2009; and Fonov et al., NeuroImage 54(1), 313-327, 2011. Published by the McConnell Brain
  Imaging Centre / NIST lab, Montreal Neurological Institute (nilearn's copy is already
  rescaled to uint8 0..255, skull-stripped).
- **Licence** (the ICBM 2009 templates; free to use and redistribute with this notice):

  > Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal
  > Neurological Institute, McGill University. Permission to use, copy, modify, and distribute
  > this software and its documentation for any purpose and without fee is hereby granted,
  > provided that the above copyright notice appear in all copies. The authors and McGill
  > University make no representations about the suitability of this software for any
  > purpose. It is provided "as is" without express or implied warranty. The authors are not
  > responsible for any data loss, equipment damage, property loss, or injury to subjects or
  > patients resulting from the use or misuse of this software package.

- **Derived**: `{name}` ({shape}, 1 mm, RAS+, uint8 {lo}..{hi}), sha256 `{sha_out}` of the
  voxel array; written by `resources/derive_mni152.py`: same voxels and affine, fresh NIfTI-1
  header (sform/qform code 4 = MNI152, no intensity scaling), gzip level 9.
- **Used by**: `gui/workbenches/tumor.py` (`load_demo`, the scan shown when no file is open).
"""


def source_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).resolve().parent / "datasets" / "data" / SOURCE_NAME


def main() -> int:
    import nibabel as nib
    import nilearn

    sys.path.insert(0, str(HERE.parent))
    from db.atomic import write_text, write_with

    src = source_path()
    img = nib.load(str(src))
    data = np.asarray(img.dataobj)
    if data.shape != (197, 233, 189) or data.dtype != np.uint8:
        raise SystemExit(f"unexpected source {data.shape} {data.dtype} in {src}")
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_data_dtype(np.uint8)
    out.set_sform(img.affine, code=4)
    out.set_qform(img.affine, code=4)
    out.header["descrip"] = b"MNI ICBM152 2009a sym T1, from nilearn"

    def write(tmp: str) -> None:
        nib.save(out, tmp)

    write_with(OUT / NAME, write)
    write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
        source=SOURCE_NAME, version=nilearn.__version__,
        sha_src=hashlib.sha256(src.read_bytes()).hexdigest(), name=NAME,
        shape="x".join(map(str, data.shape)), lo=int(data.min()), hi=int(data.max()),
        sha_out=hashlib.sha256(data.tobytes()).hexdigest()))
    print(f"wrote {OUT / NAME}: {data.shape} uint8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
