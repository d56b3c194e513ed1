"""CPU seconds of each in-process fit stage with the database open (the GUI's path).

    .venv/bin/python benchmarks/tumor_fit_stages.py --db DB_DIR [--cases DIR] [--n 8]

For the first --n cases written by benchmarks/tumor_fit_cases.py (DIR/case*.json + .nii.gz):
read (load_observation), load (resample to the database grid), query + rerank (fit without
refine), refine (fit with refine minus the former), render (export.render: both NIfTIs and
the text files). time.process_time of this process (all threads), median over the cases.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--cases", type=Path, default=Path("/tmp/fit_cases/cases"))
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args(argv)
    from engine.tumor import inverse
    from engine.tumor.database import TumorDatabase
    from engine.tumor.export import render

    db = TumorDatabase.open(args.db)
    t = {k: [] for k in ("read", "load", "query+rerank", "refine", "render")}
    for cj in sorted(glob.glob(str(args.cases / "case*.json")))[:args.n]:
        truth = json.loads(Path(cj).read_text())
        c = time.process_time()
        obs = inverse.load_observation(seg=truth["path"])
        t["read"].append(time.process_time() - c)
        c = time.process_time()
        prep = inverse.to_database_grid(obs, db.anatomy)
        t["load"].append(time.process_time() - c)
        c = time.process_time()
        inverse.fit(db, obs, prepared=prep, refine=False)
        t["query+rerank"].append(time.process_time() - c)
        c = time.process_time()
        est = inverse.fit(db, obs, prepared=prep)
        t["refine"].append(time.process_time() - c - t["query+rerank"][-1])
        c = time.process_time()
        render(est)
        t["render"].append(time.process_time() - c)
    med = {k: float(np.median(v)) for k, v in t.items()}
    print("median CPU s: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    print(f"in-GUI fit (read from memory, no render): "
          f"{med['load'] + med['query+rerank'] + med['refine']:.3f} s CPU")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
