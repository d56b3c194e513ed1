"""Markov-approximate fractional Brownian motion (MA-fBM), Daems et al. (ICLR 2024).

K Ornstein-Uhlenbeck processes driven by one Brownian motion W,

    dY_k = -gamma_k Y_k dt + dW,      gamma_k = r^(k - (K+1)/2),  r = gamma_max^(2/(K-1)),

approximate fBM with Hurst index H as

    type "II" (Riemann-Liouville, Y_k(0) = 0):   B_hat(t) = sum_k omega_k Y_k(t)
    type "I"  (Mandelbrot-van Ness, Y stationary): B_hat(t) = sum_k omega_k (Y_k(t) - Y_k(0))

Both fBM types are scaled by 1/Gamma(H + 1/2) (not unit variance):

    II: B_H(t) = 1/Gamma(a) int_0^t (t-s)^(a-1) dW_s,                         a = H + 1/2
    I : B_H(t) = 1/Gamma(a) int_-inf^t ((t-s)_+^(a-1) - (-s)_+^(a-1)) dW_s

The weights omega = A^-1 b minimise int_0^T E(B_H(t) - B_hat(t))^2 dt with
A_ij = int_0^T E[Y_i Y_j] dt (closed form, exponentials only) and b_k = int_0^T E[B_H Y_k] dt.
b has closed forms with regularised incomplete gamma functions P and Q (``b_closed``, scipy,
float64, used to check), but torch cannot differentiate gammainc in its first argument, so
``b_vector`` evaluates the same integrals by graded Gauss-Legendre quadrature, which autograd
differentiates in H (relative accuracy ~1e-12):

    II: b_k = 1/Gamma(a) int_0^T (T-u) u^(a-1) e^(-gamma_k u) du
    I : b_k = gamma^-a [2T - (1 - e^(-X))/gamma - (D(X) - 1 + X^a/Gamma(a+1))/gamma],
        X = gamma_k T,   D(X) = e^X Q(a, X) = 1/Gamma(a) int_0^inf (X+z)^(a-1) e^(-z) dz

All functions take and return torch tensors (float64 recommended); shapes are stated per
function. Time is in the model's units (T = length of the window the weights are fitted on).
"""
from __future__ import annotations

import math

import numpy as np

from engine._torch import torch

KINDS = ("I", "II")


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"MA-fBM type must be 'I' or 'II', not {kind!r}")
    return kind


