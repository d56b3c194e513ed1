"""Latent SDE driven by Markov-approximate fractional Brownian motion (Daems et al., ICLR 2024).

Public API (stable; the video model imports it)
------------------------------------------------
``LatentFractionalSDE(dim, K=5, kind="II", hurst=0.5, learn_hurst=True, gamma_max=20.0,
T=1.0, brownian=False, drift=None, diffusion=None)`` -- a ``torch.nn.Module``:

* ``hurst`` (property): H = sigmoid(raw), 0-d tensor (learned when ``learn_hurst``).
* ``gamma``: buffer (K,), speeds of the OU processes (``mafbm.gammas``).
* ``omega()``: (K,) optimal MA-fBM weights for the current H on [0, T], differentiable in H.
* ``solve(x0, ts, control=None, dt=None, y0=None, return_state=False, generator=None)``
  -> ``(xs, path_kl)`` (plus ``(x_T, y_T)`` when ``return_state``): Euler-Maruyama on the
  augmented state (x, y_1..y_K) with the path KL carried along, see below.
* ``initial_y(batch, ...)``: y(0): zeros (type II) or a stationary sample (type I).
* ``drift`` / ``diffusion``: your own modules, b(x): (B, dim) -> (B, dim) and
  s(x): (B, dim) -> (B, dim) positive (diagonal noise). Defaults: b = small tanh MLP
  (``default_drift``), s = softplus(learned constant) per dimension (``ConstantDiffusion``).

Module function: ``gaussian_kl(mu_q, logvar_q, mu_p=0, logvar_p=0)`` -> (B,) summed over the
last axis.

Model (each of the ``dim`` latent coordinates has its own W and its own y_1..y_K)::

    dy_k = (-gamma_k y_k + u) dt + dW
    dx   = [b(x) + s(x) sum_k omega_k (u - gamma_k y_k)] dt + s(x) (sum_k omega_k) dW
    dKL  = 0.5 |u|^2 dt                    (summed over dim; the path KL of q against p)

so that x(t) = x(0) + int b dt + int s dB_hat with B_hat = sum_k omega_k y_k the MA-fBM
(type II: y(0) = 0; type I: y(0) stationary, B_hat = sum_k omega_k (y_k(t) - y_k(0))).
The prior is u = 0; a posterior is a control u = control(t, x, y) (from an encoder context,
say). ELBO = E log p(obs | x) - KL(q(x0) || p(x0)) - E path_kl.
Brownian baseline (``brownian=True``): K = 1, gamma = 0, omega = 1, H = 0.5 fixed, i.e.
dx = [b(x) + s(x) u] dt + s(x) dW.

Shapes: x (B, dim), y (B, K, dim), ts (T,), xs (T, B, dim), path_kl (B,). Time is in the
model's units; ``T`` (constructor) is the window the MA-fBM weights are optimised on and
should be about the length of the time span you solve over. Works on CPU or CUDA (follows
the device of ``x0``); the MA-fBM weights are computed in float64 and cast.
"""
from __future__ import annotations

import math
from typing import Callable

from engine._torch import torch
from engine.fsde import mafbm

nn = torch.nn

