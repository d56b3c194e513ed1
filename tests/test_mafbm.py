"""MA-fBM: closed forms against the brute-quadrature reference, dω/dH, H = 1/2, Monte Carlo."""
import json
from pathlib import Path

import numpy as np
import pytest

from engine._torch import torch
from engine.fsde import mafbm

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mafbm_reference.json"
CASES = json.loads(REFERENCE.read_text())["cases"]
DIGITS = 30  # mpmath precision of the independent solve below


def high_precision(c):
    """The case solved independently of our code at DIGITS digits (mpmath): closed-form A,
    b from mpmath's regularised incomplete gamma functions, omega* = A^-1 b by LU, the
    optimal relative error err* = sqrt((iv - b.omega*) / iv), and err(w), the relative error
    of any float weights w scored with the same exact A, b and iv."""
    import mpmath as mp

    with mp.workdps(DIGITS):
        K, kind = c["K"], c["type"]
        H, T, gm = mp.mpf(c["H"]), mp.mpf(c["T"]), mp.mpf(c["gamma_max"])
        r = gm ** (mp.mpf(2) / (K - 1))
        g = [r ** (k - mp.mpf(K + 1) / 2) for k in range(1, K + 1)]
        a = H + mp.mpf(1) / 2
        A, b = mp.matrix(K, K), mp.matrix(K, 1)
        for i in range(K):
            for j in range(K):
                s = g[i] + g[j]
                if kind == "II":
                    A[i, j] = (s * T + mp.expm1(-s * T)) / s ** 2
                else:
                    A[i, j] = (2 * T + mp.expm1(-g[i] * T) / g[i] + mp.expm1(-g[j] * T) / g[j]) / s
        for k in range(K):
            X = g[k] * T
            if kind == "II":
                b[k] = g[k] ** (-a) * (T * mp.gammainc(a, 0, X, regularized=True) -
                                       a / g[k] * mp.gammainc(a + 1, 0, X, regularized=True))
            else:
                D = mp.exp(X) * mp.gammainc(a, X, mp.inf, regularized=True)
                b[k] = g[k] ** (-a) * (2 * T + mp.expm1(-X) / g[k] -
                                       (D - 1 + X ** a / mp.gamma(a + 1)) / g[k])
        var_t = (T ** (2 * H) / (2 * H * mp.gamma(a) ** 2) if kind == "II" else
                 T ** (2 * H) / (mp.gamma(2 * H + 1) * mp.sin(mp.pi * H)))
        iv = var_t * T / (2 * H + 1)
        w = mp.lu_solve(A, b)

        def err(weights):
            v = mp.matrix([mp.mpf(float(x)) for x in weights])
            e = iv - 2 * (v.T * b)[0] + (v.T * A * v)[0]
            return float(mp.sqrt(max(e, 0) / iv))

        return np.array([float(x) for x in w]), err(w), err


HP = {}


def hp(c):
    key = (c["type"], c["H"], c["K"], c["gamma_max"], c["T"])
    if key not in HP:
        HP[key] = high_precision(c)
    return HP[key]


def reference_is_accurate(c) -> bool:
    """The reference's weights agree with the 30-digit optimum to 1e-4 (see below)."""
    w_star, _, _ = hp(c)
    return rel(c["omega"], w_star) < 1e-4


def rel(x, ref):
    x, ref = np.asarray(x, float), np.asarray(ref, float)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


def case_id(c):
    return f"{c['type']}-H{c['H']}-K{c['K']}-g{c['gamma_max']}-T{c['T']}"


def computed(c):
    g = mafbm.gammas(c["K"], c["gamma_max"])
    A = mafbm.a_matrix(g, c["T"], c["type"])
    b = mafbm.b_vector(g, c["H"], c["T"], c["type"])
    return g, A, b


def test_reference_has_twenty_cases_of_both_types():
    assert len(CASES) == 20
    assert {c["type"] for c in CASES} == {"I", "II"}


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_speeds_matrix_vector_and_variance_match_reference(c):
    g, A, b = computed(c)
    assert rel(g, c["gamma"]) < 1e-4
    assert rel(A, c["A"]) < 1e-4
    assert rel(b, c["b"]) < 1e-4
    iv = mafbm.integrated_variance(c["H"], c["T"], c["type"])
    assert abs(iv / c["integrated_variance"] - 1) < 1e-4


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_weights_and_error_match_reference(c):
    g, A, b = computed(c)
    w = mafbm.omega(g, c["H"], c["T"], c["type"])
    _, err = mafbm.approximation_error(g, c["H"], c["T"], c["type"])
    w_star, err_star, err_of = hp(c)
    # the normal equations hold in every case
    assert float(torch.linalg.norm(A @ w - b) / torch.linalg.norm(b)) < 1e-6
    # our weights reach the true optimum (scored exactly) in every case
    assert abs(err_of(w.numpy()) - err_star) <= 1e-3 * err_star + 1e-7
    if reference_is_accurate(c):
        assert rel(w, c["omega"]) < 1e-4 and rel(w, w_star) < 1e-4
        assert abs(float(err) - c["relative_l2_error"]) <= 1e-4 * c["relative_l2_error"]
    else:
        # Exempt from the 1e-4 comparison, justified by the 30-digit solve, not by our code:
        # here A is so ill-conditioned (cond ~ 1e15) that omega is not determined by float64
        # data; the reference's weights are 17-22 % off the optimum and its listed error lies
        # BELOW the true optimum err* (impossible for any weights), so the listed numbers
        # cannot be met to 1e-4. What is well defined: our error matches err* (above) and the
        # listed one to 1.5 %.
        assert rel(c["omega"], w_star) > 1e-2
        assert c["relative_l2_error"] < err_star
        assert abs(float(err) - c["relative_l2_error"]) <= 1.5e-2 * c["relative_l2_error"] + 1e-6


