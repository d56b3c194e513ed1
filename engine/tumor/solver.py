"""Fisher-Kolmogorov tumor growth on the MNI grid: explicit finite volumes, batched in torch.
(Over 400 lines: one scheme with its two backends and the numpy reference kept side by side.)

Dimensionless model (tau = rho t, lambda = sqrt(Dw / rho)):

    du/dtau = div(lambda^2 m(x) grad u) + r u (1 - u),      r = 1 (0 for pure diffusion)

with m = wm + gm / 10 inside the brain and 0 outside. Finite volumes on the regular grid of
spacing h: the flux through the face between voxels p and q is
lambda^2 m_pq (u_q - u_p) / h^2 with the ARITHMETIC mean m_pq = (m_p + m_q) / 2 when both voxels
are brain, and 0 when either is CSF/background (no flux into CSF, none through the grid edge).
Fluxes are antisymmetric, so with r = 0 the total mass is conserved to round-off.

Time stepping: SSP-RK2 (Heun; a convex combination of two forward-Euler steps), per member b
    dtau_b = min(DT_CAP, SAFETY / (6 lambda_b^2 m_max / h^2 + 1))
which implies the design's bounds dtau <= h^2 / (6 lambda^2 m_max) and dtau <= 0.5 with the
safety factor, and keeps u in [0, 1] (discrete maximum principle of each Euler stage:
dtau * (sum of face weights + 1) <= SAFETY < 1). Forward Euler at the same step moved fronts
up to 17 % too slowly (its error is O(dtau) at the reaction scale); SSP-RK2 with DT_CAP = 0.1
is within 0.5 % of the converged front speed. Each member steps with its OWN dtau, shortened
so that every requested snapshot tau is hit exactly; within a batch the loop runs the largest
step count and members that are done take steps of size 0 (exactly no change). So a batch
of B runs gives the same numbers as B single runs; grouping runs of similar lambda keeps the
wasted steps small.

Implementation: the state is kept on the brain voxels only, (n_brain, B), and the diffusion
operator is one sparse CSR matrix applied to all B columns (torch SpMM, CPU or CUDA).
``simulate_numpy`` is a plain numpy version of the same scheme on the full grid (reference).

Resolution limit: the explicit scheme on a grid of spacing h moves a pulled front at the
lattice speed, ~2 lambda when lambda >~ h / 2 but ~h / ln(h^2 / lambda^2) (faster than
2 lambda, axis-aligned) when lambda << h. See docs/tumor_database.md for the measured ratios;
the database presets clamp lambda from below at ``min_lambda_mm(h)``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from engine.tumor.params import dimensional  # noqa: F401  (re-exported for callers)

SAFETY = 0.9     # fraction of the stability / positivity bound actually used
DT_CAP = 0.1     # accuracy cap on dtau (design bound: 0.5); halving it moves fronts < 0.4 %
SEED_SIGMA_MM = 2.5     # initial condition: Gaussian of this physical size on every grid
SEED_CUT_SIGMAS = 3.0   # ... cut to 0 beyond this many sigma (7.5 mm): no tail across a sulcus
SMALL_WORK = 1_000_000   # n_brain * B below which the CPU loop runs on one thread


def min_lambda_mm(spacing_mm: float) -> float:
    """Smallest lambda whose front the grid resolves within ~10 % (measured, see docs)."""
    return 0.5 * float(spacing_mm)


def time_step(lambda_mm, spacing_mm: float, m_max: float = 1.0, dt_factor: float = 1.0):
    """Stable dtau for each lambda (array-like, mm) on a grid of spacing_mm (``dt_factor`` < 1
    takes smaller steps, for convergence checks)."""
    c = (np.asarray(lambda_mm, dtype=np.float64) / spacing_mm) ** 2
    return dt_factor * np.minimum(DT_CAP, SAFETY / (6.0 * c * m_max + 1.0))


def seed(anatomy, origin_vox, sigma_mm: float = SEED_SIGMA_MM) -> np.ndarray:
    """Initial condition (B, X, Y, Z) float32: the cell averages of the Gaussian
    exp(-|x - o|^2 / (2 sigma^2)) (peak 1, sigma in mm, so the same physical seed, of total
    mass (2 pi)^1.5 sigma^3 = 0.25 cm^3 for 2.5 mm, on every grid) centred at origin_vox (B, 3),
    zero outside the brain and at voxel centres farther than max(SEED_CUT_SIGMAS sigma,
    sqrt(3) h) from the origin (otherwise its tail, grown by e^tau, would seed tissue across
    CSF; the 26 neighbours always stay, so coarse grids keep the mass). Cell averages (not
    point samples) keep the mass independent of the grid and of where the origin falls
    inside a voxel."""
    from scipy.special import erf

    origin = np.atleast_2d(np.asarray(origin_vox, dtype=np.float64))
    s = float(sigma_mm) / anatomy.spacing_mm * np.sqrt(2.0)          # voxels, times sqrt 2
    k = np.sqrt(np.pi / 2.0) * float(sigma_mm) / anatomy.spacing_mm   # 1-D normalization
    out = np.empty((len(origin),) + anatomy.shape, dtype=np.float32)
    for b, o in enumerate(origin):
        g = []
        for n, c in zip(anatomy.shape, o):
            x = np.arange(n, dtype=np.float64) - c
            g.append(k * (erf((x + 0.5) / s) - erf((x - 0.5) / s)))
        out[b] = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
        d = [(np.arange(n) - c) * anatomy.spacing_mm for n, c in zip(anatomy.shape, o)]
        r2 = d[0][:, None, None] ** 2 + d[1][None, :, None] ** 2 + d[2][None, None, :] ** 2
        r_cut = max(SEED_CUT_SIGMAS * sigma_mm, np.sqrt(3.0) * anatomy.spacing_mm)
        out[b][r2 > r_cut ** 2] = 0.0
    out *= anatomy.brain
    return out


def _face_weights(anatomy) -> list[np.ndarray]:
    """Face diffusivities m_pq on the x, y, z faces (X-1, Y, Z), (X, Y-1, Z), (X, Y, Z-1)."""
    m = anatomy.m.astype(np.float32)
    b = anatomy.brain
    out = []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        out.append(np.ascontiguousarray(0.5 * (m[lo] + m[hi]) * (b[lo] & b[hi]),
                                        dtype=np.float32))
    return out


def _flat_stencil(anatomy):
    """The same face weights on the zero-padded grid (X+2, Y+2, Z+2), flattened: for the flat
    range [lo, hi) that covers every interior voxel, the weights (6 of (L,)) towards the
    neighbours at the flat ``offsets`` and the centre weight -sum (L,). Pad voxels and faces
    touching non-brain voxels get weight 0, so u stays 0 there."""
    X, Y, Z = anatomy.shape
    mp = np.pad(anatomy.m.astype(np.float32), 1).ravel()
    bp = np.pad(anatomy.brain, 1).ravel()
    sx, sy = (Y + 2) * (Z + 2), Z + 2
    lo = sx + sy + 1
    hi = mp.size - lo
    p = np.arange(lo, hi)
    offsets = (sx, -sx, sy, -sy, 1, -1)
    w_n = [(np.float32(0.5) * (mp[p] + mp[p + o]) * (bp[p] & bp[p + o])).astype(np.float32)
           for o in offsets]
    w_c = -np.sum(w_n, axis=0, dtype=np.float32)
    return offsets, w_n, w_c.astype(np.float32), lo, hi


def _schedule(lambda_mm, taus, spacing_mm, m_max, dt_factor):
    """Per member and interval: step counts n (B, S) and step sizes dt (B, S)."""
    B = len(lambda_mm)
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim == 1:
        taus = np.broadcast_to(taus, (B, taus.size))
    if taus.shape[0] != B:
        raise ValueError(f"taus {taus.shape} do not match {B} simulations")
    if np.any(taus < 0) or np.any(np.diff(taus, axis=1) < 0):
        raise ValueError("taus must be >= 0 and increasing")
    delta = np.diff(np.concatenate([np.zeros((B, 1)), taus], axis=1), axis=1)
    dt = time_step(lambda_mm, spacing_mm, m_max, dt_factor)[:, None]
    n = np.ceil(delta / dt - 1e-9).astype(np.int64)
    step = np.where(n > 0, delta / np.maximum(n, 1), 0.0)
    return n, step


def diffusion_matrix(anatomy) -> "sp.csr_matrix":
    """(n_brain, n_brain) float32 CSR operator h^2 div(m grad .) over the brain voxels in
    np.flatnonzero(brain.ravel()) order: off-diagonal m_pq for brain-brain faces, diagonal
    -sum_q m_pq. Symmetric with zero row/column sums (mass conservation)."""
    import scipy.sparse as sp

    offsets, w_n, w_c, lo, hi = _flat_stencil(anatomy)
    bp = np.pad(anatomy.brain, 1).ravel()
    p = np.arange(lo, hi)[bp[lo:hi]]                 # padded flat index of brain voxels
    n = len(p)
    pos = np.full(bp.size, -1, dtype=np.int64)
    pos[p] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [w_c[p - lo]]
    for o, w in zip(offsets, w_n):
        ww = w[p - lo]
        ok = ww != 0
        rows.append(np.arange(n)[ok])
        cols.append(pos[p[ok] + o])
        vals.append(ww[ok])
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n), dtype=np.float32)
    A.sort_indices()
    return A


def integrate(anatomy, lambda_mm, origin_vox, taus, on_snapshot, *, reaction: float = 1.0,
              device=None, progress=None, cancel=None, dt_factor: float = 1.0,
              u0: np.ndarray | None = None, compact: bool = False,
              backend: str = "torch", operator=None) -> None:
    """Run B simulations and call ``on_snapshot(s, u)`` at each tau[:, s]: u is a (B, X, Y, Z)
    float32 array (torch tensor for the torch backend), or with ``compact`` a (B, n_brain) view
    over the brain voxels in np.flatnonzero(brain.ravel()) order (do not modify it). ``taus``
    is (S,) or (B, S), increasing. ``on_snapshot`` may return a bool array (B,): members marked
    True stop (frozen) from then on; the loop ends when all have stopped. ``reaction`` scales
    u (1 - u).

    The state lives on the brain voxels only, as (n_brain, B) columns; the diffusion operator
    is a sparse CSR matrix (7 entries a row) applied to all B columns at once. ``backend``
    "torch" (CPU or CUDA, ``device``) or "scipy" (CPU, one thread, no torch import: the
    inverse's small crops). ``operator``: diffusion_matrix(anatomy), when the caller reuses it."""
    lam = np.atleast_1d(np.asarray(lambda_mm, dtype=np.float64))
    B = lam.size
    if np.any(lam <= 0):
        raise ValueError("lambda_mm must be positive")
    if not anatomy.brain.any():
        raise ValueError("the anatomy has no brain voxels")
    m_max = float(anatomy.m.max())
    n, step = _schedule(lam, taus, anatomy.spacing_mm, m_max, dt_factor)
    A = diffusion_matrix(anatomy) if operator is None else operator
    brain_idx = np.flatnonzero(anatomy.brain.ravel())
    u0 = seed(anatomy, origin_vox) if u0 is None else np.asarray(u0, np.float32)
    u = np.ascontiguousarray(u0.reshape(B, -1)[:, brain_idx].T)
    coef = ((lam / anatomy.spacing_mm) ** 2).astype(np.float32).reshape(1, B)
    if backend == "scipy":
        _loop_numpy(A, coef, reaction, n, step, u, anatomy, brain_idx, compact, on_snapshot,
                    progress, cancel)
    elif backend == "torch":
        _integrate_torch(A, coef, reaction, n, step, u, anatomy, brain_idx, compact,
                         on_snapshot, device, progress, cancel)
    else:
        raise ValueError(f"unknown backend {backend!r}")


def _loop_numpy(A, coef, reaction, n, step, u, anatomy, brain_idx, compact, on_snapshot,
                progress, cancel) -> None:
    """The scipy.sparse backend of :func:`integrate` (same scheme and schedule as torch)."""
    B = n.shape[0]
    r = np.float32(reaction)
    nvox = int(np.prod(anatomy.shape))
    state = {"u": u}

    def rhs(u, coef):
        d = A @ u
        d *= coef
        if r:
            t = np.subtract(np.float32(1), u)
            t *= u
            if r != 1:
                t *= r
            d += t
        return d

    def advance(n_s, st, k) -> None:
        """One SSP-RK2 step of the members with n_s > k (the others cost nothing)."""
        u = state["u"]
        cols = np.flatnonzero(n_s > k)
        full = len(cols) == B
        w, dt, c = (u, st.astype(np.float32).reshape(1, B), coef) if full else \
            (u[:, cols], st[cols].astype(np.float32).reshape(1, -1), coef[:, cols])
        v = rhs(w, c)                      # SSP-RK2: v = w + dt f(w)
        v *= dt
        v += w
        f = rhs(v, c)                      # w <- (w + v + dt f(v)) / 2
        f *= dt
        f += v
        f += w
        f *= np.float32(0.5)
        if full:
            state["u"] = f
        else:
            u[:, cols] = f

    def view():
        u = state["u"]
        if compact:
            return u.T
        full = np.zeros((B, nvox), dtype=np.float32)
        full[:, brain_idx] = u.T
        return full.reshape((B,) + tuple(anatomy.shape))

    _run_schedule(n, step, advance, view, on_snapshot, progress, cancel)


def _run_schedule(n, step, advance, view, on_snapshot, progress, cancel) -> None:
    """The time loop shared by both backends: per snapshot interval s, ``advance(n_s, st, k)``
    takes step k of every active member (n_s (B,) step counts, st (B,) step sizes, 0 for
    stopped members); then ``on_snapshot(s, view())`` may stop members."""
    B, S = n.shape
    active = np.ones(B, dtype=bool)
    total = max(1, int(n.max(axis=0).sum()))
    done_steps = 0
    for s in range(S):
        n_s = np.where(active, n[:, s], 0)
        st = np.where(active, step[:, s], 0.0)
        for k in range(int(n_s.max(initial=0))):
            advance(n_s, st, k)
            if (k & 31) == 31:
                if cancel is not None:
                    cancel.check()
                if progress is not None:
                    progress.update((done_steps + k + 1) / total)
        done_steps += int(n[:, s].max())
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress.update(done_steps / total)
        stop = on_snapshot(s, view())
        if stop is not None:
            active &= ~np.asarray(stop, dtype=bool)
            if not active.any():
                break
    if progress is not None:
        progress.update(1.0)


def _integrate_torch(A, coef, reaction, n, step, u, anatomy, brain_idx, compact, on_snapshot,
                     device, progress, cancel) -> None:
    from engine._torch import device as pick_device
    from engine._torch import torch

    dev = pick_device(device) if not isinstance(device, torch.device) else device
    B = coef.shape[1]
    with warnings.catch_warnings():     # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        A_t = torch.sparse_csr_tensor(torch.from_numpy(A.indptr.astype(np.int32)),
                                      torch.from_numpy(A.indices.astype(np.int32)),
                                      torch.from_numpy(A.data), size=A.shape,
                                      check_invariants=True).to(dev)
    u = torch.from_numpy(u).to(dev)
    g = torch.zeros_like(u)
    coef = torch.from_numpy(coef).to(dev)
    nvox = int(np.prod(anatomy.shape))
    idx_t = torch.from_numpy(brain_idx).to(dev)

    def rhs(u):
        """lambda^2 div(m grad u) + reaction u (1 - u) per unit tau, (n_brain, B)."""
        d = torch.sparse.mm(A_t, u).mul_(coef)
        if reaction:
            d.add_(u, alpha=reaction).addcmul_(u, u, value=-reaction)
        return d

    state = {"u": u, "g": g}

    def advance(n_s, st, k) -> None:
        """One SSP-RK2 (Heun) step, v = u + dt f(u); u <- (u + v + dt f(v)) / 2, members with
        n_s <= k taking dt = 0 (exactly no change)."""
        if k == 0:                        # a new snapshot interval: its step sizes on device
            state["steps"] = torch.tensor(st, dtype=torch.float32, device=dev).view(1, B)
            state["n"] = torch.tensor(n_s, device=dev).view(1, B)
        steps_t, n_t = state["steps"], state["n"]
        dt = torch.where(n_t > k, steps_t, torch.zeros_like(steps_t))  # (1, B)
        u, g = state["u"], state["g"]
        v = torch.addcmul(u, rhs(u), dt, out=g)
        v.addcmul_(rhs(v), dt).add_(u).mul_(0.5)
        state["u"], state["g"] = v, u

    def view():
        u = state["u"]
        if compact:
            return u.T
        full = torch.zeros((B, nvox), dtype=u.dtype, device=u.device)
        full[:, idx_t] = u.T
        return full.view((B,) + tuple(anatomy.shape))

    threads = torch.get_num_threads()
    if dev.type == "cpu" and A.shape[0] * B < SMALL_WORK:
        torch.set_num_threads(1)      # small ops: thread wake-ups cost more than they save
    try:
        _run_schedule(n, step, advance, view, on_snapshot, progress, cancel)
    finally:
        torch.set_num_threads(threads)


