"""Native-space pipeline benchmark: synthetic native patients from the bundled MNI152 T1.

Each patient: a tumor simulated by the solver on the 2 mm atlas (random lambda, origin, volume),
drawn into the template T1 as hypointensity; the head moved by a known random rigid + affine
motion (up to 12 degrees, 20 mm, 5 % scaling) and a smooth warp (peak 5 mm), resampled on a
random clinical grid (anisotropic, LPS / LAS / RAS), bias field and noise, mostly
skull-stripped. Variants: registration library x method x level, and the MNI-space fit of the
same tumor (the ceiling, no registration). Reports per stage time, registration error (mm, over
template brain points, mean and 95th percentile, against the known transform), Dice core /
whole on the native grid and origin error in native mm. Medians over patients.

    nice .venv/bin/python benchmarks/tumor_native.py --db /tmp/nativedb [--n 12] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GRIDS = (((0.94, 0.94, 1.5), "LPS"), ((1.0, 1.0, 3.0), "LAS"), ((1.2, 1.2, 1.2), "RAS"),
         ((0.9, 0.9, 2.0), "LPS"), ((1.0, 1.0, 1.0), "LAS"), ((0.8, 0.8, 4.0), "LPI"))
FULL = (("ants", "affine", 2.0), ("ants", "syn", 2.0), ("ants", "syn", 1.0),
        ("sitk", "affine", 2.0), ("sitk", "syn", 2.0))
QUICK = (("ants", "affine", 2.0), ("ants", "syn", 2.0), ("sitk", "syn", 2.0))


def make_case(seed: int):
    import numpy as np

    from engine.imaging import from_array
    from engine.imaging import synthetic_patient as sp

    rng = np.random.default_rng(1000 + seed)
    vol = float(np.exp(rng.uniform(np.log(20), np.log(90))))
    # lambda 2-5 mm: tumors with a visible core (u >= 0.6); with lambda up to 8 mm many grown
    # tumors have no core at all, and Dice core then measures nothing
    tumor = sp.mni_tumor(seed, spacing_mm=2.0, lambda_range_mm=(2.0, 5.0), volume_cm3=vol)
    motion = sp.draw_motion(rng, max_deg=12.0, max_shift_mm=20.0, affine_pct=5.0, warp_mm=5.0)
    voxel, orient = GRIDS[seed % len(GRIDS)]
    p = sp.make_native_patient(tumor["labels"], tumor["u"], seed=seed, motion=motion,
                               voxel_mm=voxel, orientation=orient,
                               stripped=bool(seed % 4 != 3), bias=float(rng.uniform(0, 0.25)),
                               noise=float(rng.uniform(0.005, 0.03)))
    scan = from_array(*p["scan"], "scan", f"case{seed}_t1.nii.gz")
    seg = from_array(*p["seg"], "labels", f"case{seed}_seg.nii.gz")
    origin_native = p["truth"].mni_to_native(np.asarray(tumor["origin_mm"]))
    return {"scan": scan, "seg": seg, "truth": p["truth"], "tumor": tumor,
            "origin_native": origin_native, "grid": f"{voxel} {orient}",
            "stripped": bool(seed % 4 != 3)}


def dice(a, b) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def reg_error(reg, truth):
    import numpy as np

    from engine.imaging.registration import template_brain_mask

    m, a = template_brain_mask(2.0)
    x = (np.argwhere(m) @ a[:3, :3].T + a[:3, 3])[::3]
    e = np.linalg.norm(reg.mni_to_native(x) - truth.mni_to_native(x), axis=1)
    return float(e.mean()), float(np.percentile(e, 95))


def run_variant(case, db, lib, method, level, days=100.0):
    import numpy as np

    from engine.imaging.patient import Patient
    from engine.imaging.registration import RegOptions
    from engine.tumor.native import personalize_native

    t = time.perf_counter()
    nf = personalize_native(Patient(scan=case["scan"], seg=case["seg"]), db, days=days,
                            options=RegOptions(library=lib, method=method, level_mm=level,
                                               cache=False))
    wall = time.perf_counter() - t
    seg = case["seg"]
    lab_true = np.asarray(seg.data)
    # native outputs are on the seg's FILE grid; compare in the file's own order
    lab_fit = nf.labels_native
    true_file = _to_file(seg, lab_true)
    core_t, whole_t = np.isin(true_file, (1, 3, 4)), true_file > 0
    em, e95 = reg_error(nf.registration, case["truth"])
    ts = nf.estimate.timings_s
    return {"dice_core": dice(lab_fit == 1, core_t), "dice_whole": dice(lab_fit > 0, whole_t),
            "origin_err_mm": float(np.linalg.norm(nf.origin_native_mm - case["origin_native"])),
            "reg_err_mean_mm": em, "reg_err_p95_mm": e95, "wall_s": wall,
            "t_register_s": float(ts.get("register", 0)),
            "t_fit_s": float(sum(ts.get(k, 0) for k in ("load", "query", "rerank", "refine"))),
            "t_map_back_s": float(ts.get("to_native", 0) + ts.get("to_mni", 0)),
            "ncc_after": nf.registration.metric_after}


def _to_file(vol, ras_data):
    """RAS+ array of ``vol`` -> the file's own voxel order (as the native outputs are)."""
    import numpy as np

    inv = np.linalg.inv(vol.to_file)
    idx = np.indices(vol.file_shape).reshape(3, -1).T
    r = np.rint(idx @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    return ras_data[tuple(r.T)].reshape(vol.file_shape)


def run_mni(case, db, days=100.0):
    import numpy as np

    from engine.imaging import from_array
    from engine.imaging.registration import template_volume
    from engine.tumor import service

    t0 = time.perf_counter()
    tv = template_volume()
    vol = from_array(case["tumor"]["labels"].astype(np.int16), tv.affine, "labels", "mni.nii.gz")
    res = service.fit(db, service.FitRequest(volume=vol, T_days=days), render=False)
    est = res.estimate
    from engine.tumor.export import labels_from_u, on_grid

    u1 = on_grid(est.u, est.anatomy.affine, tv.shape, tv.affine)
    lab = labels_from_u(u1, est.thresholds)
    tl = case["tumor"]["labels"]
    return {"dice_core": dice(lab == 1, np.isin(tl, (1, 3, 4))),
            "dice_whole": dice(lab > 0, tl > 0),
            "origin_err_mm": float(np.linalg.norm(np.asarray(est.origin_mm)
                                                  - case["tumor"]["origin_mm"])),
            "reg_err_mean_mm": 0.0, "reg_err_p95_mm": 0.0,
            "wall_s": time.perf_counter() - t0, "t_register_s": 0.0,
            "t_fit_s": float(sum(est.timings_s.get(k, 0) for k in ("load", "query", "rerank",
                                                                    "refine"))),
            "t_map_back_s": 0.0, "ncc_after": 1.0}


KEYS = ("dice_whole", "dice_core", "origin_err_mm", "reg_err_mean_mm", "reg_err_p95_mm",
        "t_register_s", "t_fit_s", "t_map_back_s", "wall_s")


def main(argv=None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("/tmp/nativedb"))
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="3 patients, 2 mm variants only")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write all rows here")
    ap.add_argument("--variants", help="comma-separated 'library method level', e.g. "
                                       "'ants syn 2,sitk syn 2' (default: all)")
    args = ap.parse_args(argv)
    os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="native_bench_"))
    from engine.imaging.registration import set_threads
    from engine.tumor import service

    set_threads(2)
    n = 3 if args.quick and args.n == 12 else args.n
    variants = QUICK if args.quick else FULL
    if args.variants:
        variants = tuple((v.split()[0], v.split()[1], float(v.split()[2]))
                         for v in args.variants.split(","))
    db = service.open_database(args.db)
    rows = []
    try:
        for i in range(n):
            seed = args.seed0 + i
            t = time.perf_counter()
            case = make_case(seed)
            t_make = time.perf_counter() - t
            lab = case["tumor"]["labels"]
            print(f"case {seed}: grid {case['grid']}, stripped {case['stripped']}, whole "
                  f"{(lab > 0).sum() / 1000:.1f} cm3, core "
                  f"{np.isin(lab, (1, 3, 4)).sum() / 1000:.1f} cm3 (made in {t_make:.0f} s)",
                  flush=True)
            for lib, method, level in variants:
                try:
                    r = run_variant(case, db, lib, method, level)
                except Exception as err:        # a failed case is a row, not a crash
                    r = {"error": f"{type(err).__name__}: {err}"}
                r.update(case=seed, variant=f"{lib} {method} {level:g}mm")
                rows.append(r)
                print("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                         for k, v in r.items()}), flush=True)
            r = run_mni(case, db)
            r.update(case=seed, variant="MNI-space fit (ceiling)")
            rows.append(r)
            print("  " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                     for k, v in r.items()}), flush=True)
    finally:
        db.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    names = [f"{lib} {m} {lv:g}mm" for lib, m, lv in variants] + ["MNI-space fit (ceiling)"]
    print(f"\nmedians over {n} patients (failed cases counted as Dice 0, shown in 'fail')")
    print(f"{'variant':26s} {'fail':>4s} " + " ".join(f"{k[:14]:>14s}" for k in KEYS))
    for name in names:
        sel = [r for r in rows if r["variant"] == name]
        ok = [r for r in sel if "error" not in r]
        vals = []
        for k in KEYS:
            v = [r[k] for r in ok] + ([0.0] * (len(sel) - len(ok)) if k.startswith("dice")
                                      else [])
            vals.append(float(np.median(v)) if v else float("nan"))
        print(f"{name:26s} {len(sel) - len(ok):4d} " + " ".join(f"{v:14.3f}" for v in vals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
