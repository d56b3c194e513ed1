"""Hurst estimation: exact fBM sampler, exact evidence of the linear latent fractional SDE,
recovery of H, the `fsde hurst` CLI and its bad-input handling."""
import json
import math

import numpy as np
import pytest
from conftest import run_main

from engine._torch import torch
from engine.fsde import fbm, hurst, mafbm
from engine.jobs import CancelToken, Cancelled, InputError, Progress


@pytest.mark.parametrize("H", [0.25, 0.75])
def test_davies_harte_fbm_has_the_fbm_covariance(H):
    n, dt = 24, 0.5
    paths = fbm.fbm(n, H, 12000, dt=dt, rng=np.random.default_rng(5))
    assert paths.shape == (12000, n + 1) and np.all(paths[:, 0] == 0)
    t = np.arange(n + 1) * dt
    for i, j in ((4, 4), (10, 24), (24, 24)):
        theory = 0.5 * (t[i] ** (2 * H) + t[j] ** (2 * H) - abs(t[i] - t[j]) ** (2 * H))
        sample = np.mean(paths[:, i] * paths[:, j])
        assert abs(sample - theory) < 4.5 * math.sqrt(2 / 12000) * max(theory, t[j] ** (2 * H))


def test_fou_is_mean_reverting_and_noisy():
    x = fbm.fou(400, 0.5, 2000, dt=0.05, theta=2.0, sigma=1.0, substeps=4,
                rng=np.random.default_rng(0))
    # stationary variance of OU (H = 1/2): sigma^2 / (2 theta) = 0.25
    assert abs(x[:, -1].var() - 0.25) < 0.03
    noisy = fbm.fou(10, 0.5, 3000, dt=0.05, obs_noise=0.3, rng=np.random.default_rng(1))
    assert abs(noisy[:, 0].std() - 0.3) < 0.03


def dense_log_evidence(obs, s, r, H, K, gmax, T, dt, kind):
    """log p(obs_1.. | obs_0) for theta = mu = 0 by one dense Gaussian:
    obs_t = x0 + s B_hat(t) + e_t, x0 | obs_0 ~ N(obs_0, r^2)."""
    from scipy.stats import multivariate_normal

    g = mafbm.gammas(K, gmax).numpy()
    w = mafbm.omega(torch.tensor(g), H, T, kind).numpy()
    n = obs.shape[1] - 1
    ts = np.arange(1, n + 1) * dt
    S = 1.0 / (g[:, None] + g[None, :])

    def cov_y(a, b):            # Cov(y(a), y(b)), a >= b
        if kind == "II":        # y(0) = 0: e^{-g (a - b)} (1 - e^{-(g_i + g_j) b}) S
            return np.exp(-g * (a - b))[:, None] * -np.expm1(-(g[:, None] + g[None, :]) * b) * S
        return np.exp(-g * (a - b))[:, None] * S        # stationary

    C = np.empty((n, n))
    for a in range(n):
        for b in range(a + 1):
            if kind == "II":
                M = cov_y(ts[a], ts[b])
            else:               # increments y(t) - y(0)
                M = cov_y(ts[a], ts[b]) - cov_y(ts[a], 0) - cov_y(ts[b], 0).T + S
            C[a, b] = C[b, a] = w @ M @ w
    cov = s * s * C + r * r * (1 + np.eye(n))
    return sum(multivariate_normal(np.full(n, o[0]), cov).logpdf(o[1:]) for o in obs)


@pytest.mark.parametrize("kind", ["II", "I"])
def test_kalman_evidence_equals_dense_gaussian_evidence(kind):
    obs = fbm.fbm(12, 0.35, 3, dt=0.1, rng=np.random.default_rng(2))[:, :, None]
    model = hurst.LinearFractionalSSM(1, dt_model=0.3, T_model=3.6, K=4, kind=kind,
                                      gamma_max=6.0, hurst=0.35, scale=np.array([1.3]),
                                      noise=np.array([0.2]))
    with torch.no_grad():
        model.params["log_theta"].fill_(-50.0)      # theta -> 0 (clamped to 1e-8 / T)
        ev = float(model.log_evidence(torch.tensor(obs)))
    dense = dense_log_evidence(obs[:, :, 0], 1.3, 0.2, 0.35, 4, 6.0, 3.6, 0.3, kind)
    assert ev == pytest.approx(dense, rel=1e-6, abs=1e-6)


