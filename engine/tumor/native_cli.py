"""CLI of the native pipeline: the native flags of `tumor fit` (a hook in fit_cli.py),
`tumor register` and `tumor import-dicom`. Light at import time; the work is in
engine/tumor/native.py, engine/imaging/registration.py and engine/imaging/dicom.py."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def add_arguments(p) -> None:
    """The native flags of `tumor fit` (called by the hook in fit_cli.add_parser)."""
    add_registration_arguments(p)
    p.add_argument("--scan", type=Path, metavar="T1.nii.gz",
                   help="the patient's scan (T1, T1c, T2 or FLAIR) in native scanner space: "
                        "registered to MNI152, results written on the segmentation's own grid")
    p.add_argument("--patient", type=Path, metavar="DIR",
                   help="BraTS-style folder (*-t1n/-t1c/-t2w/-t2f/-seg or *_t1/_t1ce/_t2/_flair/"
                        "_seg): fits its segmentation in native space (scan: T1 first, else T1c)")
    p.add_argument("--space", choices=("auto", "mni"), default="auto",
                   help="mni: take a segmentation given alone as MNI152 space (default auto: "
                        "only when its header says so or it lies on a known MNI152 grid)")


def add_registration_arguments(p) -> None:
    from engine.cli import finite_float

    p.add_argument("--registration", choices=("ants", "sitk"), default="ants",
                   help="registration library (default ants: affine + SyN)")
    p.add_argument("--reg-method", choices=("syn", "affine"), default="syn",
                   help="deformable (syn, default) or affine only")
    p.add_argument("--reg-level", type=finite_float(1.0, 8.0), default=2.0, metavar="MM",
                   help="working grid of the registration in mm (default 2)")


def reg_options(args):
    from engine.imaging.registration import RegOptions

    return RegOptions(library=args.registration, method=args.reg_method,
                      level_mm=float(args.reg_level))


def handles(args) -> bool:
    """True when `tumor fit` must take the native path (a scan or a patient folder given);
    for a segmentation given alone, checks that it may be read as MNI152 (InputError else)."""
    if getattr(args, "scan", None) is not None or getattr(args, "patient", None) is not None:
        return True
    from engine.imaging import load_volume
    from engine.tumor.native import require_mni_segmentation

    space = getattr(args, "space", "auto")
    files = list(getattr(args, "seg", None) or [])
    if getattr(args, "whole", None) is not None:
        files.append(args.whole)
    if getattr(args, "list", None) is not None:
        return False       # batch lists: each input is checked by the fit itself
    for f in files:
        if Path(f).is_file():
            vol = load_volume(f, "scan")
            require_mni_segmentation(vol, f, space)
    return False


def load_cli_patient(args):
    from engine.imaging.patient import load_patient
    from engine.jobs import InputError

    segs = list(getattr(args, "seg", None) or [])
    if len(segs) > 1 or getattr(args, "list", None) is not None:
        raise InputError("A native fit takes one segmentation (--seg SEG.nii.gz with --scan or "
                         "--patient); batch mode is for MNI152-space label maps.")
    if getattr(args, "core", None) is not None or getattr(args, "whole", None) is not None:
        raise InputError("A native fit takes a BraTS label map (--seg), not --core/--whole.")
    seg = segs[0] if segs else None
    if args.patient is not None:
        if args.scan is not None:
            raise InputError("Give either --patient or --scan, not both.")
        return load_patient(args.patient, seg=seg)
    if seg is None:
        raise InputError(f"Give the segmentation of the scan '{args.scan}' with --seg.")
    return load_patient(scan=args.scan, seg=seg)


def fit_cmd(args, ctx) -> None:
    """`tumor fit --scan T1 --seg SEG` / `tumor fit --patient DIR`."""
    from engine.tumor import service
    from engine.tumor.native import personalize_native, write_files
    from engine.tumor.export import check_outdir

    t0 = time.perf_counter()
    check_outdir(args.out)
    options = reg_options(args)
    patient = load_cli_patient(args)
    ctx.inputs.extend(patient.paths + [args.db])
    db = service.open_database(args.db)
    try:
        nf = personalize_native(patient, db, days=args.days, top_k=args.top_k,
                                refine=not args.no_refine, options=options,
                                progress=ctx.progress, cancel=ctx.cancel)
    finally:
        db.close()
    ctx.cancel.check()
    ctx.outputs.extend(write_files(nf.files, args.out))
    if nf.registration is not None and nf.registration.transforms:
        ctx.inputs.extend(nf.registration.transforms.values())   # the cached transforms used
    ctx.timings.update(nf.estimate.timings_s)
    ctx.timings["total"] = time.perf_counter() - t0
    ctx.progress.done("written")
    d = nf.estimate.to_dict()
    o, n = d["origin_mm"], nf.origin_native_mm
    reg = nf.registration
    print(f"mu1 = {d['mu1_cm']:.3f} cm, mu2 = {d['mu2']:.3f}; for T = {d['T_days']:g} days: "
          f"Dw = {d['Dw_cm2_per_day']:.4g} cm^2/day, rho = {d['rho_per_day']:.4g} /day; origin "
          f"({n[0]:.1f}, {n[1]:.1f}, {n[2]:.1f}) mm native = ({o[0]:.1f}, {o[1]:.1f}, "
          f"{o[2]:.1f}) mm MNI; Dice core {d['dice_core']:.3f}, whole {d['dice_whole']:.3f} "
          f"(MNI space)", file=sys.stdout)
    print(f"space {nf.space}; registration {reg.library} {reg.method}: NCC "
          f"{reg.metric_before:.2f} -> {reg.metric_after:.2f}"
          f"{' (cached)' if reg.cached else ''}; wrote {len(nf.files)} files to {args.out} "
          f"(total {ctx.timings['total']:.1f} s)", file=sys.stdout)


def register_cmd(args, ctx) -> None:
    """`tumor register --scan T1 [--seg SEG] --out DIR`: the transform and the scan in MNI."""
    from engine.imaging import load_volume
    from engine.imaging.reg_files import transform_bytes
    from engine.imaging.registration import register, template_volume
    from engine.tumor.export import _nifti_gz, check_outdir
    from engine.tumor.native import write_files

    t0 = time.perf_counter()
    check_outdir(args.out)
    scan = load_volume(args.scan, "scan")
    seg = None
    ctx.inputs.append(args.scan)
    if args.seg is not None:
        from engine.imaging import check_overlap

        seg = load_volume(args.seg, "labels")
        check_overlap(scan, seg)
        ctx.inputs.append(args.seg)
    import numpy as np

    reg = register(scan, seg, reg_options(args), progress=ctx.progress.sub(0, 0.9),
                   cancel=ctx.cancel)
    files = transform_bytes(reg)
    files["scan_mni.nii.gz"] = _nifti_gz(reg.scan_mni.astype(np.float32),
                                         template_volume().affine)
    if seg is not None:
        lab = reg.to_mni(seg.data, seg.affine, order=0).astype(np.uint8)
        files["seg_mni.nii.gz"] = _nifti_gz(lab, template_volume().affine)
    files["registration.json"] = (json.dumps(reg.summary(), indent=2, allow_nan=False)
                                  + "\n").encode()
    ctx.cancel.check()
    ctx.outputs.extend(write_files(files, args.out))
    ctx.timings.update(reg.timings_s)
    ctx.timings["total"] = time.perf_counter() - t0
    ctx.progress.done("written")
    print(f"registered {args.scan} to MNI152 ({reg.library} {reg.method}): NCC "
          f"{reg.metric_before:.2f} -> {reg.metric_after:.2f}"
          f"{' (cached)' if reg.cached else ''}; wrote {', '.join(sorted(files))} to {args.out}",
          file=sys.stdout)


def add_parser(actions) -> None:
    """`tumor register` and `tumor import-dicom`."""
    p = actions.add_parser(
        "register", help="register a native scan to the bundled MNI152 T1",
        description="Rigid, affine and deformable registration of a scan (T1, T1c, T2 or FLAIR; "
                    "skull-stripped or whole head) to the bundled MNI152 T1, the tumor (--seg) "
                    "masked out. Writes the ITK transform files, scan_mni.nii.gz (and "
                    "seg_mni.nii.gz) and registration.json (quality metrics) into OUTDIR.")
    p.add_argument("--scan", required=True, type=Path, metavar="T1.nii.gz")
    p.add_argument("--seg", type=Path, metavar="SEG.nii.gz",
                   help="BraTS label map in the scan's space (excluded from the metric)")
    p.add_argument("--out", required=True, type=Path, metavar="OUTDIR")
    add_registration_arguments(p)
    p.set_defaults(func=register_cmd, command="tumor register")
    from engine.imaging.dicom_cli import add_parser as add_dicom

    add_dicom(actions)
