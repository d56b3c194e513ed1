"""`main.py tumor import-dicom` (the work: engine/imaging/dicom.py)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(actions) -> None:
    p = actions.add_parser(
        "import-dicom", help="convert a DICOM series to NIfTI (keeps orientation and spacing)",
        description="Read a DICOM image series with SimpleITK's series reader and write it as "
                    "NIfTI in scanner space. A folder with several series lists them; pick one "
                    "with --series UID.")
    p.add_argument("--dicom", required=True, type=Path, metavar="DIR", help="DICOM folder")
    p.add_argument("--out", required=True, type=Path, metavar="SCAN.nii.gz", help="NIfTI to write")
    p.add_argument("--series", metavar="UID", help="series instance UID (when several)")
    p.set_defaults(func=import_cmd, command="tumor import-dicom")


def import_cmd(args, ctx) -> None:
    from engine.imaging.dicom import import_dicom

    ctx.inputs.append(args.dicom)
    out = import_dicom(args.dicom, args.out, args.series, progress=ctx.progress,
                       cancel=ctx.cancel)
    ctx.outputs.append(out)
    from engine.imaging import load_volume

    vol = load_volume(out, "scan")
    v = vol.voxel_size_mm
    print(f"wrote {out}: {vol.file_shape[0]} x {vol.file_shape[1]} x {vol.file_shape[2]} "
          f"voxels of {v[0]:.3g} x {v[1]:.3g} x {v[2]:.3g} mm, stored {vol.orientation}",
          file=sys.stdout)
