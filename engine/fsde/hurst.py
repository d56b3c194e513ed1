"""Hurst-index estimation with the latent fractional SDE (``python main.py fsde hurst``).

Model, per observed channel d (all channels and paths share one H):

    dx = (mu_d - theta_d x) dt + s_d dB_hat_H,      obs_i = x(t_i) + N(0, r_d^2),

with B_hat_H the MA-fBM of ``mafbm`` (K OU processes y_k sharing W, weights omega(H)), i.e.
the latent fractional SDE of ``sde.LatentFractionalSDE`` with a linear drift and constant
diffusion. On the augmented Markov state z = (x, y_1..y_K) this is a linear SDE

    dz = (F z + c) dt + G dW,   F = [[-theta, -s (omega*gamma)^T], [0, -diag(gamma)]],
    G = [s sum(omega), 1, ..., 1],

so the variational problem has a closed-form solution: the ELBO
E_q log p(obs | x) - KL(q || p) is maximised over *all* posteriors q by the exact Gaussian
smoothing posterior (the optimal control u* = G^T grad log h of the h-transform), where it
equals the log evidence log p(obs). We evaluate that exactly with a Kalman filter on the
exactly discretised augmented system (matrix exponential + Van Loan) and maximise it over
(H, theta, s, mu, r) by L-BFGS with autograd through omega(H) (``mafbm.b_vector`` is a
quadrature, so dH works). So "elbo" below is the tight ELBO (= log evidence, nats, summed over
paths and channels), and the fit is type-II maximum likelihood of the latent fractional SDE.

``hurst_std`` is the Laplace (posterior) standard deviation of H under a flat prior on the
unconstrained parameters: from the inverse Hessian of -log p(obs) in (logit H, ...) over the
parameters not held at an edge of their box, mapped by the delta method
(dH = H (1 - H) dlogitH). When it is undetermined (H at an edge, the evidence flat along a
direction that moves H, or not at a maximum) it is None and ``hurst_std_note`` says why; a
note also says when flat directions independent of H were left out (pseudo-inverse).
Non-finite evidence at the start or the end of a fit raises :class:`HurstFitError`.

The initial state has a flat prior: x(0) | obs_0 ~ N(obs_0, r^2); y(0) = 0 (type II) or
stationary (type I). Time is rescaled internally so that the OU speeds gamma_k (from
1/gamma_max to gamma_max) cover the observed scales: model time = real time / tau with
tau = sqrt(window * dt), gamma_max = 2 sqrt(n_steps) (overridable), T_model = window / tau.
The fit runs on paths centred and divided by the increment sd of each channel (so the result
does not depend on the data's units) and reports in the data's units and time unit:
theta (1/time), mu (data/time), sigma (data/time^H, scale of the 1/Gamma(H+1/2)-scaled MA-fBM),
noise (observation sd, data units), elbo (nats, with the Jacobian of the normalisation).
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress


class HurstFitError(ValueError):
    """The fit cannot give a finite answer for these paths (one sentence, no file name)."""


def normalise(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Paths (N, T, D) -> (obs, center, unit, s0) with paths = s0 * (center + unit * obs):
    obs has zero mean and unit increment sd per channel. Dividing by s0 = max |paths| first
    keeps every intermediate finite for values anywhere in float64's range (1e-300 or 1e300).
    unit is 0 for a channel that never changes."""
    paths = np.asarray(paths, dtype=np.float64)
    s0 = float(np.max(np.abs(paths)))
    s0 = s0 if s0 > 0 and np.isfinite(s0) else 1.0
    p = paths / s0
    center = p.mean(axis=(0, 1))
    unit = np.diff(p, axis=1).reshape(-1, p.shape[2]).std(0)
    safe = np.where(unit > 0, unit, 1.0)
    return (p - center) / safe, center, unit, s0


