"""`main.py fsde hurst --data PATHS.npy --dt DT --out EST.json`: Hurst index by fitting the
latent fractional SDE (engine/fsde/hurst.py). Light at import time."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli import finite_float, int_range

MAX_K = 64


def add_parser(actions) -> None:
    p = actions.add_parser(
        "hurst", help="estimate the Hurst index of observed paths with the latent fractional SDE",
        description="Fit dx = (mu - theta x) dt + s dB_H (MA-fBM, learned H) with Gaussian "
                    "observation noise to PATHS (N, T) or (N, T, D) observed every DT; writes "
                    '{"hurst", "hurst_std", "hurst_std_note", "elbo", "type", "K", ...} as '
                    "strict JSON (hurst_std is null when it is undetermined; the note says why).")
    p.add_argument("--data", required=True, type=Path, help="PATHS.npy, shape (N, T) or (N, T, D)")
    p.add_argument("--dt", required=True, type=finite_float(0, min_exclusive=True),
                   help="observation step (time units), finite and > 0")
    p.add_argument("--out", required=True, type=Path, help="EST.json to write")
    p.add_argument("--K", type=int_range(2, MAX_K), default=8,
                   help=f"number of OU processes, 2..{MAX_K} (default 8)")
    p.add_argument("--type", dest="kind", choices=("I", "II"), default="II",
                   help="MA-fBM type: II Riemann-Liouville (default), I Mandelbrot-van Ness")
    p.add_argument("--gamma-max", type=finite_float(1, 1e8, min_exclusive=True), default=None,
                   help="largest OU speed in model time units, > 1 (default 2 sqrt(T - 1))")
    p.add_argument("--starts", type=finite_float(0, 1, min_exclusive=True, max_exclusive=True),
                   nargs="+", default=[0.5],
                   help="initial H values in (0, 1); the fit with the largest evidence wins")
    p.add_argument("--exact", action="store_true",
                   help="the paths carry no observation noise (fix it at ~0 instead of fitting)")
    p.add_argument("--max-iter", type=int_range(1, 10000), default=60,
                   help="L-BFGS iterations per start, 1..10000 (default 60)")
    p.set_defaults(func=hurst_cmd, command="fsde hurst")


def hurst_cmd(args: argparse.Namespace, ctx) -> None:
    from db.atomic import write_text
    from engine.fsde.hurst import HurstFitError, estimate_hurst, load_paths
    from engine.jobs import InputError

    ctx.inputs.append(args.data)
    paths = load_paths(args.data)
    try:
        result = estimate_hurst(paths, args.dt, K=args.K, kind=args.kind,
                                gamma_max=args.gamma_max, max_iter=args.max_iter,
                                starts=tuple(args.starts), fit_noise=not args.exact,
                                progress=ctx.progress, cancel=ctx.cancel)
    except HurstFitError as err:
        raise InputError(f"The paths in '{args.data}' cannot be fitted: {err}.") from None
    result["data"] = str(args.data)
    result["dt"] = args.dt
    result["shape"] = list(paths.shape)
    try:
        text = json.dumps(result, indent=2, allow_nan=False) + "\n"  # strict JSON only
    except ValueError:
        raise InputError(f"The fit of '{args.data}' gave non-finite numbers; nothing was "
                         f"written.") from None
    write_text(args.out, text)
    ctx.outputs.append(args.out)
    std = (f"+- {result['hurst_std']:.3f}" if result["hurst_std"] is not None else
           f"(std undetermined: {result['hurst_std_note']})")
    print(f"H = {result['hurst']:.3f} {std}  (ELBO {result['elbo']:.2f}, type "
          f"{result['type']}, K {result['K']}) -> {args.out}")
