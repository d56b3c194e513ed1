"""Online error regression (ER): predict every sequence step by step.

At step t (0-based) the window holds steps s..t, s = max(0, t - W + 1), and only the
observations of those steps. Weights are frozen; the window's adaptive vectors A are
optimized by Adam (fresh state each step, ``iterations`` updates, posterior mean, no
sampling, so runs are deterministic); the new step's A starts at the prior of that step
and the others at their values from step t - 1. When the window slides, the state before
it advances one step with the departing step's final A. Then the prior (z = prior mean)
generates H steps ahead from the state at t.

All sequences of a chunk advance together (same t): their losses are independent sums
and Adam is elementwise, so batching changes the arithmetic only by floating-point rounding
(BLAS kernels differ with the batch size). Note that ER can amplify such rounding over
many steps: on BasicMotions, chunk 1 vs 40 agree to 0.002 (median) per prediction and
to 4 significant digits in RMSE, but single predictions late in a sequence can differ.
"""
from __future__ import annotations

import time

import numpy as np

from engine.jobs import CancelToken, Progress
from engine.pvrnn.config import ERSettings
from engine.pvrnn.data import from_scaled, to_scaled
from engine.pvrnn.model import PVRNN, Adam, single_thread_blas

_DEFAULT = ERSettings()  # the one definition of the defaults (engine/pvrnn/config.py)


def error_regression(*args, **kwargs) -> dict:
    """See _error_regression; runs with single-threaded BLAS (faster for small matrices).
    :func:`engine.pvrnn.prediction.predict` wraps it into a checked Prediction."""
    with single_thread_blas():
        return _error_regression(*args, **kwargs)


def _error_regression(model: PVRNN, lo, hi, X: np.ndarray, lengths: np.ndarray, *,
                     window: int = _DEFAULT.window, iterations: int = _DEFAULT.iterations,
                     lr: float = _DEFAULT.lr, horizon: int = _DEFAULT.horizon,
                     meta_prior: float | None = _DEFAULT.meta_prior,
                     chunk: int | None = None, progress: Progress | None = None,
                     cancel: CancelToken | None = None) -> dict:
    """X (N, T, D) in data units, NaN-padded after ``lengths`` (N,). Returns arrays in data
    units: observed (N, T, D); predictions (N, T, H, D), predictions[n, t, h] made after
    steps 0..t for step t + h + 1 (NaN past the end); reconstruction (N, T, W, D), the
    window's posterior reconstruction at step t (row W-1 is step t; NaN before the start);
    kl (N, T, L) KL(q || p) of step t after ER, summed over z units; latency_ms (N, T)
    wall time of the step for the whole chunk (all its sequences wait for it)."""
    progress = progress or Progress()
    cancel = cancel or CancelToken()
    N, T, D = X.shape
    chunk = chunk or N
    L, H, W = model.L, int(horizon), int(window)
    w = None if meta_prior is None else [float(meta_prior)] * L
    out = {"observed": X.astype(np.float32),
           "predictions": np.full((N, T, H, D), np.nan, np.float32),
           "reconstruction": np.full((N, T, W, D), np.nan, np.float32),
           "kl": np.full((N, T, L), np.nan, np.float32),
           "latency_ms": np.full((N, T), np.nan, np.float32)}
    total_steps = int(np.sum(lengths))
    done_steps = 0
    for b0 in range(0, N, chunk):
        idx = np.arange(b0, min(N, b0 + chunk))
        Xs = np.transpose(to_scaled(X[idx], lo, hi), (1, 0, 2))  # (T, B, D)
        lens = np.asarray(lengths)[idx]
        B = len(idx)
        h_init = model.zeros_state(B)   # state before the window's first step
        h_last = model.zeros_state(B)   # state at step t - 1
        Amu = [np.zeros((0, B, lay.z)) for lay in model.layers]
        Asig = [np.zeros((0, B, lay.z)) for lay in model.layers]
        for t in range(int(lens.max())):
            cancel.check()
            t0 = time.perf_counter()
            active = lens > t                                    # (B,)
            s = max(0, t - W + 1)
            if t >= W:  # slide: the departing step becomes part of the fixed past
                h_init = model.advance(h_init, [a[0] for a in Amu])
                Amu = [a[1:] for a in Amu]
                Asig = [a[1:] for a in Asig]
            new_mu, new_sig = model.prior_init(h_last, first=(t == 0))
            Amu = [np.concatenate([a, n[None]]) for a, n in zip(Amu, new_mu)]
            Asig = [np.concatenate([a, n[None]]) for a, n in zip(Asig, new_sig)]
            n_win = t - s + 1
            mask = np.broadcast_to(active[None, :], (n_win, B)).astype(np.float64)
            # only steps s..t are read; inactive sequences (past their end) are masked
            obs = np.where(active[None, :, None], Xs[s:t + 1], 0.0)
            arrays = Amu + Asig
            adam = Adam(arrays, lr)
            for _ in range(iterations):
                c = model.forward(Amu, Asig, h0=h_init, first=(s == 0), w=w)
                gmu, gsig, _ = model.backward(c, obs, mask, float(n_win), want_params=False)
                adam.step(arrays, gmu + gsig)
            c = model.forward(Amu, Asig, h0=h_init, first=(s == 0), w=w)
            h_last = [c[f"h_last{l}"] for l in range(L)]
            pred = model.generate(h_last, H)                      # (H, B, D)
            kl = np.stack([k[-1] for k in model.kl(c)], -1)       # (B, L)
            dt_ms = (time.perf_counter() - t0) * 1000.0
            act = idx[active]
            steps_left = lens[active] - t - 1                     # valid horizons per seq
            p = from_scaled(np.transpose(pred[:, active], (1, 0, 2)), lo, hi)  # (b, H, D)
            p[np.arange(H)[None, :] >= steps_left[:, None]] = np.nan
            out["predictions"][act, t] = p
            rec = from_scaled(np.transpose(c["x_hat"][:, active], (1, 0, 2)), lo, hi)
            out["reconstruction"][act, t, W - n_win:] = rec
            out["kl"][act, t] = kl[active]
            out["latency_ms"][act, t] = dt_ms
            done_steps += int(active.sum())
            if t % 5 == 0:
                progress.update(done_steps / total_steps,
                                f"sequence {b0 + 1}-{idx[-1] + 1}/{N} step {t + 1}/{lens.max()}")
    progress.done(f"{N} sequences, median {np.nanmedian(out['latency_ms']):.1f} ms per step")
    return out


