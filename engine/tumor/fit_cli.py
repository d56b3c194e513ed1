"""`main.py tumor fit`: personalize the tumor model to a segmentation (see engine/tumor/inverse.py)."""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(actions) -> None:
    p = actions.add_parser(
        "fit", help="fit Dw, rho and the origin to a tumor segmentation in MNI152 space",
        description="Find the simulated tumor that best reproduces a segmentation: FAISS query "
                    "of the database, exact-Dice re-ranking, refinement by a few batched forward "
                    "runs. Writes estimate.json, estimate.csv, tumor_concentration.nii.gz and "
                    "tumor_labels.nii.gz into OUTDIR (on the segmentation's grid).")
    p.add_argument("--db", required=True, type=Path, metavar="DIR",
                   help="tumor database folder (main.py tumor build-db)")
    p.add_argument("--seg", type=Path, metavar="SEG.nii.gz",
                   help="BraTS label map (1 necrosis, 2 edema, 3/4 enhancing) in MNI152 space")
    p.add_argument("--core", type=Path, metavar="CORE.nii.gz",
                   help="binary tumor-core mask (with --whole, instead of --seg)")
    p.add_argument("--whole", type=Path, metavar="WHOLE.nii.gz",
                   help="binary whole-tumor (FLAIR) mask (with --core, instead of --seg)")
    p.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="output folder")
    p.add_argument("--days", type=float, default=100.0, metavar="T",
                   help="stated time since onset in days, for Dw and rho (default 100)")
    p.add_argument("--top-k", type=int, default=50, help="FAISS candidates to re-rank (50)")
    p.add_argument("--no-refine", action="store_true",
                   help="skip the forward-run refinement (database match only)")
    p.set_defaults(func=fit_cmd, command="tumor fit")


def fit_cmd(args, ctx) -> None:
    import time

    from engine.jobs import InputError

    t0 = time.perf_counter()
    if args.seg is not None and (args.core is not None or args.whole is not None):
        raise InputError("Give either --seg or --core with --whole, not both.")
    if args.seg is None and (args.core is None or args.whole is None):
        raise InputError("Give a label map with --seg, or both --core and --whole masks.")
    if not args.days > 0:
        raise InputError(f"--days must be a positive number of days (got {args.days:g}).")
    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {args.top_k}).")
    from engine.tumor.export import check_outdir, render_nifti, render_text, write_outputs
    from engine.tumor.inverse import fit, load_observation

    check_outdir(args.out)
    inputs = [args.seg] if args.seg is not None else [args.core, args.whole]
    ctx.inputs.extend(inputs + [args.db])
    t = time.perf_counter()
    obs = load_observation(args.seg, args.core, args.whole, progress=ctx.progress.sub(0, 0.1),
                           cancel=ctx.cancel)
    t_read = time.perf_counter() - t
    from engine.tumor.database import TumorDatabase

    t = time.perf_counter()
    db = TumorDatabase.open(args.db)
    t_open = time.perf_counter() - t
    try:
        est = fit(db, obs, args.days, top_k=args.top_k, refine=not args.no_refine,
                  progress=ctx.progress.sub(0.1, 0.9), cancel=ctx.cancel)
    finally:
        db.close()
    est.timings_s["load"] += t_read
    est.timings_s["open_db"] = t_open
    ctx.progress.update(0.9, "writing outputs")
    t = time.perf_counter()
    conc, labels = render_nifti(est)          # everything in memory before the first write
    ctx.cancel.check()
    est.timings_s["write"] = time.perf_counter() - t
    est.timings_s["total"] = time.perf_counter() - t0
    js, cs = render_text(est)
    files = {"estimate.json": js, "estimate.csv": cs, "tumor_concentration.nii.gz": conc,
             "tumor_labels.nii.gz": labels}
    ctx.outputs.extend(write_outputs(est, args.out, files))
    ctx.timings.update(est.timings_s)
    ctx.progress.done("written")
    d = est.to_dict()
    o = d["origin_mm"]
    print(f"mu1 = {d['mu1_cm']:.3f} cm, mu2 = {d['mu2']:.3f}; for T = {d['T_days']:g} days: "
          f"Dw = {d['Dw_cm2_per_day']:.4g} cm^2/day, rho = {d['rho_per_day']:.4g} /day; "
          f"origin ({o[0]:.1f}, {o[1]:.1f}, {o[2]:.1f}) mm MNI; Dice core "
          f"{d['dice_core']:.3f}, whole {d['dice_whole']:.3f}", file=sys.stdout)
    print(f"wrote {', '.join(p.name for p in ctx.outputs)} to {args.out} "
          f"(total {est.timings_s['total']:.2f} s, query {d['timings_s']['query']:.3f} s)",
          file=sys.stdout)

