"""`main.py tumor check --scan FILE [--seg FILE]`: load, validate and summarise NIfTI inputs."""
from __future__ import annotations

from engine.cli import existing_file


def add_parser(actions) -> None:
    p = actions.add_parser(
        "check", help="validate a scan and/or segmentation and print a summary",
        description="Load a NIfTI scan and/or BraTS segmentation (0 background, 1 necrosis, "
                    "2 edema, 3/4 enhancing), validate them and print shape, voxel size, "
                    "orientation, value range and label volumes. Exit code 2 on bad input.")
    p.add_argument("--scan", type=existing_file("scan"), help="MRI scan (.nii or .nii.gz)")
    p.add_argument("--seg", type=existing_file("segmentation"),
                   help="BraTS label map (.nii or .nii.gz)")
    p.set_defaults(func=check_cmd, command="tumor check")


def summary(vol) -> list[str]:
    """Human-readable lines describing a loaded Volume."""
    size = " x ".join(f"{v:.3g}" for v in vol.voxel_size_mm)
    lo, hi = vol.value_range()
    lines = [f"{vol.kind} {vol.path}",
             f"  shape {' x '.join(map(str, vol.file_shape))} voxels ({vol.dtype_on_disk}), "
             f"voxel {size} mm, stored {vol.orientation} (shown as RAS+)",
             f"  values {lo:g} .. {hi:g}"]
    if vol.kind == "labels":
        from engine.imaging.labels import volumes_cm3

        for name, cm3 in volumes_cm3(vol.data, vol.voxel_volume_cm3).items():
            lines.append(f"  {name:<16} {cm3:10.2f} cm^3")
    return lines


def check_cmd(args, ctx) -> None:
    from engine.imaging.nifti import check_overlap, load_volume
    from engine.jobs import InputError

    if args.scan is None and args.seg is None:
        raise InputError("Nothing to check: give --scan FILE and/or --seg FILE.")
    scan = seg = None
    if args.scan is not None:
        ctx.inputs.append(args.scan)
        scan = load_volume(args.scan, "scan", progress=ctx.progress.sub(0.0, 0.5),
                           cancel=ctx.cancel)
    if args.seg is not None:
        ctx.inputs.append(args.seg)
        seg = load_volume(args.seg, "labels", progress=ctx.progress.sub(0.5, 1.0),
                          cancel=ctx.cancel)
    if scan is not None and seg is not None:
        check_overlap(scan, seg)
    ctx.progress.done("checked")
    for vol in (scan, seg):
        if vol is not None:
            print("\n".join(summary(vol)))
    if scan is not None and seg is not None:
        print("segmentation overlaps the scan: ok")
