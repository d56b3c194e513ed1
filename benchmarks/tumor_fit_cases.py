"""`tumor fit` from the shell on independent MNI-space cases, by lambda band.

    .venv/bin/python benchmarks/tumor_fit_cases.py --db DB_DIR [--n 24] [--cache DIR]

Cases (cached in --cache/cases): made by benchmarks/fk_independent.py (forward Euler, harmonic
face means, point-sampled seed, tissue mask wm + gm >= 0.4, another copy of the tissue maps:
the atlas maps smoothed and rescaled), never by the project's solver; lambda stratified over
three bands (< 2, 2-4.5, > 4.5 mm; log-uniform within each, 1-15 mm overall, so some lie
outside the demo database's 2-27 mm plan), origins continuous (between the plan's samples),
grown to a random whole-tumor volume (8-100 cm^3) on a 2 mm grid (3 mm when lambda > 4.5 mm);
trilinear to 1 mm, thresholds jittered (core 0.6 +- 0.05, whole 0.2 +- 0.05), each boundary
eroded / dilated by one voxel or left alone, every fourth case warped by a smooth field of up
to 4 mm; written as BraTS labels (1 where u >= 0.9 inside the core, 4 rest of core, 2 edema).
``--seed-sigma LO HI`` draws the independent seed's size per case (the project's is 2.5 mm).
Each case is fitted by `python main.py tumor fit` in a fresh process (wall time measured
around the subprocess); accuracy from estimate.json. Dice is in-sample (the fit maximizes it
on the same masks); mu1, mu2 and origin errors are against the independent solver's truth.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BANDS = ((1.0, 2.0), (2.0, 4.5), (4.5, 15.0))
MNI_SHAPE = (197, 233, 189)
MNI_AFFINE = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])


def make_case(i: int, path: Path, sigma_range=None) -> dict:
    """One independent case -> truth dict (written beside as JSON). ``sigma_range`` (lo, hi):
    draw the seed's sigma (mm) uniformly there (default: 2.5 mm, the project's seed size)."""
    import nibabel as nib
    from scipy import ndimage

    from engine.tumor.anatomy import load_anatomy
    from fk_independent import fk_simulate, other_copy, smooth_warp

    rng = np.random.default_rng(1000 + i)
    lo, hi = BANDS[i % 3]
    lam = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    h = 2.0 if lam <= 4.5 else 3.0
    an = load_anatomy(h)
    wm, gm = other_copy(an.wm.astype(np.float64), an.gm.astype(np.float64), rng)
    tissue = np.argwhere((wm + gm) >= 0.9)
    o = tissue[rng.integers(len(tissue))] + rng.uniform(-0.5, 0.5, 3)
    target = float(np.exp(rng.uniform(np.log(8), np.log(100))))
    half = int(np.ceil((45 + 4 * lam) / h))
    c0 = np.maximum(np.floor(o).astype(int) - half, 0)
    c1 = np.minimum(np.floor(o).astype(int) + half + 1, wm.shape)
    box = tuple(slice(a, b) for a, b in zip(c0, c1))
    rho = 0.05                                         # 1/day; T = tau / rho
    Dw = (lam / 10) ** 2 * rho
    sigma = 2.5 if sigma_range is None else float(
        np.random.default_rng(5000 + i).uniform(*sigma_range))
    u, times, vols = fk_simulate(wm[box], gm[box], h, Dw, rho, 400.0 / rho * 0.05, o - c0,
                                 record_vol_at=0.2, stop_cm3=target, seed_sigma_mm=sigma)
    T = float(times[-1])
    full = np.zeros(wm.shape)
    full[box] = u
    # to the 1 mm MNI grid (trilinear), optionally warped
    inv = np.linalg.inv(an.affine)
    grid = np.indices(MNI_SHAPE, dtype=np.float32).reshape(3, -1)
    mm = MNI_AFFINE[:3, :3] @ grid + MNI_AFFINE[:3, 3:4]
    vox = inv[:3, :3] @ mm + inv[:3, 3:4]
    warped = i % 4 == 3                  # across all three lambda bands
    if warped:
        d = smooth_warp(wm.shape, 4.0, h, rng)
        vox = vox + np.stack([ndimage.map_coordinates(d[k], vox, order=1) for k in range(3)])
    u1 = ndimage.map_coordinates(full, vox, order=1).reshape(MNI_SHAPE)
    thr = {"core": 0.6 + rng.uniform(-0.05, 0.05), "whole": 0.2 + rng.uniform(-0.05, 0.05)}
    core, whole = u1 >= thr["core"], u1 >= thr["whole"]
    pert = {k: int(rng.integers(-1, 2)) for k in ("core", "whole")}
    for k in ("core", "whole"):
        m = core if k == "core" else whole
        m = ndimage.binary_dilation(m) if pert[k] > 0 else (
            ndimage.binary_erosion(m) if pert[k] < 0 else m)
        if k == "core":
            core = m
        else:
            whole = m | core
    lab = np.zeros(MNI_SHAPE, np.uint8)
    lab[whole] = 2
    lab[core] = 4
    lab[core & (u1 >= 0.9)] = 1
    nib.save(nib.Nifti1Image(lab, MNI_AFFINE), str(path))
    origin_mm = an.vox_to_mm(o)
    truth = {"case": i, "lambda_mm": lam, "tau": rho * T, "T_days": T, "grid_mm": h,
             "mu1_cm": lam / 10 * np.sqrt(rho * T), "mu2": float(np.sqrt(rho * T)),
             "origin_mm": [float(v) for v in origin_mm], "vol_whole_cm3": float(vols[-1]),
             "thresholds": thr, "perturb": pert, "warped": warped, "path": str(path),
             "seed_sigma_mm": sigma}
    path.with_suffix("").with_suffix(".json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fit_cases")
    ap.add_argument("--extra", nargs="*", default=[], help="extra `tumor fit` arguments")
    ap.add_argument("--seed-sigma", nargs=2, type=float, metavar=("LO", "HI"),
                    help="draw each case's seed sigma (mm) in [LO, HI] (default 2.5 mm)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cases_dir = args.cache / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.n):
        path = cases_dir / f"case{i:03d}.nii.gz"
        js = path.with_suffix("").with_suffix(".json")
        t = time.perf_counter()
        truth = json.loads(js.read_text()) if js.exists() and path.exists() else \
            make_case(i, path, args.seed_sigma)
        if not js.exists():
            pass
        out = args.cache / "fits" / f"case{i:03d}"
        t = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run([sys.executable, str(ROOT / "main.py"), "tumor", "fit", "--db",
                            str(args.db), "--seg", str(path), "--out", str(out)] + args.extra,
                           capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        if r.returncode != 0:
            print(f"case {i}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            continue
        d = json.loads((out / "estimate.json").read_text())
        row = {"case": i, "lambda_mm": truth["lambda_mm"], "warped": truth["warped"],
               "vol": truth["vol_whole_cm3"], "wall_s": wall, "cpu_s": cpu,
               "has_core": d["observed"]["vol_core_cm3"] > 0,
               "dice_core": d["dice_core"], "dice_whole": d["dice_whole"],
               "origin_err_mm": float(np.linalg.norm(np.subtract(d["origin_mm"],
                                                                 truth["origin_mm"]))),
               "mu1_rel_err": abs(d["mu1_cm"] / truth["mu1_cm"] - 1),
               "mu2_rel_err": abs(d["mu2"] / truth["mu2"] - 1),
               "mu1_ratio": d["mu1_cm"] / truth["mu1_cm"], "mu2_ratio": d["mu2"] / truth["mu2"],
               "lambda_fit": d["lambda_mm"], "source": d["source"],
               "timings": d["timings_s"]}
        rows.append(row)
        print(f"case {i:2d} lam {truth['lambda_mm']:5.2f} (fit {d['lambda_mm']:5.2f}) vol "
              f"{truth['vol_whole_cm3']:5.1f} warp {int(truth['warped'])} | Dice c "
              f"{d['dice_core']:.2f} w {d['dice_whole']:.2f} | origin {row['origin_err_mm']:4.1f}"
              f" mm | mu1 x{row['mu1_ratio']:.2f} mu2 x{row['mu2_ratio']:.2f} | {wall:.2f} s "
              f"wall {cpu:.2f} s cpu {d['source']}", flush=True)
    print()
    print("| lambda band | n | Dice core* (n with core) | Dice whole* | origin err (mm) | "
          "mu1 rel err | mu2 rel err | wall s (median / max) | CPU s (median / max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (lo, hi) in (("< 2 mm", (0, 2)), ("2-4.5 mm", (2, 4.5)), ("> 4.5 mm", (4.5, 99)),
                           ("all", (0, 99))):
        sel = [r for r in rows if lo <= r["lambda_mm"] < hi]
        if not sel:
            continue

        def med(k, rows=sel):
            return float(np.median([r[k] for r in rows])) if rows else float("nan")

        cored = [r for r in sel if r["has_core"]]
        print(f"| {name} | {len(sel)} | {med('dice_core', cored):.3f} ({len(cored)}) | "
              f"{med('dice_whole'):.3f} | {med('origin_err_mm'):.1f} | {med('mu1_rel_err'):.2f} | "
              f"{med('mu2_rel_err'):.2f} | {med('wall_s'):.2f} / "
              f"{max(r['wall_s'] for r in sel):.2f} | {med('cpu_s'):.2f} / "
              f"{max(r['cpu_s'] for r in sel):.2f} |")
    if rows:
        tol = {"origin_err_mm": 5.0, "mu1_rel_err": 0.2, "mu2_rel_err": 0.2}
        print("within tolerance (origin <= 5 mm, mu1 / mu2 rel err <= 0.20): " + ", ".join(
            f"{k} {sum(r[k] <= v for r in rows)}/{len(rows)}" for k, v in tol.items()))
        warped = [r for r in rows if r["warped"]] or [{"dice_whole": np.nan,
                                                       "origin_err_mm": np.nan}]
        print(f"Dice whole >= 0.90: {sum(r['dice_whole'] >= 0.9 for r in rows)}/{len(rows)}; "
              f"warped cases: median Dice whole "
              f"{np.median([r['dice_whole'] for r in warped]):.3f}, "
              f"origin {np.median([r['origin_err_mm'] for r in warped]):.1f} mm")
    print("* in-sample: the fit maximizes this Dice on the same masks.")
    if rows:
        keys = ("startup", "imports", "open_db", "read", "load", "query", "rerank", "refine",
                "render", "total")
        print("median timings_s: " + ", ".join(
            f"{k} {np.median([r['timings'].get(k, 0) for r in rows]):.3f}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
