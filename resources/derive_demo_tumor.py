#!/usr/bin/env python3
"""Derive the bundled demo segmentation: one synthetic patient simulated by the project's own
solver (engine/tumor/synthetic.py) on the 3 mm atlas grid and written as a 1 mm BraTS label
map in MNI152 space. Run: .venv/bin/python resources/derive_demo_tumor.py"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

OUT = HERE / "demo_tumor"
# Right frontal white matter, moderately infiltrative, about 50 cm^3 of FLAIR-visible tumor.
OVERRIDES = {"origin_mm": [28.0, 18.0, 24.0], "lambda_mm": 3.0, "target_cm3": 50.0,
             "thresholds": {"core": 0.6, "whole": 0.2}, "perturb": {"core": 0, "whole": 0}}


def main() -> None:
    from db.atomic import write_json, write_text
    from engine.tumor.presets import lambda_range
    from engine.tumor.synthetic import make_patient

    truth = make_patient(OUT / "demo_seg.nii.gz", seed=7, db_spacing_mm=4.0,
                         lambda_range_mm=lambda_range(4.0), fine_spacing_mm=3.0,
                         overrides=OVERRIDES)
    truth["path"] = "demo_seg.nii.gz"
    write_json(OUT / "truth.json", truth)
    write_text(OUT / "PROVENANCE.md", f"""# Demo tumor segmentation

`demo_seg.nii.gz`: a synthetic BraTS label map (1 necrosis, 2 edema, 4 enhancing) on the 1 mm
MNI152 grid (197 x 233 x 189), made by `resources/derive_demo_tumor.py` with the project's own
Fisher-Kolmogorov solver on the 3 mm atlas grid (see resources/atlas/PROVENANCE.md for the
anatomy's source and licence). No patient data. Ground truth of the simulation:

```
{json.dumps(truth, indent=2)}
```
""")
    print(OUT / "demo_seg.nii.gz", truth)


if __name__ == "__main__":
    main()