def test_inaccurate_reference_cases_are_only_the_type_ii_k8_ones():
    """The exemption list comes from the independent 30-digit solve: exactly the five type II,
    K = 8, gamma_max = 50 cases (where our own float64 A is also the ill-conditioned one)."""
    bad = [c for c in CASES if not reference_is_accurate(c)]
    assert {(c["type"], c["K"], c["gamma_max"]) for c in bad} == {("II", 8, 50.0)}
    assert len(bad) == 5
    assert all(np.linalg.cond(computed(c)[1].numpy()) > 1e14 for c in bad)


def test_high_precision_solve_is_checked_against_scipy_where_float64_suffices():
    """The mpmath solve itself agrees with scipy's closed form of b on a well-conditioned case
    (so the exemption rests on a checked computation)."""
    c = next(c for c in CASES if c["type"] == "II" and c["K"] == 5 and c["H"] == 0.3)
    w_star, err_star, _ = hp(c)
    g, A, _ = computed(c)
    b = mafbm.b_closed(g.numpy(), c["H"], c["T"], "II")
    assert rel(np.linalg.solve(A.numpy(), b), w_star) < 1e-8
    assert err_star == pytest.approx(c["relative_l2_error"], rel=1e-6)


@pytest.mark.parametrize("kind", ["I", "II"])
@pytest.mark.parametrize("H", [0.05, 0.3, 0.5, 0.77, 0.95])
def test_quadrature_b_matches_incomplete_gamma_closed_form(kind, H):
    g = mafbm.gammas(6, 40.0)
    for T in (0.5, 3.0):
        b = mafbm.b_vector(g, H, T, kind).numpy()
        assert rel(b, mafbm.b_closed(g.numpy(), H, T, kind)) < 1e-9


@pytest.mark.parametrize("kind", ["I", "II"])
def test_gradient_of_weights_in_h_matches_finite_differences(kind):
    g = mafbm.gammas(5, 20.0)
    v = torch.linspace(-1.0, 2.0, 5, dtype=torch.float64)   # probe direction
    for H0 in (0.25, 0.6):
        H = torch.tensor(H0, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(mafbm.omega(g, H, 2.0, kind) @ v, H)
        h = 1e-5
        fd = ((mafbm.omega(g, H0 + h, 2.0, kind) - mafbm.omega(g, H0 - h, 2.0, kind)) @ v) / (2 * h)
        assert abs(float(grad) - float(fd)) <= 1e-6 * abs(float(fd)) + 1e-8
        assert abs(float(fd)) > 1e-3                        # the probe is not blind


def test_h_half_type_ii_reduces_to_brownian_motion():
    ref = next(c for c in CASES if c["type"] == "II" and c["H"] == 0.5 and c["K"] == 5)
    g = mafbm.gammas(5, ref["gamma_max"])
    T = ref["T"]
    w = mafbm.omega(g, 0.5, T, "II")
    _, err = mafbm.approximation_error(g, 0.5, T, "II")
    assert float(err) <= ref["relative_l2_error"] * (1 + 1e-4)
    # Var B_hat(t) = t (Brownian) within the reference error, at several t
    for t in (0.1, 0.7, 1.5, T):
        var = float(w @ mafbm.state_covariance(g, t, "II") @ w)
        assert abs(var - t) / t < 10 * ref["relative_l2_error"]
    # the kernel sum_k omega_k exp(-gamma_k u) is ~1 (the Brownian kernel) on [0, T]
    u = torch.linspace(0.05, T, 50, dtype=torch.float64)
    kernel = (w[:, None] * torch.exp(-g[:, None] * u)).sum(0)
    assert float((kernel - 1).abs().max()) < 0.05


@pytest.mark.parametrize("kind,H", [("II", 0.3), ("II", 0.8), ("I", 0.3), ("I", 0.7)])
def test_simulated_variance_matches_theory(kind, H):
    g = mafbm.gammas(4, 10.0)
    w = mafbm.omega(g, H, 1.0, kind)
    n, steps, dt = 20000, 20, 0.05
    gen = torch.Generator().manual_seed(3)
    paths = mafbm.simulate(g, w, steps, dt, n, kind, generator=gen)
    assert paths.shape == (n, steps + 1)
    assert float(paths[:, 0].abs().max()) == 0.0
    for i in (2, 10, 20):
        theory = float(w @ mafbm.state_covariance(g, i * dt, kind) @ w)
        sample = float(paths[:, i].var())
        mc_sd = theory * np.sqrt(2.0 / (n - 1))        # sd of a Gaussian sample variance
        assert abs(sample - theory) < 4.5 * mc_sd
    # and the MA-fBM variance is close to the fBM one (within the approximation error)
    _, err = mafbm.approximation_error(g, H, 1.0, kind)
    fbm_var = mafbm.fbm_variance(H, 1.0, kind)
    assert abs(float(paths[:, -1].var()) - fbm_var) / fbm_var < 3 * float(err) + 0.05
