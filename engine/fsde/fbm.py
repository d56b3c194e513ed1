"""Exact fractional Brownian motion (Davies-Harte) and fractional Ornstein-Uhlenbeck paths.

Standard fBM here has Var B_H(t) = t^(2H) and stationary increments (Mandelbrot-van Ness up to
the constant). numpy only; used by tests and benchmarks as ground truth.
"""
from __future__ import annotations

import numpy as np


def fgn_autocovariance(H: float, n: int) -> np.ndarray:
    """Autocovariance r(k), k = 0..n-1, of unit-step fractional Gaussian noise: (n,)."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 * (np.abs(k + 1) ** (2 * H) - 2 * k ** (2 * H) + np.abs(k - 1) ** (2 * H))


def fgn(n: int, H: float, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    """Exact fractional Gaussian noise by circulant embedding (Davies-Harte):
    (n_paths, n) increments of standard fBM on a unit grid (variance 1 each)."""
    if not 0.0 < H < 1.0:
        raise ValueError("H must lie in (0, 1)")
    r = fgn_autocovariance(H, n + 1)
    row = np.concatenate([r, r[-2:0:-1]])             # circulant first row, length 2n
    lam = np.fft.fft(row).real
    if lam.min() < -1e-10 * lam.max():
        raise ValueError("circulant embedding is not non-negative definite")
    lam = np.clip(lam, 0.0, None)
    m = row.size
    z = rng.standard_normal((n_paths, m)) + 1j * rng.standard_normal((n_paths, m))
    return np.fft.fft(np.sqrt(lam / m) * z, axis=1).real[:, :n]


def fbm(n_steps: int, H: float, n_paths: int = 1, dt: float = 1.0,
        rng: np.random.Generator | None = None) -> np.ndarray:
    """Standard fBM on t = 0, dt, ..., n_steps*dt: (n_paths, n_steps + 1), B(0) = 0,
    Var B(t) = t^(2H)."""
    rng = rng if rng is not None else np.random.default_rng()
    inc = fgn(n_steps, H, n_paths, rng) * dt ** H
    return np.concatenate([np.zeros((n_paths, 1)), np.cumsum(inc, axis=1)], axis=1)


def fou(n_steps: int, H: float, n_paths: int = 1, dt: float = 1.0, theta: float = 1.0,
        sigma: float = 1.0, x0: float = 0.0, substeps: int = 8, obs_noise: float = 0.0,
        rng: np.random.Generator | None = None) -> np.ndarray:
    """Fractional OU dX = -theta X dt + sigma dB_H on t = 0, dt, ..., n_steps*dt, simulated
    on a grid ``substeps`` times finer with exact fBM increments (exponential Euler), then
    observed with i.i.d. N(0, obs_noise^2) noise: (n_paths, n_steps + 1)."""
    rng = rng if rng is not None else np.random.default_rng()
    h = dt / substeps
    inc = fgn(n_steps * substeps, H, n_paths, rng) * h ** H * sigma
    decay = np.exp(-theta * h)
    x = np.full(n_paths, float(x0))
    out = [x.copy()]
    for i in range(n_steps * substeps):
        x = x * decay + inc[:, i]
        if (i + 1) % substeps == 0:
            out.append(x.copy())
    path = np.stack(out, axis=1)
    return path + obs_noise * rng.standard_normal(path.shape)
