"""What a tumor database is built from: the code version and the presets (the one place to
change them; the database module, the build and the CLI all read them from here).

Snapshot rule: one run per (lambda, origin) keeps a snapshot whenever the whole-tumor volume
(u >= THRESHOLDS["whole"]) grew by ``growth`` and lies in [VOL_MIN_CM3, a third of the brain].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.tumor.params import LAMBDA_RANGE_MM

CODE_VERSION = "tumor-db-4"        # bump when the solver, sampling, storage or embedding changes
# (4: physical seed, sigma 2.5 mm on every grid: helper "fit")
VOL_MIN_CM3 = 1.0
VOL_MAX_BRAIN_FRACTION = 1.0 / 3.0


@dataclass(frozen=True)
class Preset:
    spacing_mm: float
    n_runs: int
    batch: int            # runs integrated together in one tensor (and written as one shard)
    n_candidates: int     # candidate snapshot taus per run
    growth: float         # keep a snapshot when the whole-tumor volume grew by this factor


PRESETS = {
    "tiny": Preset(spacing_mm=8, n_runs=16, batch=4, n_candidates=48, growth=1.4),
    "demo": Preset(spacing_mm=4, n_runs=240, batch=8, n_candidates=120, growth=1.25),
    "standard": Preset(spacing_mm=3, n_runs=2600, batch=8, n_candidates=160, growth=1.2),
    "large": Preset(spacing_mm=2, n_runs=4800, batch=8, n_candidates=200, growth=1.2),
}


def lambda_range(spacing_mm: float) -> tuple[float, float]:
    """The design's lambda range [mm], clamped below at the grid's resolution limit (h / 2)."""
    from engine.tumor.solver import min_lambda_mm

    return max(LAMBDA_RANGE_MM[0], min_lambda_mm(spacing_mm)), LAMBDA_RANGE_MM[1]


def tau_max(lambda_mm) -> np.ndarray:
    """Last candidate tau of a run: time to appear plus time for the front to cross ~12 cm."""
    return 12.0 + 120.0 / (2.0 * np.asarray(lambda_mm, dtype=np.float64))