def test_kalman_model_is_the_latent_sde_of_sde_py():
    """Mean and variance of x(t) propagated by the exact discretisation equal those of
    LatentFractionalSDE.solve (Euler-Maruyama) with b(x) = mu - theta x, s(x) = s."""
    from engine.fsde.hurst import _discretise
    from engine.fsde.sde import LatentFractionalSDE

    model = hurst.LinearFractionalSSM(1, dt_model=0.5, T_model=1.0, K=3, gamma_max=3.0,
                                      hurst=0.3, scale=np.array([0.8]))
    with torch.no_grad():
        model.params["log_theta"].fill_(np.log(1.5))
        model.params["mu"].fill_(0.6)
        Phi, Q, c = _discretise(*model.system(), 0.5)
        mean = Phi[0, 0, 0] * 1.0 + c[0, 0]                   # x(0) = 1, y(0) = 0
        var = float(Q[0, 0, 0])

    class Drift(torch.nn.Module):
        def forward(self, x):
            return 0.6 - 1.5 * x

    class Diff(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, 0.8)

    sde = LatentFractionalSDE(1, K=3, gamma_max=3.0, hurst=0.3, T=1.0, drift=Drift(),
                              diffusion=Diff()).double()
    n = 6000
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        xs, _ = sde.solve(torch.ones(n, 1, dtype=torch.float64), torch.tensor([0.0, 0.5]),
                          dt=0.002, generator=gen)
    x = xs[-1, :, 0]
    assert abs(float(x.mean()) - float(mean)) < 4.5 * np.sqrt(var / n) + 0.01 * abs(float(mean))
    assert abs(float(x.var()) - var) < 4.5 * var * np.sqrt(2 / n) + 0.02 * var


@pytest.mark.parametrize("H", [0.25, 0.75])
def test_recovers_h_of_exact_fbm(H):
    paths = fbm.fbm(96, H, 6, dt=0.02, rng=np.random.default_rng(11))
    events = []
    res = hurst.estimate_hurst(paths, 0.02, max_iter=40,
                               progress=Progress(lambda e: events.append(e.message)))
    assert abs(res["hurst"] - H) < 0.1
    assert 0 < res["hurst_std"] < 0.2 and math.isfinite(res["elbo"])
    assert res["type"] == "II" and res["K"] == 8
    assert any("ELBO" in m and "H " in m for m in events)


def test_recovers_h_of_noisy_fou():
    paths = fbm.fou(96, 0.7, 6, dt=0.05, theta=1.0, obs_noise=0.02,
                    rng=np.random.default_rng(4))
    res = hurst.estimate_hurst(paths, 0.05, max_iter=40)
    assert abs(res["hurst"] - 0.7) < 0.1


def test_estimation_is_cancellable():
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        hurst.estimate_hurst(fbm.fbm(10, 0.5, 2, rng=np.random.default_rng(0)), 1.0,
                             cancel=cancel)


def test_cli_writes_the_estimate(tmp_path):
    data = tmp_path / "paths.npy"
    np.save(data, fbm.fbm(127, 0.3, 4, dt=1.0, rng=np.random.default_rng(1))[:, :, None]
            * np.array([1.0, 5.0]))                            # (N, T, D = 2)
    out = tmp_path / "est.json"
    proc = run_main("fsde", "hurst", "--data", data, "--dt", "1", "--out", out, "--exact")
    assert proc.returncode == 0, proc.stderr
    est = json.loads(out.read_text())
    assert {"hurst", "hurst_std", "elbo", "type", "K"} <= set(est)
    assert abs(est["hurst"] - 0.3) < 0.1 and est["K"] == 8 and est["type"] == "II"
    assert est["sigma"][1] == pytest.approx(5 * est["sigma"][0], rel=0.05)
    assert est["noise"][0] < 1e-3 and est["noise"][1] < 5e-3   # --exact: noise at its floor
    assert f"H = {est['hurst']:.3f}" in proc.stdout


@pytest.mark.parametrize("kind,expect", [
    ("nan", "NaN"), ("rank", "shape"), ("empty", "empty"), ("text", "could not read"),
    ("short", "time steps"), ("constant", "never change")])
