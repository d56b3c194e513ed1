"""Hurst recovery benchmark: latent fractional SDE (MA-fBM, exact ELBO) vs the variogram slope.

Data per (source, H, seed): N paths of n steps at spacing dt,
  fbm  exact fractional Brownian motion (Davies-Harte), no noise;
  fou  fractional Ornstein-Uhlenbeck dX = -theta X dt + dB_H (theta = 2) observed with
       N(0, 0.02^2) noise.
Estimators, run on the same data in the same process:
  ma-fbm    engine.fsde.hurst.estimate_hurst (type II, K = 8, noise fitted), time per fit;
  --exact   the same with fit_noise=False (fbm only: the paths are known to be noise-free);
  variogram slope of log mean squared increment against log lag (lags 1, 2, 4, 8) / 2.
Prints one table (mean and std of the estimates over the seeds, mean absolute error, median
fit time) and returns the rows. ``run(quick=True)`` uses 2 seeds and shorter paths.

    .venv/bin/python benchmarks/fsde_hurst.py [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fsde import fbm as fbm_mod  # noqa: E402
from engine.fsde.hurst import estimate_hurst  # noqa: E402

HURSTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def variogram_hurst(paths: np.ndarray, lags=(1, 2, 4, 8)) -> float:
    """Classical estimator: E|X(t + k) - X(t)|^2 ~ k^(2H); paths (N, T) -> H."""
    m = [np.mean((paths[:, k:] - paths[:, :-k]) ** 2) for k in lags]
    slope = np.polyfit(np.log(lags), np.log(m), 1)[0]
    return float(slope / 2)


def make_data(source: str, H: float, seed: int, n_paths: int, n_steps: int, dt: float):
    rng = np.random.default_rng(1000 * seed + int(round(100 * H)))
    if source == "fbm":
        return fbm_mod.fbm(n_steps, H, n_paths, dt=dt, rng=rng)
    return fbm_mod.fou(n_steps, H, n_paths, dt=dt, theta=2.0, sigma=1.0, substeps=4,
                       obs_noise=0.02, rng=rng)


def run(quick: bool = False, sources=("fbm", "fou"), hursts=HURSTS, verbose: bool = True):
    """Run the benchmark; returns a list of row dicts (also printed as a table)."""
    seeds = range(2) if quick else range(5)
    n_paths, n_steps, dt = (6, 128, 0.01) if quick else (8, 200, 0.01)
    rows = []
    for source in sources:
        for H in hursts:
            est, std, times, vario, exact = [], [], [], [], []
            for seed in seeds:
                paths = make_data(source, H, seed, n_paths, n_steps, dt)
                t0 = time.perf_counter()
                res = estimate_hurst(paths, dt)
                times.append(time.perf_counter() - t0)
                est.append(res["hurst"])
                if res["hurst_std"] is not None:    # None: undetermined (see its note)
                    std.append(res["hurst_std"])
                vario.append(variogram_hurst(paths))
                if source == "fbm":      # the same fit told the paths are noise-free
                    exact.append(estimate_hurst(paths, dt, fit_noise=False)["hurst"])
            row = {"source": source, "H": H, "seeds": len(est),
                   "mafbm_mean": statistics.fmean(est),
                   "mafbm_sd": statistics.pstdev(est),
                   "mafbm_mae": statistics.fmean(abs(e - H) for e in est),
                   "mafbm_max_err": max(abs(e - H) for e in est),
                   "laplace_sd": statistics.fmean(std) if std else float("nan"),
                   "laplace_undetermined": len(est) - len(std),
                   "time_s": statistics.median(times),
                   "vario_mean": statistics.fmean(vario),
                   "vario_sd": statistics.pstdev(vario),
                   "vario_mae": statistics.fmean(abs(e - H) for e in vario),
                   "exact_mean": statistics.fmean(exact) if exact else float("nan"),
                   "exact_max_err": max(abs(e - H) for e in exact) if exact else float("nan")}
            rows.append(row)
            if verbose:
                print(_fmt(row), flush=True)
    if verbose:
        print(table(rows, n_paths, n_steps, dt))
    return rows


def _fmt(r) -> str:
    return (f"| {r['source']:<4} | {r['H']:.1f} | {r['mafbm_mean']:.3f} +- {r['mafbm_sd']:.3f}"
            f" | {r['mafbm_mae']:.3f} | {r['mafbm_max_err']:.3f} | {r['laplace_sd']:.3f}"
            f" | {r['time_s']:.1f} | {r['vario_mean']:.3f} +- {r['vario_sd']:.3f}"
            f" | {r['vario_mae']:.3f} | {r['mafbm_mae'] / max(r['vario_mae'], 1e-9):.2f}"
            f" | {_opt(r['exact_mean'])} | {_opt(r['exact_max_err'])} |")


def _opt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def table(rows, n_paths=None, n_steps=None, dt=None) -> str:
    head = ("| data | H | MA-fBM H (mean +- sd over seeds) | MAE | max err | Laplace sd "
            "| time/fit s | variogram H | variogram MAE | MAE ratio MA-fBM/variogram "
            "| MA-fBM --exact H | --exact max err |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    note = (f"\n{n_paths} paths x {n_steps} steps (dt = {dt}) per fit; fou: theta = 2, "
            "observation noise sd 0.02." if n_paths else "")
    return "\n".join([head] + [_fmt(r) for r in rows]) + note


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, shorter paths")
    args = p.parse_args(argv)
    rows = run(quick=args.quick)
    worst = max(r["mafbm_max_err"] for r in rows)
    print(f"\nworst MA-fBM error over all fits: {worst:.3f} (target < 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