def prior_alone(model: PVRNN, lo, hi, X: np.ndarray, lengths: np.ndarray,
                horizon: int) -> np.ndarray:
    """Baseline: the network's prior generation from the first step, never looking at data:
    predictions (N, T, H, D) in data units for step t + h + 1 (NaN past each end)."""
    N, T, D = X.shape
    gen = model.generate(model.zeros_state(N), T + horizon, first=True)  # (T+H, N, D)
    gen = from_scaled(np.transpose(gen, (1, 0, 2)), lo, hi)
    t = np.arange(T)[:, None] + np.arange(horizon)[None, :] + 1         # (T, H) target step
    pred = gen[:, t]                                                    # (N, T, H, D)
    pred[t[None] >= np.asarray(lengths)[:, None, None]] = np.nan
    return pred.astype(np.float32)


def persistence(X: np.ndarray, lengths: np.ndarray, horizon: int) -> np.ndarray:
    """Baseline: the last observation repeated: (N, T, H, D)."""
    N, T, D = X.shape
    pred = np.repeat(X[:, :, None, :], horizon, axis=2).astype(np.float32)
    t = np.arange(T)[:, None] + np.arange(horizon)[None, :] + 1
    pred[t[None] >= np.asarray(lengths)[:, None, None]] = np.nan
    return pred


def horizon_rmse(observed: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """RMSE per horizon (H,) in data units over all sequences, steps and channels where
    the target exists."""
    N, T, H, D = predictions.shape
    err = np.full(H, np.nan)
    for h in range(H):
        target = observed[:, h + 1:]                     # (N, T-h-1, D)
        pred = predictions[:, :T - h - 1, h]
        ok = np.isfinite(target) & np.isfinite(pred)
        if ok.any():
            err[h] = np.sqrt(np.mean((pred[ok] - target[ok]) ** 2))
    return err