def load_paths(path: str | Path) -> np.ndarray:
    """Read PATHS.npy: (N, T) or (N, T, D) finite floats, T >= 8 -> float64 (N, T, D).
    Raises InputError (one sentence naming the file) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - any failure to read is bad input
        raise InputError(f"could not read {path} as a .npy array ({type(err).__name__}).")
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise InputError(f"{path} must hold a numeric array, not {getattr(arr, 'dtype', '?')}.")
    if arr.ndim not in (2, 3):
        raise InputError(f"{path} must have shape (N, T) or (N, T, D), not {arr.shape}.")
    if arr.size == 0:
        raise InputError(f"{path} is empty (shape {arr.shape}).")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[1] < 8:
        raise InputError(f"{path} has only {arr.shape[1]} time steps; at least 8 are needed.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(f"{path} contains {bad} NaN or infinite value(s).")
    flat = normalise(arr)[2] == 0
    if flat.any():
        raise InputError(f"{path}: channel(s) {np.flatnonzero(flat).tolist()} never change "
                         "over time, so they carry no information on H.")
    return arr.astype(np.float64)


# ------------------------------------------------------------------ the exact ELBO (Kalman)
def _discretise(F, G, cvec, dt):
    """Exact discretisation of dz = (F z + c) dt + G dW over dt (batched over channels).
    F (D, S, S), G (D, S), cvec (D, S) -> Phi (D, S, S), Q (D, S, S), c_d (D, S)."""
    torch = _torch()
    D, S, _ = F.shape
    zeros = F.new_zeros(D, S, S)
    GG = G[:, :, None] * G[:, None, :]
    van = torch.cat([torch.cat([-F, GG], 2), torch.cat([zeros, F.transpose(1, 2)], 2)], 1)
    E = torch.linalg.matrix_exp(van * dt)
    Phi = E[:, S:, S:].transpose(1, 2)
    Q = Phi @ E[:, :S, S:]
    Q = 0.5 * (Q + Q.transpose(1, 2))
    aug = torch.cat([torch.cat([F, cvec[:, :, None]], 2), F.new_zeros(D, 1, S + 1)], 1)
    c_d = torch.linalg.matrix_exp(aug * dt)[:, :S, S]
    return Phi, Q, c_d


def _torch():
    from engine._torch import torch

    return torch


class LinearFractionalSSM:
    """The latent fractional SDE with linear drift as a state-space model (see module doc).
    Parameters live in ``self.params`` (unconstrained tensors); ``log_evidence(obs)``."""

    def __init__(self, D: int, dt_model: float, T_model: float, K: int = 8,
                 kind: str = "II", gamma_max: float = 20.0, hurst: float = 0.5,
                 scale: np.ndarray | None = None, noise: np.ndarray | None = None):
        torch = _torch()
        from engine.fsde import mafbm

        self.D, self.K, self.kind = D, K, mafbm._check_kind(kind)
        self.dt, self.T = float(dt_model), float(T_model)
        self.gamma = mafbm.gammas(K, gamma_max)
        f64 = dict(dtype=torch.float64)
        scale = np.ones(D) if scale is None else np.asarray(scale, float)
        noise = 0.1 * scale if noise is None else np.asarray(noise, float)
        self.params = {
            "logit_h": torch.tensor(math.log(hurst / (1 - hurst)), **f64),
            "log_s": torch.tensor(np.log(scale), **f64),
            "log_theta": torch.full((D,), math.log(0.05 / self.T), **f64),
            "mu": torch.zeros(D, **f64),
            "log_r": torch.tensor(np.log(np.maximum(noise, 1e-6)), **f64),
        }
        for p in self.params.values():
            p.requires_grad_(True)
        # box bounds (clamped inside log_evidence) keep the line search away from overflow
        lo_s, hi_s = np.log(scale) - 8.0, np.log(scale) + 8.0
        self.bounds = {
            "logit_h": (-5.0, 5.0),
            "log_s": (torch.tensor(lo_s, **f64), torch.tensor(hi_s, **f64)),
            "log_theta": (math.log(1e-8 / self.T), math.log(10.0 / self.dt)),
            "mu": (-1e6, 1e6),
            "log_r": (torch.tensor(np.log(np.maximum(noise, 1e-6)) - 7.0, **f64),
                      torch.tensor(np.log(np.maximum(noise, 1e-6)) + 7.0, **f64)),
        }

    def clamped(self, params: dict | None = None) -> dict:
        """Parameters clamped to their box (values and gradients inside it unchanged)."""
        torch = _torch()
        p = self.params if params is None else params
        return {k: torch.clamp(v, *self.bounds[k]) for k, v in p.items()}

    @property
    def hurst(self) -> float:
        return float(_torch().sigmoid(self.clamped()["logit_h"].detach()))

    def system(self, params: dict | None = None):
        """The augmented linear SDE dz = (F z + c) dt + G dW, z = (x, y_1..y_K), of
        sde.LatentFractionalSDE with b(x) = mu - theta x and s(x) = s:
        F (D, S, S), G (D, S), c (D, S), S = K + 1."""
        torch = _torch()
        from engine.fsde import mafbm

        p = self.clamped(params)
        D, K, S = self.D, self.K, self.K + 1
        g = self.gamma
        w = mafbm.omega(g, torch.sigmoid(p["logit_h"]), self.T, self.kind)    # (K,)
        s, theta = p["log_s"].exp(), p["log_theta"].exp()
        F = torch.zeros(D, S, S, dtype=torch.float64)
        F[:, 0, 0] = -theta
        F[:, 0, 1:] = -s[:, None] * (w * g)[None, :]
        F[:, 1:, 1:] = -torch.diag(g)
        G = torch.cat([(s * w.sum())[:, None], torch.ones(D, K, dtype=torch.float64)], 1)
        cvec = torch.cat([p["mu"][:, None], torch.zeros(D, K, dtype=torch.float64)], 1)
        return F, G, cvec

    def log_evidence(self, obs, params: dict | None = None):
        """log p(obs) under the model: obs (N, T, D) tensor -> 0-d tensor (sum over paths)."""
        torch = _torch()
        from engine.fsde import mafbm

        p = self.clamped(params)
        D, K, S = self.D, self.K, self.K + 1
        g = self.gamma
        r2 = (2 * p["log_r"]).exp()
        Phi, Q, c_d = _discretise(*self.system(params), self.dt)

        N, T, _ = obs.shape
        # x(0) | obs_0 ~ N(obs_0, r^2) (flat prior); y(0) = 0 (II) or stationary (I)
        m = torch.cat([obs[:, 0, :, None], obs.new_zeros(N, D, K)], 2)       # (N, D, S)
        P = torch.zeros(D, S, S, dtype=torch.float64)
        if self.kind == "I":
            P = P + torch.block_diag(torch.zeros(1, 1, dtype=torch.float64),
                                     mafbm.stationary_covariance(g))[None]
        P = P + torch.diag_embed(torch.cat([r2[:, None], P.new_zeros(D, K)], 1))
        total = obs.new_zeros(())
        log2pi = math.log(2 * math.pi)
        for t in range(1, T):                    # predict, score obs_t, update
            m = torch.einsum("dij,ndj->ndi", Phi, m) + c_d[None]
            P = Phi @ P @ Phi.transpose(1, 2) + Q
            Sv = P[:, 0, 0] + r2                                              # (D,)
            gain = P[:, :, 0] / Sv[:, None]                                   # (D, S)
            resid = obs[:, t, :] - m[:, :, 0]                                 # (N, D)
            total = total - 0.5 * ((resid ** 2 / Sv).sum() + N * (torch.log(Sv).sum() +
                                                                   D * log2pi))
            m = m + gain[None] * resid[:, :, None]
            P = P - gain[:, :, None] * gain[:, None, :] * Sv[:, None, None]
            P = 0.5 * (P + P.transpose(1, 2))
        return total


@contextlib.contextmanager
def _one_thread():
    """The Kalman recursion is hundreds of tiny ops: intra-op threads only add spin-waiting
    (10-50x slower on a busy machine), so run it on one thread and restore the setting."""
    torch = _torch()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _default_scales(obs: np.ndarray, dt_model: float) -> tuple[np.ndarray, np.ndarray]:
    """Rough s and r per channel from the first differences (for the initial guess)."""
    d1 = np.diff(obs, axis=1).reshape(-1, obs.shape[2])
    sd = d1.std(0) + 1e-12
    return sd / math.sqrt(dt_model), 0.3 * sd


def estimate_hurst(paths: np.ndarray, dt: float, K: int = 8, kind: str = "II",
                   gamma_max: float | None = None, max_iter: int = 60, starts=(0.5,),
                   fit_noise: bool = True, progress: Progress | None = None,
                   cancel: CancelToken | None = None) -> dict:
    """Fit the latent fractional SDE to ``paths`` (N, T, D) observed every ``dt`` (any unit)
    and return {"hurst", "hurst_std", "elbo", "type", "K", "theta", "mu", "sigma", "noise",
    "iterations", "starts"}. L-BFGS from each H in ``starts`` (the fitted H of each start
    is listed under "starts"), the largest evidence wins. A job: reports
    progress (ELBO, current H) and honours ``cancel``. ``fit_noise=False``: the paths are
    exact (observation noise fixed at ~0), which removes the noise/roughness trade-off."""
    with _one_thread():
        return _estimate(paths, dt, K, kind, gamma_max, max_iter, tuple(starts), fit_noise,
                         progress or Progress(), cancel or CancelToken())


def _estimate(paths, dt, K, kind, gamma_max, max_iter, starts, fit_noise, progress,
              cancel) -> dict:
    torch = _torch()
    paths = np.asarray(paths, dtype=np.float64)
    if paths.ndim == 2:
        paths = paths[:, :, None]
    N, T, D = paths.shape
    n = T - 1
    tau = math.sqrt(n) * dt            # sqrt(window * dt)
    dt_model, T_model = dt / tau, n * dt / tau
    gamma_max = gamma_max or 2.0 * math.sqrt(n)
    # work in normalised units: per channel, centre and divide by the increment sd
    obs_np, center, unit, s0 = normalise(paths)
    if not np.all(unit > 0):
        raise HurstFitError(f"channel(s) {np.flatnonzero(~(unit > 0)).tolist()} never change")
    obs = torch.tensor(obs_np, dtype=torch.float64)
    # evidence in the data's units: paths = s0 * (center + unit * obs)
    log_jacobian = N * n * float(np.log(unit).sum() + D * math.log(s0))
    scale, noise = _default_scales(obs.numpy(), dt_model)

    best, fits = None, []
    total_iters = max_iter * len(starts)
    done = 0
    for h0 in starts:
        model = LinearFractionalSSM(D, dt_model, T_model, K=K, kind=kind, gamma_max=gamma_max,
                                    hurst=h0, scale=scale, noise=noise)
        if not fit_noise:   # exact paths: r fixed at its floor (3e-4 x increment sd)
            lo = model.bounds["log_r"][0]
            model.params["log_r"] = lo.clone()
            model.bounds["log_r"] = (lo, lo)
        params = [v for k, v in model.params.items() if fit_noise or k != "log_r"]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-7,
                                tolerance_change=1e-10)
        state = {"evals": 0, "value": float("nan")}
        with torch.no_grad():
            start = float(model.log_evidence(obs))
        if not math.isfinite(start):
            raise HurstFitError(f"the evidence is not finite at the starting point H = {h0:g}, "
                                f"so the fit cannot start")

        def closure():
            cancel.check()
            opt.zero_grad()
            loss = -model.log_evidence(obs) / (N * D * n)
            if not torch.isfinite(loss):      # let the line search back off
                return torch.tensor(1e10, dtype=torch.float64)
            loss.backward()
            state["evals"] += 1
            state["value"] = -float(loss.detach()) * N * D * n - log_jacobian
            frac = min(1.0, (done + min(state["evals"], max_iter)) / total_iters)
            progress.update(0.95 * frac, f"ELBO {state['value']:.4g}  H {model.hurst:.3f}")
            return loss

        opt.step(closure)
        done += max_iter
        with torch.no_grad():
            ev = float(model.log_evidence(obs)) - log_jacobian
        if not math.isfinite(ev):
            raise HurstFitError(f"the evidence became non-finite while fitting from H = {h0:g}")
        fits.append((ev, model, state["evals"]))
        if best is None or ev > best[0]:
            best = fits[-1]
    ev, model, evals = best
    cancel.check()
    progress.update(0.97, "Laplace standard deviation of H")
    std, note = laplace_std(model, obs)
    p = model.clamped()
    progress.update(1.0, f"H {model.hurst:.3f}")
    # back to data units and real time: x = s0 (center + unit x'), t = tau t'
    theta = p["log_theta"].exp().detach().numpy()
    mu = s0 * (unit * p["mu"].detach().numpy() + theta * center) / tau
    sigma = s0 * unit * p["log_s"].exp().detach().numpy() * tau ** (-model.hurst)
    noise = s0 * unit * p["log_r"].exp().detach().numpy()
    out = {"hurst": model.hurst, "hurst_std": std, "hurst_std_note": note, "elbo": ev,
           "type": kind, "K": K, "theta": (theta / tau).tolist(), "mu": mu.tolist(),
           "sigma": sigma.tolist(), "noise": noise.tolist(), "iterations": evals,
           "starts": [f[1].hurst for f in fits]}
    numbers = [v for k, v in out.items() if k not in ("type", "hurst_std_note") and v is not None]
    if not np.all(np.isfinite(np.concatenate([np.ravel(v) for v in numbers]))):
        raise HurstFitError("the fitted parameters do not fit in double precision in the "
                            "data's units")
    return out


def _at_bound(model: LinearFractionalSSM) -> "torch.Tensor":
    """Per flat parameter entry: True when it sits on an edge of its box (fixed there)."""
    torch = _torch()
    out = []
    for k, v in model.params.items():
        lo, hi = (torch.as_tensor(b, dtype=v.dtype).expand_as(v) for b in model.bounds[k])
        v = v.detach()
        out.append(((v <= lo) | (v >= hi)).reshape(-1))
    return torch.cat(out)


def laplace_std(model: LinearFractionalSSM, obs, rel_tol: float = 1e-8) -> tuple[float | None, str]:
    """Laplace std of H and a note: (std, "") when the Hessian of -log evidence in the free
    unconstrained parameters (those not held at an edge of their box) is positive definite;
    (std, warning) when it is singular only along directions that do not move H (pseudo-
    inverse over the others); (None, reason) when H's variance is undetermined: H at an edge,
    the evidence flat along a direction that moves H, or not at a maximum."""
    torch = _torch()
    names = list(model.params)
    sizes = [model.params[k].numel() for k in names]
    flat0 = torch.cat([model.params[k].detach().reshape(-1) for k in names])
    h = model.hurst
    fixed = _at_bound(model)
    if bool(fixed[0]):
        return None, f"H = {h:.4f} is at the edge of its range, so its std is undetermined"

    def f(flat):
        parts, i = {}, 0
        for k, size in zip(names, sizes):
            parts[k] = flat[i:i + size].reshape(model.params[k].shape)
            i += size
        return -model.log_evidence(obs, parts)

    Hm = torch.autograd.functional.hessian(f, flat0)
    free = ~fixed
    Hm = Hm[free][:, free]
    Hm = 0.5 * (Hm + Hm.T)
    if not bool(torch.isfinite(Hm).all()):
        return None, "the Hessian of the evidence is not finite, so the std of H is undetermined"
    evals, evecs = torch.linalg.eigh(Hm)
    tol = rel_tol * float(evals.abs().max())
    if float(evals.min()) < -tol:
        return None, ("the evidence is not at a maximum (its Hessian has a negative "
                      "eigenvalue), so the std of H is undetermined")
    flat = evals <= tol
    note = ""
    if bool(flat.any()):
        if float((evecs[0, flat] ** 2).max()) > 1e-6:
            return None, ("the evidence is flat along a direction that moves H, so the std "
                          "of H is undetermined")
        note = (f"pseudo-inverse: {int(flat.sum())} flat direction(s) of the other "
                f"parameters, independent of H, were left out")
    keep = ~flat
    var_logit = float(((evecs[0, keep] ** 2) / evals[keep]).sum())
    return float(h * (1 - h) * math.sqrt(var_logit)), note
