"""Sequence data: loading (.npy / .csv) with validation, scaling, and the synthetic PFSM set.

A data set is ``(X, lengths)``: X (N, T, D) float64 padded with NaN after each sequence's
end, lengths (N,) int steps per sequence (ragged lengths allowed).

File formats:
- ``.npy``: (N, T, D); a sequence may end early with all-NaN rows to its end (padding).
- ``.csv``: one row per step, one column per dimension; an optional header row; a blank
  line, or a column named ``sequence`` (its value changes between sequences), separates
  sequences.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from engine.jobs import InputError

MARGIN = 0.9  # data are scaled into [-MARGIN, MARGIN] within tanh's [-1, 1]
MAX_ABS = 1e150  # larger values overflow the scaling range and squared errors


def load_sequences(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a data file: returns X (N, T, D) NaN-padded, lengths (N,)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Data file '{path}' does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as err:
            raise InputError(f"Data file '{path}' is not a readable .npy array ({err}).") from None
        X, lengths = _check_array(x, path)
    elif suffix == ".csv":
        X, lengths = _check_list(_read_csv(path), path)
    else:
        raise InputError(f"Data file '{path}' must be .npy (N, T, D) or .csv (one row per "
                         "step).")
    big = np.abs(np.nan_to_num(X)) > MAX_ABS
    if big.any():
        n, t, d = np.argwhere(big)[0]
        raise InputError(f"Data file '{path}' has the value {X[n, t, d]:.3g} in sequence {n} "
                         f"at step {t}; values must lie within +-{MAX_ABS:g}.")
    return X, lengths


def _check_array(x: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"Data file '{path}' holds {x.dtype} values, not real numbers.")
    if x.ndim != 3:
        raise InputError(f"Data file '{path}' has shape {x.shape}; expected 3 axes "
                         "(sequences N, steps T, dimensions D).")
    if x.size == 0:
        raise InputError(f"Data file '{path}' is empty (shape {x.shape}).")
    x = x.astype(np.float64)
    if np.isinf(x).any():
        n, t, _ = np.argwhere(np.isinf(x))[0]
        raise InputError(f"Data file '{path}' has an infinite value in sequence {n} at step {t}.")
    bad = np.isnan(x)
    row_nan = bad.all(-1)  # (N, T)
    lengths = np.where(row_nan.any(1), row_nan.argmax(1), x.shape[1])
    for n in range(x.shape[0]):
        inside = bad[n, :lengths[n]].any(-1)
        partial = bad[n].any(-1) & ~row_nan[n]
        if inside.any() or partial.any() or not row_nan[n, lengths[n]:].all():
            t = int(np.argmax(inside)) if inside.any() else int(np.argmax(
                partial | (~row_nan[n] & (np.arange(x.shape[1]) >= lengths[n]))))
            raise InputError(f"Data file '{path}' has a missing (NaN) value in sequence {n} at "
                             f"step {t}; NaN is allowed only as padding after a sequence's end.")
    if (lengths == 0).any():
        raise InputError(f"Data file '{path}': sequence {int(np.argmin(lengths))} has no steps.")
    return x, lengths.astype(np.int64)


def _read_csv(path: Path) -> list[np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"Data file '{path}' is not a text CSV file.") from None
    rows = list(csv.reader(text.splitlines()))
    seqs: list[list[list[float]]] = [[]]
    header, seq_col, width, last_id = None, None, None, None
    for lineno, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells):
            if seqs[-1]:
                seqs.append([])
            continue
        if header is None and width is None and not _is_number(cells[0]):
            header = [c.lower() for c in cells]
            seq_col = header.index("sequence") if "sequence" in header else None
            width = len(cells)
            continue
        if width is None:
            width = len(cells)
        if len(cells) != width:
            raise InputError(f"Data file '{path}' line {lineno} has {len(cells)} columns, "
                             f"expected {width} like the lines before it.")
        try:
            vals = [float(c) for c in cells]
        except ValueError:
            raise InputError(f"Data file '{path}' line {lineno} has a value that is not a "
                             "number.") from None
        if seq_col is not None:
            sid = vals.pop(seq_col)
            if last_id is not None and sid != last_id and seqs[-1]:
                seqs.append([])
            last_id = sid
        seqs[-1].append(vals)
    seqs = [s for s in seqs if s]
    if not seqs or not seqs[0] or not seqs[0][0]:
        raise InputError(f"Data file '{path}' has no data rows.")
    out = [np.asarray(s, dtype=np.float64) for s in seqs]
    for n, s in enumerate(out):
        if not np.isfinite(s).all():
            t = int(np.argwhere(~np.isfinite(s))[0, 0])
            raise InputError(f"Data file '{path}' has a missing or infinite value in sequence "
                             f"{n} at step {t}.")
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _check_list(seqs: list[np.ndarray], path) -> tuple[np.ndarray, np.ndarray]:
    return pad(seqs)


def pad(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """List of (T_i, D) arrays -> X (N, T_max, D) NaN-padded, lengths (N,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    X = np.full((len(seqs), lengths.max(), seqs[0].shape[1]), np.nan)
    for n, s in enumerate(seqs):
        X[n, :len(s)] = s
    return X, lengths


def fit_scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (lo, hi) (D,) from NaN-padded X (N, T, D); constant channels get a unit range."""
    lo = np.nanmin(X, axis=(0, 1))
    hi = np.nanmax(X, axis=(0, 1))
    flat = hi - lo < 1e-12
    lo, hi = np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)
    return lo, hi


def to_scaled(X, lo, hi):
    """Data units -> [-MARGIN, MARGIN] (NaN stays NaN)."""
    return (2.0 * (X - lo) / (hi - lo) - 1.0) * MARGIN


def from_scaled(Xs, lo, hi):
    return (Xs / MARGIN + 1.0) * 0.5 * (hi - lo) + lo


def check_dim(X: np.ndarray, dim: int, path, model_path) -> None:
    if X.shape[-1] != dim:
        raise InputError(f"Data file '{path}' has {X.shape[-1]} dimensions but the model "
                         f"'{model_path}' was trained on {dim}.")


# --------------------------------------------------------------------------- synthetic set
PERIOD = 24  # steps per primitive


def primitives(period: int = PERIOD) -> list[np.ndarray]:
    """Four closed 2-D patterns, each (period, 2), starting and ending at the origin so the
    machine can switch between them smoothly: a circle, a figure eight, a tall ellipse
    and a double loop."""
    s = np.arange(period) / period * 2 * np.pi
    circle = np.stack([np.cos(s) - 1, np.sin(s)], -1) * 0.8
    eight = np.stack([np.sin(s), np.sin(2 * s) / 2], -1)
    ellipse = np.stack([0.4 * np.sin(s), 1 - np.cos(s)], -1) * 0.7
    double = np.stack([np.sin(2 * s) * 0.5, -(1 - np.cos(s)) * 0.6], -1)
    return [circle, eight, ellipse, double]


# transition probabilities between primitives (rows sum to 1): a probabilistic FSM
PFSM = np.array([[0.0, 0.7, 0.3, 0.0],
                 [0.0, 0.0, 0.6, 0.4],
                 [0.5, 0.0, 0.0, 0.5],
                 [0.8, 0.2, 0.0, 0.0]])


def synthetic(n: int, length: int, seed: int, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (n, length, 2) of primitives switched by the PFSM, plus the state
    (primitive index) at each step (n, length). Small Gaussian noise in data units."""
    rng = np.random.default_rng(seed)
    prims = primitives()
    X = np.empty((n, length, 2))
    S = np.empty((n, length), dtype=np.int64)
    for i in range(n):
        state, t = int(rng.integers(len(prims))), 0
        while t < length:
            take = min(PERIOD, length - t)
            X[i, t:t + take] = prims[state][:take]
            S[i, t:t + take] = state
            t += take
            state = int(rng.choice(len(prims), p=PFSM[state]))
    X += noise * rng.standard_normal(X.shape)
    return X, S
