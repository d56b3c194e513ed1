"""`main.py tumor fit`: personalize the tumor model to one or many segmentations (the work is
engine/tumor/service.py; this module parses arguments and prints)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from engine.cli import finite_float, positive_int
from engine.tumor.params import MAX_T_DAYS


def add_parser(actions) -> None:
    p = actions.add_parser(
        "fit", help="fit Dw, rho and the origin to a tumor segmentation in MNI152 space",
        description="Find the simulated tumor that best reproduces a segmentation: FAISS query "
                    "of the database, exact-Dice re-ranking, refinement by a few batched forward "
                    "runs. Writes estimate.json, estimate.csv, tumor_concentration.nii.gz and "
                    "tumor_labels.nii.gz into OUTDIR (on the segmentation's grid). With several "
                    "--seg files (or --list FILE): one subfolder of OUTDIR per input and "
                    "OUTDIR/summary.csv; a failed input is reported and the rest continue "
                    "(exit code 2 if any failed).")
    p.add_argument("--db", required=True, type=Path, metavar="DIR",
                   help="tumor database folder (main.py tumor build-db)")
    p.add_argument("--seg", type=Path, nargs="+", metavar="SEG.nii.gz",
                   help="BraTS label map(s) (1 necrosis, 2 edema, 3/4 enhancing) in MNI152 space")
    p.add_argument("--list", type=Path, metavar="FILE",
                   help="text file with one label-map path per line (batch mode)")
    p.add_argument("--core", type=Path, metavar="CORE.nii.gz",
                   help="binary tumor-core mask (with --whole, instead of --seg)")
    p.add_argument("--whole", type=Path, metavar="WHOLE.nii.gz",
                   help="binary whole-tumor (FLAIR) mask (with --core, instead of --seg)")
    p.add_argument("--out", required=True, type=Path, metavar="OUTDIR", help="output folder")
    p.add_argument("--days", type=finite_float(0, MAX_T_DAYS, min_exclusive=True), default=100.0, metavar="T",
                   help="stated time since onset in days, for Dw and rho (default 100, at most 36500)")
    p.add_argument("--top-k", type=positive_int, default=50,
                   help="FAISS candidates to re-rank (50)")
    p.add_argument("--no-refine", action="store_true",
                   help="skip the forward-run refinement (database match only)")
    from engine.tumor.native_cli import add_arguments  # native hook (helper "native")
    add_arguments(p)                                  # --scan, --patient, --space, --reg-*
    p.set_defaults(func=fit_cmd, command="tumor fit")


def _list_paths(path: Path) -> list[Path]:
    from engine.jobs import InputError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"The list file '{path}' cannot be read ({err}).") from None
    paths = [Path(s.strip()) for s in lines if s.strip() and not s.strip().startswith("#")]
    if not paths:
        raise InputError(f"The list file '{path}' names no segmentation.")
    return [p if p.is_absolute() else path.parent / p for p in paths]


def fit_cmd(args, ctx) -> None:
    from engine.tumor import native_cli, service
    if native_cli.handles(args):      # native hook (helper "native"): --scan / --patient;
        return native_cli.fit_cmd(args, ctx)   # a --seg alone must be known MNI152 (else 2)

    t_cmd = time.perf_counter()
    age = service.process_age_s()          # interpreter start-up + imports before this call
    from engine.jobs import InputError
    segs = list(args.seg or [])
    if args.list is not None:
        segs += _list_paths(args.list)
        ctx.inputs.append(args.list)
    batch = len(segs) > 1 or args.list is not None
    if batch and (args.core is not None or args.whole is not None):
        raise InputError("Batch mode takes label maps (--seg A B ... or --list); "
                         "--core/--whole fit one case.")
    base = dict(T_days=args.days, top_k=args.top_k, refine=not args.no_refine)
    if batch:
        requests = [service.FitRequest(seg=s, **base) for s in segs]
    else:
        requests = [service.FitRequest(seg=segs[0] if segs else None, core=args.core,
                                       whole=args.whole, **base)]
    for r in requests:
        service.validate(r)
    from engine.tumor.export import check_outdir

    check_outdir(args.out)
    ctx.inputs.extend([p for r in requests for p in r.paths] + [args.db])
    t = time.perf_counter()
    t_imports = 0.0
    import engine.tumor.inverse  # noqa: F401  (numpy/scipy/nibabel: timed as "imports")
    t_imports += time.perf_counter() - t
    if batch:
        db = service.open_database(args.db)
        try:
            _batch(db, requests, args, ctx)
        finally:
            db.close()
        return
    from concurrent.futures import ThreadPoolExecutor

    timings = dict(startup=age or 0.0, imports=t_imports)
    req = requests[0]

    def read():      # in a thread, while this one opens the database
        t = time.perf_counter()
        try:
            return service.default_prepare(req, ctx.progress.sub(0, 0.1), ctx.cancel)
        finally:     # merged into the estimate by service.fit after it waited for the read
            timings["read_concurrent"] = time.perf_counter() - t

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(read)
        t = time.perf_counter()
        try:
            db = service.open_database(args.db)
        except BaseException:
            future.result()            # a bad input file is reported before a bad database
            raise
        timings["open_db"] = time.perf_counter() - t
        try:
            res = service.fit(db, req, progress=ctx.progress.sub(0.1, 0.95),
                              cancel=ctx.cancel, started=t_cmd, timings=timings,
                              prepared=future)
            est = res.estimate
            ctx.outputs.extend(service.write(res, args.out))
        finally:
            db.close()
    ctx.timings.update(est.timings_s)
    ctx.progress.done("written")
    d = est.to_dict()
    o = d["origin_mm"]
    for w in est.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"mu1 = {d['mu1_cm']:.3f} cm, mu2 = {d['mu2']:.3f}; for T = {d['T_days']:g} days: "
          f"Dw = {d['Dw_cm2_per_day']:.4g} cm^2/day, rho = {d['rho_per_day']:.4g} /day; "
          f"origin ({o[0]:.1f}, {o[1]:.1f}, {o[2]:.1f}) mm MNI; Dice core "
          f"{d['dice_core']:.3f}, whole {d['dice_whole']:.3f}", file=sys.stdout)
    print(f"wrote {', '.join(p.name for p in ctx.outputs)} to {args.out} (total "
          f"{est.timings_s['total']:.2f} s since process start, then write "
          f"{est.timings_s['write']:.3f} s)", file=sys.stdout)


def _batch(db, requests, args, ctx) -> None:
    from engine.jobs import InputError
    from engine.tumor import service

    def report(i, row):
        state = "ok" if row["status"] == "ok" else f"FAILED: {row['message']}"
        print(f"[{i + 1}/{len(requests)}] {row['input']}: {state}", file=sys.stdout)

    t = time.perf_counter()
    rows = service.fit_batch(db, requests, args.out, progress=ctx.progress, cancel=ctx.cancel,
                             on_result=report)
    ctx.timings["batch"] = time.perf_counter() - t
    ctx.outputs.append(args.out / "summary.csv")
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"fitted {len(rows) - len(failed)} of {len(rows)} inputs in "
          f"{ctx.timings['batch']:.1f} s; summary in {args.out / 'summary.csv'}", file=sys.stdout)
    if failed:
        raise InputError(f"{len(failed)} of {len(rows)} inputs failed (first: "
                         f"{failed[0]['message'].rstrip('.')}); see {args.out / 'summary.csv'}.")
