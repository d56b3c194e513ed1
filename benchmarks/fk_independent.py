"""An independent Fisher-Kolmogorov solver and patient maker (benchmarks and tests only).

Deliberately NOT the project's solver: forward Euler (not SSP-RK2), HARMONIC face means of the
diffusivity (not arithmetic), a point-sampled Gaussian seed (not cell averages), the full grid
with a tissue mask at wm + gm >= 0.4 (not 0.5), plain numpy slicing (no sparse operator),
dimensional parameters (Dw, rho, T) integrated in days. Optionally another copy of the tissue
maps: the atlas grid's maps smoothed by one voxel and rescaled (``other_copy``), and a smooth
random warp of the label map (``warp_mm``), like an imperfect registration.

    u = fk_simulate(wm, gm, h_mm, Dw_cm2_per_day, rho_per_day, T_days, origin_vox)
"""
from __future__ import annotations

import numpy as np

SEED_SIGMA_MM = 2.5
BRAIN_MIN = 0.4


def harmonic_faces(d: np.ndarray) -> list[np.ndarray]:
    """Harmonic mean of d on the x, y, z faces (0 where either side is 0)."""
    out = []
    for ax in range(3):
        a = np.take(d, np.arange(d.shape[ax] - 1), axis=ax)
        b = np.take(d, np.arange(1, d.shape[ax]), axis=ax)
        out.append(np.where((a > 0) & (b > 0), 2 * a * b / np.maximum(a + b, 1e-30), 0.0))
    return out


def fk_simulate(wm, gm, h_mm: float, Dw_cm2_per_day: float, rho_per_day: float,
                T_days: float, origin_vox, record_vol_at=None,
                stop_cm3: float | None = None, seed_sigma_mm: float = SEED_SIGMA_MM) -> np.ndarray:
    """u (X, Y, Z) float64 at T_days; forward Euler in days (dt: see below).
    ``record_vol_at``: if a threshold t is given, returns (u, times (n,), volumes_cm3 (n,))
    with the volume at u >= t recorded at every step; with ``stop_cm3`` the run stops at the
    first step where that volume reaches it."""
    brain = (wm + gm) >= BRAIN_MIN
    D = np.where(brain, Dw_cm2_per_day * 100.0 * (wm + 0.1 * gm), 0.0)    # mm^2/day
    fx, fy, fz = harmonic_faces(D)
    g = [np.arange(n) - c for n, c in zip(wm.shape, origin_vox)]
    r2 = (g[0][:, None, None] ** 2 + g[1][None, :, None] ** 2 + g[2][None, None, :] ** 2)
    u = np.exp(-r2 * h_mm ** 2 / (2 * seed_sigma_mm ** 2)) * brain
    # stability: dt <= h^2 / (6 Dmax) (used at 0.4); accuracy: rho dt <= 0.02 (forward Euler
    # fronts within ~1 % of converged)
    dt_max = min(0.4 * h_mm ** 2 / (6 * max(D.max(), 1e-12)), 0.02 / rho_per_day)
    n = int(np.ceil(T_days / dt_max))
    dt = T_days / n
    times, vols = [], []
    for k in range(n):
        d = np.zeros_like(u)
        for f, ax in ((fx, 0), (fy, 1), (fz, 2)):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[ax], hi[ax] = slice(0, -1), slice(1, None)
            flux = f * (u[tuple(hi)] - u[tuple(lo)])
            d[tuple(lo)] += flux
            d[tuple(hi)] -= flux
        u = u + dt * (d / h_mm ** 2 + rho_per_day * u * (1 - u))
        u *= brain
        if record_vol_at is not None:
            times.append((k + 1) * dt)
            vols.append(float((u >= record_vol_at).sum()) * (h_mm / 10) ** 3)
            if stop_cm3 is not None and vols[-1] >= stop_cm3:
                break
    if record_vol_at is not None:
        return u, np.array(times), np.array(vols)
    return u


def other_copy(wm, gm, rng) -> tuple[np.ndarray, np.ndarray]:
    """Another copy of the tissue maps: smoothed by a 3-voxel box, each scaled by 1 +- 5 %."""
    from scipy import ndimage

    s = rng.uniform(0.95, 1.05, 2)
    return (np.clip(ndimage.uniform_filter(wm, 3) * s[0], 0, 1),
            np.clip(ndimage.uniform_filter(gm, 3) * s[1], 0, 1))


def smooth_warp(shape, max_mm: float, h_mm: float, rng) -> np.ndarray:
    """A smooth displacement field (3, X, Y, Z) in voxels with max |d| ~ max_mm."""
    from scipy import ndimage

    d = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 20.0 / h_mm)
                  for _ in range(3)])
    m = np.abs(d).max()
    return d / max(m, 1e-12) * (max_mm / h_mm)