def gammas(K: int, gamma_max: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """Speeds gamma_k = r^(k-(K+1)/2), k = 1..K, r = gamma_max^(2/(K-1)): (K,), geometric,
    from 1/gamma_max to gamma_max (K = 1 gives [1])."""
    if K < 1:
        raise ValueError("K must be at least 1")
    if K == 1:
        return torch.ones(1, dtype=dtype, device=device)
    r = gamma_max ** (2.0 / (K - 1))
    k = torch.arange(1, K + 1, dtype=dtype, device=device)
    return r ** (k - (K + 1) / 2.0)


# ---------------------------------------------------------------- quadrature rules
_GL_CACHE: dict = {}


def _graded_rule(length: float, dtype, device, panels: int = 26, ratio: float = 0.25,
                 order: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes/weights on [0, length], panels graded geometrically towards 0
    (hp-quadrature: exponential convergence for u^(a-1) endpoint singularities)."""
    key = (float(length), dtype, str(device), panels, ratio, order)
    if key not in _GL_CACHE:
        x, w = np.polynomial.legendre.leggauss(order)
        edges = [0.0] + [length * ratio ** j for j in range(panels - 1, -1, -1)]
        nodes, weights = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            nodes.append(lo + (hi - lo) * (x + 1) / 2)
            weights.append(w * (hi - lo) / 2)
        _GL_CACHE[key] = (torch.tensor(np.concatenate(nodes), dtype=dtype, device=device),
                          torch.tensor(np.concatenate(weights), dtype=dtype, device=device))
    return _GL_CACHE[key]


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------- A, b, omega
def a_matrix(gamma: torch.Tensor, T: float, kind: str = "II") -> torch.Tensor:
    """A_ij = int_0^T E[Y_i(t) Y_j(t)] dt (type II) or of the increments Y(t) - Y(0)
    (type I). gamma (K,) -> (K, K). Type II allows gamma = 0 (Brownian)."""
    _check_kind(kind)
    g = gamma[:, None] + gamma[None, :]
    if kind == "II":
        safe = torch.where(g > 0, g, torch.ones_like(g))
        val = (safe * T + torch.expm1(-safe * T)) / safe ** 2
        return torch.where(g > 0, val, torch.full_like(g, T * T / 2.0))
    if bool((gamma <= 0).any()):
        raise ValueError("type I needs gamma > 0 (stationary OU processes)")
    c = -torch.expm1(-gamma * T) / gamma  # (1 - e^{-gamma T}) / gamma
    return (2.0 * T - c[:, None] - c[None, :]) / g


def b_vector(gamma: torch.Tensor, H, T: float, kind: str = "II") -> torch.Tensor:
    """b_k = int_0^T E[B_H(t) Y_k(t)] dt (II) or E[B_H(t) (Y_k(t) - Y_k(0))] (I), by graded
    Gauss-Legendre quadrature, differentiable in H (a tensor with grad, or a float).
    gamma (K,) -> (K,)."""
    _check_kind(kind)
    H = _as_tensor(H, gamma)
    a = H + 0.5
    if kind == "II":
        u, w = _graded_rule(T, gamma.dtype, gamma.device)
        f = (T - u) * torch.exp((a - 1) * torch.log(u) - gamma[:, None] * u)  # (K, n)
        return (f * w).sum(-1) / torch.exp(torch.lgamma(a))
    if bool((gamma <= 0).any()):
        raise ValueError("type I needs gamma > 0 (stationary OU processes)")
    z, w = _graded_rule(60.0, gamma.dtype, gamma.device)
    X = gamma * T
    D = (torch.exp((a - 1) * torch.log(X[:, None] + z) - z) * w).sum(-1) / torch.exp(
        torch.lgamma(a))
    inner = 2.0 * T + torch.expm1(-X) / gamma - (D - 1.0 + torch.exp(
        a * torch.log(X) - torch.lgamma(a + 1))) / gamma
    return gamma ** (-a) * inner


def b_closed(gamma, H: float, T: float, kind: str = "II") -> np.ndarray:
    """Closed form of ``b_vector`` with scipy's regularised incomplete gamma functions
    (float64 numpy, not differentiable in H; used to check the quadrature)."""
    from scipy.special import gamma as gamma_fn
    from scipy.special import gammainc, gammaincc

    g = np.asarray(gamma, dtype=np.float64)
    a = H + 0.5
    X = g * T
    if _check_kind(kind) == "II":
        return g ** (-a) * (T * gammainc(a, X) - a / g * gammainc(a + 1, X))
    D = np.exp(X) * gammaincc(a, X)
    return g ** (-a) * (2 * T + np.expm1(-X) / g - (D - 1 + X ** a / gamma_fn(a + 1)) / g)


def omega(gamma: torch.Tensor, H, T: float, kind: str = "II") -> torch.Tensor:
    """Optimal weights omega = A^-1 b: (K,), differentiable in H."""
    return torch.linalg.solve(a_matrix(gamma, T, kind), b_vector(gamma, H, T, kind))


def fbm_variance(H, t, kind: str = "II"):
    """E B_H(t)^2 of the 1/Gamma(H+1/2)-scaled fBM: II t^2H / (2H Gamma(a)^2),
    I t^2H / (Gamma(2H+1) sin(pi H)). Works on floats or tensors (t broadcasts)."""
    lib = torch if isinstance(H, torch.Tensor) or isinstance(t, torch.Tensor) else math
    H_ = H if not isinstance(t, torch.Tensor) or isinstance(H, torch.Tensor) else \
        torch.tensor(float(H), dtype=t.dtype)
    t2h = t ** (2 * H_)
    if _check_kind(kind) == "II":
        return t2h / (2 * H_ * lib.exp(2 * lib.lgamma(H_ + 0.5)))
    return t2h / (lib.exp(lib.lgamma(2 * H_ + 1)) * lib.sin(math.pi * H_))


def integrated_variance(H, T: float, kind: str = "II"):
    """int_0^T E B_H(t)^2 dt = T * E B_H(T)^2 / (2H + 1)."""
    return fbm_variance(H, T, kind) * T / (2 * H + 1)


def approximation_error(gamma: torch.Tensor, H, T: float, kind: str = "II",
                        weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(int_0^T E(B_H - B_hat)^2 dt, relative L2 error sqrt(that / int_0^T E B_H^2 dt)) for
    ``weights`` (default: the optimal omega). Scalars (0-d tensors)."""
    A, b = a_matrix(gamma, T, kind), b_vector(gamma, H, T, kind)
    w = torch.linalg.solve(A, b) if weights is None else weights
    iv = integrated_variance(_as_tensor(H, gamma), T, kind)
    err = (iv - 2 * w @ b + w @ A @ w).clamp_min(0.0)
    return err, torch.sqrt(err / iv)


def state_covariance(gamma: torch.Tensor, t, kind: str = "II") -> torch.Tensor:
    """Cov of (Y_1..Y_K)(t) (II, Y(0) = 0) or of Y(t) - Y(0) (I, stationary): (K, K)."""
    g = gamma[:, None] + gamma[None, :]
    t = _as_tensor(t, gamma)
    if _check_kind(kind) == "II":
        safe = torch.where(g > 0, g, torch.ones_like(g))
        return torch.where(g > 0, -torch.expm1(-safe * t) / safe, t.expand_as(g))
    e = torch.exp(-gamma * t)
    return (2.0 - e[:, None] - e[None, :]) / g


def stationary_covariance(gamma: torch.Tensor) -> torch.Tensor:
    """Stationary Cov(Y_i, Y_j) = 1 / (gamma_i + gamma_j): (K, K) (gamma > 0)."""
    return 1.0 / (gamma[:, None] + gamma[None, :])


def simulate(gamma: torch.Tensor, weights: torch.Tensor, n_steps: int, dt: float, n_paths: int,
             kind: str = "II", generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact simulation of B_hat on the grid t = 0, dt, ..., n_steps*dt (the K OU processes
    share W, so their joint transition is Gaussian with Cov (1 - e^{-(g_i+g_j) dt})/(g_i+g_j)).
    Returns (n_paths, n_steps + 1), starting at 0."""
    K = gamma.shape[0]
    opts = dict(dtype=gamma.dtype, device=gamma.device)
    jitter = 1e-12 * torch.eye(K, **opts)
    L = torch.linalg.cholesky(state_covariance(gamma, dt, "II") + jitter)
    decay = torch.exp(-gamma * dt)
    if _check_kind(kind) == "II":
        y = torch.zeros(n_paths, K, **opts)
    else:
        S = torch.linalg.cholesky(stationary_covariance(gamma) + jitter)
        y = torch.randn(n_paths, K, generator=generator, **opts) @ S.T
    y0 = y.clone()
    out = [torch.zeros(n_paths, **opts)]
    for _ in range(n_steps):
        y = y * decay + torch.randn(n_paths, K, generator=generator, **opts) @ L.T
        out.append((y - y0) @ weights if kind == "I" else y @ weights)
    return torch.stack(out, 1)
