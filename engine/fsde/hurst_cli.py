"""`main.py fsde hurst --data PATHS.npy --dt DT --out EST.json`: Hurst index by fitting the
latent fractional SDE (engine/fsde/hurst.py). Light at import time."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(actions) -> None:
    p = actions.add_parser(
        "hurst", help="estimate the Hurst index of observed paths with the latent fractional SDE",
        description="Fit dx = (mu - theta x) dt + s dB_H (MA-fBM, learned H) with Gaussian "
                    "observation noise to PATHS (N, T) or (N, T, D) observed every DT; writes "
                    '{"hurst", "hurst_std", "elbo", "type", "K", ...} as JSON.')
    p.add_argument("--data", required=True, type=Path, help="PATHS.npy, shape (N, T) or (N, T, D)")
    p.add_argument("--dt", required=True, type=float, help="observation step (time units)")
    p.add_argument("--out", required=True, type=Path, help="EST.json to write")
    p.add_argument("--K", type=int, default=8, help="number of OU processes (default 8)")
    p.add_argument("--type", dest="kind", choices=("I", "II"), default="II",
                   help="MA-fBM type: II Riemann-Liouville (default), I Mandelbrot-van Ness")
    p.add_argument("--gamma-max", type=float, default=None,
                   help="largest OU speed in model time units (default 2 sqrt(T - 1))")
    p.add_argument("--starts", type=float, nargs="+", default=[0.5],
                   help="initial H values; the fit with the largest evidence wins (default 0.5)")
    p.add_argument("--exact", action="store_true",
                   help="the paths carry no observation noise (fix it at ~0 instead of fitting)")
    p.add_argument("--max-iter", type=int, default=60, help="L-BFGS iterations per start")
    p.set_defaults(func=hurst_cmd, command="fsde hurst")


def hurst_cmd(args: argparse.Namespace, ctx) -> None:
    from db.atomic import write_json
    from engine.fsde.hurst import estimate_hurst, load_paths
    from engine.jobs import InputError

    if not args.dt > 0 or args.dt != args.dt or args.dt == float("inf"):
        raise InputError(f"--dt must be a positive finite time step, not {args.dt}.")
    if args.K < 2:
        raise InputError(f"--K must be at least 2, not {args.K}.")
    if args.max_iter < 1:
        raise InputError(f"--max-iter must be at least 1, not {args.max_iter}.")
    if args.gamma_max is not None and not 1.0 < args.gamma_max < float("inf"):
        raise InputError(f"--gamma-max must be a finite OU speed above 1, not {args.gamma_max}.")
    if not all(0.0 < h < 1.0 for h in args.starts):
        raise InputError("--starts must be Hurst indices strictly between 0 and 1.")
    ctx.inputs.append(args.data)
    paths = load_paths(args.data)
    result = estimate_hurst(paths, args.dt, K=args.K, kind=args.kind,
                            gamma_max=args.gamma_max, max_iter=args.max_iter,
                            starts=tuple(args.starts), fit_noise=not args.exact,
                            progress=ctx.progress, cancel=ctx.cancel)
    result["data"] = str(args.data)
    result["dt"] = args.dt
    result["shape"] = list(paths.shape)
    write_json(args.out, result)
    ctx.outputs.append(args.out)
    print(f"H = {result['hurst']:.3f} +- {result['hurst_std']:.3f}  "
          f"(ELBO {result['elbo']:.2f}, type {result['type']}, K {result['K']}) -> {args.out}")