def simulate(anatomy, lambda_mm, origin_vox, taus, *, device=None, progress=None,
             cancel=None, **kw) -> np.ndarray:
    """lambda_mm (B,), origin_vox (B, 3) float voxel coords, taus (S,) (or (B, S)) increasing
    -> u (B, S, X, Y, Z) float32 in [0, 1], snapshot s taken at tau = taus[s]."""
    lam = np.atleast_1d(np.asarray(lambda_mm, dtype=np.float64))
    S = np.asarray(taus).shape[-1]
    out = np.zeros((lam.size, S) + tuple(anatomy.shape), dtype=np.float32)

    def keep(s, u):
        out[:, s] = u.detach().cpu().numpy() if hasattr(u, "detach") else u

    integrate(anatomy, lam, np.reshape(origin_vox, (lam.size, 3)), taus, keep, device=device,
              progress=progress, cancel=cancel, **kw)
    return out


def simulate_dimensional(anatomy, Dw_cm2_per_day, rho_per_day, T_days, origin_mm,
                         **kw) -> np.ndarray:
    """One tumor grown for T_days from origin_mm (3,) MNI mm -> u (X, Y, Z) float32 at T."""
    if Dw_cm2_per_day <= 0 or rho_per_day <= 0 or T_days <= 0:
        raise ValueError("Dw, rho and T must be positive")
    lambda_mm = 10.0 * math.sqrt(Dw_cm2_per_day / rho_per_day)
    tau = rho_per_day * T_days
    origin_vox = anatomy.mm_to_vox(np.asarray(origin_mm, dtype=np.float64).reshape(1, 3))
    return simulate(anatomy, [lambda_mm], origin_vox, [tau], **kw)[0, 0]