Control = Callable[[float, "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class ConstantDiffusion(nn.Module):
    """s(x) = softplus(raw) per dimension, independent of x: (B, dim) -> (B, dim)."""

    def __init__(self, dim: int, init: float = 1.0):
        super().__init__()
        self.raw = nn.Parameter(torch.full((dim,), math.log(math.expm1(init))))

    def forward(self, x):
        return nn.functional.softplus(self.raw).expand_as(x)


def default_drift(dim: int, hidden: int = 64) -> nn.Module:
    """b(x): small tanh MLP, (B, dim) -> (B, dim), last layer initialised small."""
    net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
    nn.init.normal_(net[2].weight, std=1e-3)
    nn.init.zeros_(net[2].bias)
    return net


class LatentFractionalSDE(nn.Module):
    """Latent SDE driven by MA-fBM with learned Hurst index (see module docstring)."""

    def __init__(self, dim: int, K: int = 5, kind: str = "II", hurst: float = 0.5,
                 learn_hurst: bool = True, gamma_max: float = 20.0, T: float = 1.0,
                 brownian: bool = False, drift: nn.Module | None = None,
                 diffusion: nn.Module | None = None):
        super().__init__()
        if not 0.0 < hurst < 1.0:
            raise ValueError("hurst must lie in (0, 1)")
        self.dim, self.T, self.brownian = int(dim), float(T), bool(brownian)
        self.kind = mafbm._check_kind(kind)
        if self.brownian:
            K, hurst, learn_hurst = 1, 0.5, False
            gamma = torch.zeros(1)
        else:
            if K < 2:
                raise ValueError("K must be at least 2 (use brownian=True for K = 1)")
            gamma = mafbm.gammas(K, gamma_max).float()
        self.K = int(K)
        self.register_buffer("gamma", gamma)
        raw = torch.tensor(math.log(hurst / (1.0 - hurst)))
        if learn_hurst:
            self.raw_hurst = nn.Parameter(raw)
        else:
            self.register_buffer("raw_hurst", raw)
        self.freeze_hurst = False  # a caller can stop H's gradient for one pass
        self.drift = drift if drift is not None else default_drift(self.dim)
        self.diffusion = diffusion if diffusion is not None else ConstantDiffusion(self.dim)

    # ------------------------------------------------------------------ MA-fBM
    @property
    def hurst(self) -> torch.Tensor:
        """H = sigmoid(raw_hurst): 0-d tensor (no gradient while ``freeze_hurst`` is set)."""
        raw = self.raw_hurst
        return torch.sigmoid(raw.detach() if self.freeze_hurst else raw)

    def omega(self) -> torch.Tensor:
        """(K,) optimal weights on [0, T] for the current H (float64 maths, cast to the
        buffer dtype), differentiable in H. Brownian baseline: [1]."""
        if self.brownian:
            return torch.ones_like(self.gamma)
        g = self.gamma.double()
        return mafbm.omega(g, self.hurst.double(), self.T, self.kind).to(self.gamma.dtype)

    def initial_y(self, batch: int, device=None, dtype=None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """y(0): (batch, K, dim): zeros (type II, Brownian) or stationary N(0, 1/(g_i+g_j))
        (type I)."""
        device = device or self.gamma.device
        dtype = dtype or self.gamma.dtype
        if self.kind == "II" or self.brownian:
            return torch.zeros(batch, self.K, self.dim, device=device, dtype=dtype)
        g = self.gamma.double()
        L = torch.linalg.cholesky(mafbm.stationary_covariance(g) +
                                  1e-10 * torch.eye(self.K, dtype=g.dtype, device=g.device))
        eps = torch.randn(batch, self.K, self.dim, device=device, dtype=dtype,
                          generator=generator)
        return torch.einsum("ij,bjd->bid", L.to(device=device, dtype=dtype), eps)

    # ------------------------------------------------------------------ solver
    def solve(self, x0: torch.Tensor, ts: torch.Tensor, control: Control | None = None,
              dt: float | None = None, y0: torch.Tensor | None = None,
              return_state: bool = False, generator: torch.Generator | None = None):
        """Euler-Maruyama from ts[0] on the augmented state (x, y) with the path KL.

        x0 (B, dim); ts (T,) increasing; control None (prior) or
        ``u = control(t: float, x (B, dim), y (B, K, dim)) -> (B, dim)``; dt: the largest
        step (default: the spacing of ts, each interval split into equal sub-steps);
        y0 (B, K, dim) or None (``initial_y``). Returns xs (T, B, dim) at ts (xs[0] = x0),
        path_kl (B,) = int 0.5 |u|^2 dt, and with ``return_state`` also (x, y) at ts[-1].
        ``generator``: torch.Generator on x0's device for reproducible noise (default: the
        global RNG).
        """
        B = x0.shape[0]
        dtype, dev = x0.dtype, x0.device
        ts_list = [float(t) for t in ts]
        gamma = self.gamma.to(device=dev, dtype=dtype)[:, None]      # (K, 1)
        w = self.omega().to(device=dev, dtype=dtype)[:, None]         # (K, 1)
        wsum = w.sum()
        y = self.initial_y(B, dev, dtype, generator) if y0 is None else y0
        x = x0
        kl = torch.zeros(B, device=dev, dtype=dtype)
        xs = [x0]
        for t0, t1 in zip(ts_list[:-1], ts_list[1:]):
            span = t1 - t0
            n = 1 if dt is None else max(1, math.ceil(span / dt - 1e-9))
            h = span / n
            for i in range(n):
                t = t0 + i * h
                dW = torch.randn(B, self.dim, device=dev, dtype=dtype,
                                 generator=generator) * math.sqrt(h)
                s = self.diffusion(x)
                gy = (gamma * y)                                        # (B, K, dim)
                if control is None:
                    mix = -(w * gy).sum(1)                              # sum_k w_k (0 - g y)
                    y = y - gy * h + dW[:, None, :]
                else:
                    u = control(t, x, y)
                    mix = wsum * u - (w * gy).sum(1)
                    y = y + (u[:, None, :] - gy) * h + dW[:, None, :]
                    kl = kl + 0.5 * (u * u).sum(-1) * h
                x = x + (self.drift(x) + s * mix) * h + s * wsum * dW
            xs.append(x)
        out = (torch.stack(xs, 0), kl)
        return out + ((x, y),) if return_state else out


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p=0.0, logvar_p=0.0):
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)), diagonal, summed over the last
    axis: (B, dim) -> (B,)."""
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mu_q.dtype, device=mu_q.device)
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) /
                  logvar_p.exp() - 1.0).sum(-1)