def test_cli_bad_paths_give_one_sentence_and_exit_2(tmp_path, kind, expect):
    data = tmp_path / "paths.npy"
    if kind == "nan":
        arr = np.zeros((2, 20)); arr[1, 3] = np.nan; np.save(data, arr)
    elif kind == "rank":
        np.save(data, np.zeros(20))
    elif kind == "empty":
        np.save(data, np.zeros((0, 20)))
    elif kind == "short":
        np.save(data, np.zeros((2, 5)))
    elif kind == "constant":
        arr = np.zeros((2, 20, 2)); arr[:, :, 0] = np.arange(20); np.save(data, arr)
    else:
        data.write_text("not an array")
    out = tmp_path / "est.json"
    proc = run_main("fsde", "hurst", "--data", data, "--dt", "0.1", "--out", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and str(data) in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [data]


def test_cli_rejects_non_positive_dt(tmp_path):
    data = tmp_path / "paths.npy"
    np.save(data, np.cumsum(np.ones((2, 20)), 1))
    proc = run_main("fsde", "hurst", "--data", data, "--dt", "0", "--out", tmp_path / "e.json")
    assert proc.returncode == 2 and "--dt" in proc.stderr


def test_estimate_is_invariant_to_units():
    paths = fbm.fbm(40, 0.6, 3, dt=0.1, rng=np.random.default_rng(8))
    a = hurst.estimate_hurst(paths, 0.1, max_iter=30)
    b = hurst.estimate_hurst(paths * 1e6 + 3e6, 0.1, max_iter=30)
    assert b["hurst"] == pytest.approx(a["hurst"], abs=1e-6)
    assert b["sigma"][0] == pytest.approx(1e6 * a["sigma"][0], rel=1e-5)
    n_obs = 3 * 40                                   # the first observation is conditioned on
    assert b["elbo"] == pytest.approx(a["elbo"] - n_obs * np.log(1e6), abs=1e-5)


def test_load_paths_accepts_both_ranks(tmp_path):
    p = tmp_path / "a.npy"
    rng = np.random.default_rng(0)
    np.save(p, rng.standard_normal((3, 9)).astype(np.float32))
    assert hurst.load_paths(p).shape == (3, 9, 1)
    np.save(p, rng.integers(0, 5, (3, 9, 2)))
    assert hurst.load_paths(p).dtype == np.float64
    with pytest.raises(InputError):
        hurst.load_paths(tmp_path / "missing.npy")


@pytest.mark.parametrize("option,value", [
    ("--max-iter", "0"), ("--gamma-max", "-3"), ("--gamma-max", "1"), ("--K", "1"),
    ("--starts", "1.2")])
def test_cli_rejects_bad_options(tmp_path, option, value):
    data = tmp_path / "paths.npy"
    np.save(data, fbm.fbm(20, 0.5, 2, rng=np.random.default_rng(0)))
    out = tmp_path / "e.json"
    proc = run_main("fsde", "hurst", "--data", data, "--dt", "1", "--out", out, option, value)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def strict_json(text):
    """json.loads that refuses NaN / Infinity (what other JSON readers do)."""
    def bad(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=bad)


def test_cli_extreme_scales_give_the_same_h_and_strict_json(tmp_path):
    """Paths x 1e199 used to give H 0.033 and -Infinity / NaN in the JSON."""
    base = fbm.fbm(24, 0.3, 2, dt=1.0, rng=np.random.default_rng(1))
    kw = dict(K=4, max_iter=10)
    ref = hurst.estimate_hurst(base, 1.0, **kw)
    for scale in (1e-300, 1e300):          # what the fit sees is the same at any scale
        obs, center, unit, s0 = hurst.normalise(base[:, :, None] * scale)
        assert np.allclose(obs, hurst.normalise(base[:, :, None])[0], rtol=1e-9, atol=1e-9)
        assert s0 * unit[0] == pytest.approx(scale * np.diff(base, axis=1).std(), rel=1e-9)
    data, out = tmp_path / "paths.npy", tmp_path / "est.json"
    np.save(data, base * 1e199)
    proc = run_main("fsde", "hurst", "--data", data, "--dt", "1", "--out", out,
                    "--max-iter", "10", "--K", "4")
    assert proc.returncode == 0, proc.stderr
    est = strict_json(out.read_text())
    assert est["hurst"] == pytest.approx(ref["hurst"], abs=1e-6)
    assert est["hurst_std"] == pytest.approx(ref["hurst_std"], rel=1e-4)
    assert est["sigma"][0] == pytest.approx(1e199 * ref["sigma"][0], rel=1e-5)
    assert est["elbo"] == pytest.approx(ref["elbo"] - 2 * 24 * np.log(1e199), rel=1e-9)


def test_non_finite_evidence_at_the_start_raises_instead_of_returning_the_start(monkeypatch):
    paths = fbm.fbm(20, 0.3, 2, rng=np.random.default_rng(0))
    monkeypatch.setattr(hurst.LinearFractionalSSM, "log_evidence",
                        lambda self, obs, params=None: torch.tensor(float("nan"),
                                                                    dtype=torch.float64))
    with pytest.raises(hurst.HurstFitError, match="not finite"):
        hurst.estimate_hurst(paths, 1.0, max_iter=5, starts=(0.42,))


def quadratic_model(curv_h, curv_other=1.0, coupling=0.0):
    """A model whose -log evidence is 0.5 z^T C z in z = (logit H - 0.4, log_s, ...)."""
    model = hurst.LinearFractionalSSM(1, dt_model=0.3, T_model=3.6, K=3)
    with torch.no_grad():
        model.params["logit_h"].fill_(0.4)
        model.params["log_theta"].fill_(-1.0)
        model.params["mu"].fill_(0.0)

    def log_evidence(obs, params=None):
        p = model.params if params is None else params
        z = torch.cat([(p["logit_h"] - 0.4).reshape(1), p["log_s"], p["log_theta"] + 1.0,
                       p["mu"], p["log_r"] - float(np.log(0.1))])
        C = torch.eye(5, dtype=torch.float64) * curv_other
        C[0, 0] = curv_h
        C[0, 1] = C[1, 0] = coupling
        return -0.5 * z @ C @ z

    model.log_evidence = log_evidence
    return model


def test_laplace_std_of_a_quadratic_evidence_is_the_analytic_one():
    model = quadratic_model(curv_h=4.0, curv_other=2.0, coupling=1.0)
    std, note = hurst.laplace_std(model, None)
    h = 1 / (1 + np.exp(-0.4))
    var_logit = np.linalg.inv(np.array([[4.0, 1.0], [1.0, 2.0]]))[0, 0]   # Schur complement
    assert std == pytest.approx(h * (1 - h) * np.sqrt(var_logit), rel=1e-8) and note == ""


@pytest.mark.parametrize("curv_h,why", [(0.0, "flat along a direction that moves H"),
                                        (-3.0, "not at a maximum")])
def test_laplace_std_is_undetermined_not_zero(curv_h, why):
    """Flat or wrongly curved along H: the old pseudo-inverse dropped the direction and
    reported 0."""
    std, note = hurst.laplace_std(quadratic_model(curv_h), None)
    assert std is None and why in note


def test_laplace_std_pseudo_inverse_only_for_directions_independent_of_h():
    std, note = hurst.laplace_std(quadratic_model(curv_h=4.0, curv_other=0.0), None)
    h = 1 / (1 + np.exp(-0.4))
    assert std == pytest.approx(h * (1 - h) / 2.0, rel=1e-8)
    assert "pseudo-inverse" in note and "4 flat" in note


@pytest.mark.parametrize("option,value", [
    ("--dt", "nan"), ("--dt", "inf"), ("--dt", "-1"), ("--gamma-max", "nan"),
    ("--gamma-max", "inf"), ("--starts", "nan"), ("--K", "1000"), ("--K", "2.5"),
    ("--max-iter", "-3")])
def test_cli_rejects_non_finite_and_out_of_range_numbers(tmp_path, option, value):
    data = tmp_path / "paths.npy"
    np.save(data, fbm.fbm(20, 0.5, 2, rng=np.random.default_rng(0)))
    out = tmp_path / "e.json"
    args = ["--dt", "1"] if option != "--dt" else []
    proc = run_main("fsde", "hurst", "--data", data, *args, "--out", out, option, value)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and not out.exists()
