"""Derive the bundled native-space demo patient (resources/native_demo/) from the bundled MNI152 T1.

A tumor is simulated by the project's solver on the 2 mm atlas (engine/tumor/synthetic.py's
grow_to_volume), drawn into the template T1 as hypointensity; the skull-stripped head is moved
by a known random rigid motion and a smooth deformation (peak 5 mm), resampled on a clinical
anisotropic grid (1 x 1 x 3 mm) stored in LPS order, with a bias field and noise. Writes
scan_t1.nii.gz, seg.nii.gz (BraTS labels 1 / 2 / 4) and truth.json (true parameters, origin in
native RAS and MNI mm, the motion), plus PROVENANCE.md.

    .venv/bin/python resources/derive_native_demo.py [--seed 7]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "resources" / "native_demo"
VOXEL_MM = (1.0, 1.0, 3.0)
ORIENTATION = "LPS"


def main(argv=None) -> int:
    import numpy as np

    from db.atomic import write_json, write_text
    from engine.imaging import synthetic_patient as sp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    tumor = sp.mni_tumor(args.seed, spacing_mm=2.0, lambda_range_mm=(3.0, 7.0), volume_cm3=50.0)
    motion = sp.draw_motion(rng, max_deg=12.0, max_shift_mm=20.0, warp_mm=5.0)
    p = sp.make_native_patient(tumor["labels"], tumor["u"], seed=args.seed, motion=motion,
                               voxel_mm=VOXEL_MM, orientation=ORIENTATION, noise=0.01)
    OUT.mkdir(parents=True, exist_ok=True)
    scan, aff = p["scan"]
    scale = 1000.0 / max(1e-6, float(np.percentile(scan[scan > 0], 99)))
    sp.save_nifti(OUT / "scan_t1.nii.gz", np.round(scan * scale).astype(np.int16), aff)
    seg, _ = p["seg"]
    sp.save_nifti(OUT / "seg.nii.gz", seg.astype(np.uint8), aff)
    truth_map = p["truth"]
    origin_native = truth_map.mni_to_native(np.asarray(tumor["origin_mm"]))
    truth = {"seed": args.seed, "lambda_mm": tumor["lambda_mm"], "tau": tumor["tau"],
             "mu1_cm": tumor["lambda_mm"] / 10 * float(np.sqrt(tumor["tau"])),
             "mu2": float(np.sqrt(tumor["tau"])), "simulated_on_atlas_mm": tumor["spacing_mm"],
             "origin_mni_mm": tumor["origin_mm"],
             "origin_native_mm": [float(v) for v in origin_native],
             "vol_whole_cm3": float((seg > 0).sum() * np.prod(VOXEL_MM) / 1000.0),
             "motion": motion, "voxel_mm": list(VOXEL_MM), "orientation": ORIENTATION,
             "native_to_mni": "x = B y + e(B y), B = inverse(motion_matrix(motion)), e = "
                              "smooth_field(warp_seed, warp_mm): engine/imaging/"
                              "synthetic_patient.py TruthMap",
             "motion_matrix_mni_to_native": truth_map.T.tolist()}
    write_json(OUT / "truth.json", truth)
    sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(OUT.glob("*.nii.gz"))}
    write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
        seed=args.seed, sums="\n".join(f"- `{k}`: sha256 `{v}`" for k, v in sums.items()),
        vol=truth["vol_whole_cm3"]))
    print(f"wrote {OUT}: whole tumor {truth['vol_whole_cm3']:.1f} cm^3, origin native "
          f"{np.round(origin_native, 1).tolist()} mm")
    return 0


PROVENANCE = """# Native-space demo patient (synthetic)

- **Derived by** `resources/derive_native_demo.py --seed {seed}` from the bundled MNI152 T1
  (`resources/mni152/`, ICBM 2009a, see its PROVENANCE.md for the licence notice) and the
  bundled atlas (`resources/atlas/`).
- **Tumor**: simulated by the project's solver on the 2 mm atlas (lambda 3-7 mm, grown to about
  50 cm^3 whole tumor; {vol:.1f} cm^3 on the native grid), labels 1 necrosis (u >= 0.9),
  4 enhancing (u >= 0.6), 2 edema (u >= 0.2); drawn into the T1 as hypointensity.
- **Patient brain**: the skull-stripped template moved by a random rigid motion (up to 12
  degrees, 20 mm) and a smooth deformation (peak 5 mm), resampled on a 1 x 1 x 3 mm grid
  stored LPS, multiplicative bias field and 1 % noise; int16 scan, uint8 labels, scanner-space
  header (sform/qform code 1).
- **truth.json**: true lambda, tau, mu1, mu2, origin in native RAS mm and MNI mm, the motion.
{sums}
"""

if __name__ == "__main__":
    raise SystemExit(main())
