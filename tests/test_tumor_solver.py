"""Physics checks of the Fisher-Kolmogorov solver (engine/tumor/solver.py) and the anatomy."""
from __future__ import annotations

import numpy as np
import pytest

from engine.jobs import CancelToken, Cancelled, InputError
from engine.tumor.anatomy import load_anatomy, make_anatomy
from engine.tumor.solver import (dimensional, integrate, simulate, simulate_dimensional,
                                 simulate_numpy, time_step)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def slab(n: int, h: float) -> "Anatomy":  # noqa: F821
    """Homogeneous white matter, 1-D-like (n, 1, 1) slab of spacing h mm starting at x = 0."""
    wm = np.ones((n, 1, 1))
    return make_anatomy(wm, 0 * wm, np.diag([h, h, h, 1.0]), h)


def front_mm(u: np.ndarray, h: float, level: float = 0.5) -> float:
    """Position of the first u = level crossing along a 1-D profile (linear interpolation)."""
    i = int(np.argmax(u < level))
    return h * ((i - 1) + (u[i - 1] - level) / (u[i - 1] - u[i]))


def wm_origin(an, k: int = 0) -> np.ndarray:
    pts = np.argwhere(an.wm > 0.9)
    return pts[(len(pts) // 3 + 97 * k) % len(pts)].astype(float)


@pytest.fixture(scope="module")
def an8():
    return load_anatomy(8)


def test_anatomy_grid_and_affine():
    an = load_anatomy(4)
    assert an.shape == an.wm.shape == an.gm.shape == an.m.shape == an.brain.shape
    assert an.spacing_mm == 4.0
    assert np.allclose(np.abs(np.diag(an.affine)[:3]), 4.0)
    # brain volume of the MNI template: 1.2 .. 2.0 litres
    assert 1200 < an.brain.sum() * an.voxel_cm3 < 2000
    assert np.all(an.m[~an.brain] == 0) and np.all(an.m[an.brain] > 0)
    # MNI origin (anterior commissure) lies inside the brain, in the middle of the grid
    ac = np.rint(an.mm_to_vox([0.0, 0.0, 0.0])).astype(int)
    assert an.brain[tuple(ac)]
    ijk = np.array([[1.0, 2.0, 3.0], [10.5, 7.0, 0.0]])
    assert np.allclose(an.mm_to_vox(an.vox_to_mm(ijk)), ijk)
    # left-right symmetric template: mirrored white matter agrees with itself
    assert dice(an.wm > 0.5, an.wm[::-1] > 0.5) > 0.9


def test_missing_grid_is_input_error():
    with pytest.raises(InputError, match="No atlas grid at 5 mm"):
        load_anatomy(5)


def test_front_speed_tends_to_2_sqrt_D_rho():
    """Homogeneous white matter: the front moves at 2 sqrt(Dw rho) (here 0.4 mm/day)."""
    h = 1.0
    an = slab(320, h)
    Dw, rho = 0.004, 0.1          # cm^2/day, 1/day -> lambda = 2 mm, speed 0.4 mm/day
    speed_theory = 2 * np.sqrt(Dw * rho) * 10.0    # mm/day
    t1, t2 = 300.0, 600.0
    x1 = front_mm(simulate_dimensional(an, Dw, rho, t1, [0, 0, 0])[:, 0, 0], h)
    x2 = front_mm(simulate_dimensional(an, Dw, rho, t2, [0, 0, 0])[:, 0, 0], h)
    speed = (x2 - x1) / (t2 - t1)
    assert abs(speed / speed_theory - 1) < 0.05
    # and a coarser grid (h = 2 lambda) is measurably further off: the limit is approached
    coarse = slab(80, 4.0)
    xc = [front_mm(simulate(coarse, [2.0], [[0, 0, 0]], [tau])[0, 0, :, 0, 0], 4.0)
          for tau in (rho * t1, rho * t2)]
    speed_coarse = (xc[1] - xc[0]) / (t2 - t1) / rho
    assert abs(speed_coarse / (speed_theory / rho) - 1) > abs(speed / speed_theory - 1)


def test_mass_conserved_without_reaction(an8):
    origin = wm_origin(an8)
    taus = [0.5, 2.0, 5.0]
    u = simulate(an8, [15.0], [origin], taus, reaction=0.0)[0]
    from engine.tumor.solver import seed
    m0 = seed(an8, [origin]).astype(np.float64).sum()
    for s in range(len(taus)):
        assert abs(u[s].astype(np.float64).sum() / m0 - 1) < 1e-5
    assert np.abs(u[-1] - u[0]).max() > 1e-3        # it did diffuse


def test_u_in_unit_interval_and_no_flux_into_csf(an8):
    lam = np.array([4.0, 12.0, 27.0])
    origins = np.stack([wm_origin(an8, k) for k in range(3)])
    u = simulate(an8, lam, origins, [2.0, 8.0, 14.0])
    assert u.min() >= 0.0 and u.max() <= 1.0
    assert u.max() > 0.99                         # grew to (almost) full cell density
    assert np.all(u[:, :, ~an8.brain] == 0.0)      # nothing outside tissue, ever


def test_halving_dt_changes_masks_less_than_1_percent():
    an = load_anatomy(4)
    lam = np.array([2.0, 5.0, 12.0])
    origins = np.stack([wm_origin(an, k) for k in range(3)])
    taus = [5.0, 9.0]
    u1 = simulate(an, lam, origins, taus)
    u2 = simulate(an, lam, origins, taus, dt_factor=0.5)
    for b in range(3):
        for thr in (0.2, 0.6):
            a, c = u1[b, -1] >= thr, u2[b, -1] >= thr
            assert a.sum() > 20
            assert dice(a, c) > 0.99, (lam[b], thr, dice(a, c))


def test_mirror_symmetric_anatomy_gives_mirrored_tumor(an8):
    wm = (an8.wm + an8.wm[::-1]) / 2
    gm = (an8.gm + an8.gm[::-1]) / 2
    sym = make_anatomy(wm, gm, an8.affine, an8.spacing_mm)
    o = wm_origin(sym, 1)
    o_mirror = np.array([sym.shape[0] - 1 - o[0], o[1], o[2]])
    u = simulate(sym, [6.0, 6.0], [o, o_mirror], [2.0, 6.0])
    assert np.abs(u[0] - u[1]).max() > 0.1        # the origin is off the mid-plane
    assert np.abs(u[0][:, ::-1] - u[1]).max() < 1e-5


def test_batch_equals_single_runs(an8):
    lam = np.array([3.0, 9.0, 25.0])
    origins = np.stack([wm_origin(an8, k) for k in range(3)]) + 0.3
    taus = [0.7, 3.0, 8.0]
    batch = simulate(an8, lam, origins, taus)
    sci = simulate(an8, lam, origins, taus, backend="scipy")   # steps only running members
    for b in range(3):
        single = simulate(an8, lam[b:b + 1], origins[b:b + 1], taus)[0]
        assert np.abs(batch[b] - single).max() <= 1e-6
        assert np.abs(sci[b] - single).max() <= 1e-5


def test_torch_matches_plain_numpy_reference(an8):
    lam, origin, taus = [7.0], [wm_origin(an8, 2)], [2.0, 5.0]
    ref = simulate_numpy(an8, lam, origin, taus)
    got = simulate(an8, lam, origin, taus)
    assert np.abs(ref - got).max() < 1e-5
    sci = simulate(an8, lam, origin, taus, backend="scipy")     # the inverse's torch-free path
    assert np.abs(sci - got).max() < 1e-5
    assert got[0, -1].max() > 0.5


def test_time_step_bounds():
    lam = np.array([0.3, 2.0, 8.0, 27.0])
    for h in (3.0, 4.0):
        dt = time_step(lam, h)
        assert np.all(dt <= h ** 2 / (6 * lam ** 2)) and np.all(dt <= 0.5)


def test_dimensional_identities():
    d = dimensional(lambda_mm=20.0, tau=4.0, T_days=100.0)
    assert d["mu1_cm"] == pytest.approx(2.0 * 2.0)          # 2 cm * sqrt(4)
    assert d["mu2"] == pytest.approx(2.0)
    assert d["rho_per_day"] == pytest.approx(0.04)
    assert d["Dw_cm2_per_day"] == pytest.approx(0.16)
    # lambda recovered: sqrt(Dw / rho) = 2 cm
    assert np.sqrt(d["Dw_cm2_per_day"] / d["rho_per_day"]) == pytest.approx(2.0)


def test_cancel_stops_simulation(an8):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        simulate(an8, [20.0], [wm_origin(an8)], [5.0], cancel=token)


def test_csf_slab_between_two_tissue_blocks_stops_the_tumor():
    """Two white-matter blocks separated by a 1-voxel CSF slab: the block without the seed
    stays exactly empty (a solver with flux through CSF, or a wrong neighbour index in the
    flattened operator, would leak into it), while the seeded block fills up."""
    wm = np.ones((25, 9, 9))
    wm[12] = 0.0                                          # CSF slab at x = 12
    an = make_anatomy(wm, 0 * wm, np.eye(4), 1.0)
    u = simulate(an, [3.0], [[3.0, 4.0, 4.0]], [20.0])[0, 0]   # seed cut 7.5 mm < 9 mm
    assert u[:12].min() > 0.9                              # the seeded block is full
    assert np.all(u[12:] == 0.0)                           # nothing crossed the slab


def test_diffusion_operator_matches_the_1d_heat_kernel():
    """reaction = 0, homogeneous white matter on a long 1-D slab: a Gaussian of variance s0^2
    spreads to variance s0^2 + 2 lambda^2 tau (the analytic heat kernel)."""
    h, n, lam, tau, s0 = 1.0, 241, 2.0, 5.0, 3.0
    an = slab(n, h)
    x = np.arange(n) * h
    c = x[n // 2]
    u0 = np.exp(-(x - c) ** 2 / (2 * s0 ** 2)).reshape(1, n, 1, 1).astype(np.float32)
    out = []
    integrate(an, [lam], [[n // 2, 0, 0]], [tau], lambda s, u: out.append(np.asarray(u)),
              reaction=0.0, u0=u0, backend="scipy")
    u = out[0][0, :, 0, 0].astype(np.float64)
    var = s0 ** 2 + 2 * lam ** 2 * tau
    exact = s0 / np.sqrt(var) * np.exp(-(x - c) ** 2 / (2 * var))
    assert np.abs(u - exact).max() < 0.01 * exact.max()
    got_var = (u * (x - c) ** 2).sum() / u.sum()
    assert got_var == pytest.approx(var, rel=0.01)


def tau_at_volumes(h: float, lam: float, origin_mm, vols=(10.0, 30.0, 60.0)) -> np.ndarray:
    """tau at which the whole-tumor volume (u >= 0.2) first reaches each of ``vols`` cm^3, on
    the atlas grid of spacing h (a crop of half-width 48 mm around the origin; linear
    interpolation between snapshots 0.05 apart)."""
    from engine.tumor.refine import shift_affine

    an = load_anatomy(h)
    o = an.mm_to_vox(np.asarray(origin_mm, dtype=float))
    r = int(np.ceil(48.0 / h))
    lo = np.maximum(np.floor(o).astype(int) - r, 0)
    hi = np.minimum(np.floor(o).astype(int) + r + 1, an.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = make_anatomy(an.wm[box], an.gm[box], an.affine @ shift_affine(lo), h)
    taus = np.arange(0.05, 20.0, 0.05)
    v = []

    def on(s, u):
        v.append(float((np.asarray(u) >= np.float32(0.2)).sum()) * sub.voxel_cm3)
        return np.array([v[-1] > 1.05 * max(vols)])

    integrate(sub, [lam], (o - lo)[None], taus, on, compact=True, backend="scipy")
    v = np.array(v)
    t = taus[:len(v)]
    out = []
    for target in vols:
        i = int(np.argmax(v >= target))
        assert v[i] >= target > v[i - 1]
        out.append(t[i - 1] + (t[i] - t[i - 1]) * (target - v[i - 1]) / (v[i] - v[i - 1]))
    return np.array(out)


@pytest.mark.parametrize("lam, origin_mm", [(4.0, (25.0, -10.0, 20.0)),
                                            (6.0, (10.0, 30.0, 30.0))])
def test_growth_times_agree_between_grids(lam, origin_mm):
    """The seed is physical (sigma in mm): for the same (lambda, origin) the tau at which the
    whole tumor reaches 10, 30 and 60 cm^3 agrees within 5 % on the 1.5, 2, 3 and 4 mm grids
    (with a one-voxel seed the 4 mm grid reached them far earlier)."""
    t = {h: tau_at_volumes(h, lam, origin_mm) for h in (1.5, 2.0, 3.0, 4.0)}
    for h in (2.0, 3.0, 4.0):
        assert np.all(np.abs(t[h] / t[1.5] - 1) < 0.05), (h, t[h], t[1.5])