def simulate_numpy(anatomy, lambda_mm, origin_vox, taus, *, reaction: float = 1.0,
                   dt_factor: float = 1.0) -> np.ndarray:
    """Plain numpy reference of the same scheme, one simulation at a time (tests, benchmark).
    Same shapes as :func:`simulate`."""
    lam = np.atleast_1d(np.asarray(lambda_mm, dtype=np.float64))
    origin = np.reshape(origin_vox, (lam.size, 3))
    m_max = float(anatomy.m.max()) or 1.0
    n, step = _schedule(lam, taus, anatomy.spacing_mm, m_max, dt_factor)
    w = _face_weights(anatomy)
    out = np.zeros((lam.size, n.shape[1]) + tuple(anatomy.shape), dtype=np.float32)
    r = np.float32(reaction)

    def rhs(u, c):
        d = np.zeros_like(u)
        f = (u[1:] - u[:-1]) * w[0]
        d[:-1] += f
        d[1:] -= f
        f = (u[:, 1:] - u[:, :-1]) * w[1]
        d[:, :-1] += f
        d[:, 1:] -= f
        f = (u[:, :, 1:] - u[:, :, :-1]) * w[2]
        d[:, :, :-1] += f
        d[:, :, 1:] -= f
        return c * d + r * (u * (1 - u))

    for b in range(lam.size):
        u = seed(anatomy, origin[b:b + 1])[0]
        c = np.float32((lam[b] / anatomy.spacing_mm) ** 2)
        for s in range(n.shape[1]):
            dt = np.float32(step[b, s])
            for _ in range(n[b, s]):
                v = u + dt * rhs(u, c)
                u = np.float32(0.5) * (u + (v + dt * rhs(v, c)))
            out[b, s] = u
    return out
