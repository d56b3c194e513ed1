"""Latent fractional SDE: shapes, prior = posterior with u = 0, path KL against Girsanov and
the exact evidence of a linear-Gaussian model, control wiring, Brownian baseline, OU
stationary variance, MC variance of the Euler-Maruyama solution, gradient to H."""
import math

import numpy as np
import pytest

from engine._torch import torch
from engine.fsde import mafbm
from engine.fsde.sde import LatentFractionalSDE, gaussian_kl

nn = torch.nn


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


class One(nn.Module):
    def forward(self, x):
        return torch.ones_like(x)


def pure_noise_model(**kw):
    """b = 0, s = 1: x(t) = x0 + B_hat(t)."""
    return LatentFractionalSDE(drift=Zero(), diffusion=One(), **kw)


def test_shapes_and_start():
    m = LatentFractionalSDE(3, K=4, hurst=0.3)
    x0 = torch.randn(5, 3)
    ts = torch.linspace(0, 1, 7)
    xs, kl = m.solve(x0, ts, dt=0.05)
    assert xs.shape == (7, 5, 3) and kl.shape == (5,)
    assert torch.equal(xs[0], x0)
    assert float(kl.abs().max()) == 0.0
    xs, kl, (x, y) = m.solve(x0, ts, return_state=True)
    assert x.shape == (5, 3) and y.shape == (5, 4, 3) and torch.equal(xs[-1], x)
    assert abs(float(m.hurst.detach()) - 0.3) < 1e-6 and m.omega().shape == (4,)


@pytest.mark.parametrize("kind", ["I", "II"])
def test_posterior_with_zero_control_equals_prior(kind):
    m = LatentFractionalSDE(2, K=5, kind=kind, hurst=0.7)
    x0 = torch.randn(6, 2)
    ts = torch.linspace(0, 1, 11)
    torch.manual_seed(7)
    prior_xs, prior_kl = m.solve(x0, ts, dt=0.02)
    torch.manual_seed(7)
    post_xs, post_kl = m.solve(x0, ts, control=lambda t, x, y: torch.zeros_like(x), dt=0.02)
    assert torch.allclose(prior_xs, post_xs, atol=1e-6)
    assert float(post_kl.abs().max()) == 0.0 and float(prior_kl.abs().max()) == 0.0


def test_elbo_is_the_exact_evidence_at_the_optimal_control_and_below_it_otherwise():
    """Brownian prior dx = dW, x(0) = 0, one observation y = x(T) + N(0, r^2): the evidence
    is N(y; 0, T + r^2) in closed form, the optimal control (Doob's h-transform) is
    u*(t, x) = (y - x) / (T - t + r^2), and E log p(y | x_T) - E path_kl equals log p(y) for
    u* and is lower for any other control. Independent of how solve() accumulates the KL."""
    m = pure_noise_model(dim=1, brownian=True).double()
    y, r, T, n = 1.5, 0.5, 1.0, 4000
    log_z = -0.5 * math.log(2 * math.pi * (T + r * r)) - y * y / (2 * (T + r * r))

    def elbo_mc(scale):
        torch.manual_seed(0)
        with torch.no_grad():
            xs, kl = m.solve(torch.zeros(n, 1, dtype=torch.float64), torch.tensor([0.0, T]),
                             control=lambda t, x, _y: scale * (y - x) / (T - t + r * r),
                             dt=0.005)
        log_lik = -0.5 * math.log(2 * math.pi * r * r) - (y - xs[-1, :, 0]) ** 2 / (2 * r * r)
        e = log_lik - kl
        return float(e.mean()), float(e.std()) / math.sqrt(n)

    best, se = elbo_mc(1.0)
    assert abs(best - log_z) < 4 * se + 0.02            # + Euler bias O(dt)
    for scale in (0.0, 0.5, 1.5):                        # the prior and two wrong controls
        worse, se_w = elbo_mc(scale)
        assert worse < log_z - 0.1 and worse < best - 4 * max(se, se_w)


def test_ou_stationary_variance_from_the_integrator():
    """dx = -gamma x dt + dW (Brownian baseline, b(x) = -gamma x): Var x -> 1 / (2 gamma)."""
    gamma, n = 2.0, 8000

    class OU(nn.Module):
        def forward(self, x):
            return -gamma * x

    m = LatentFractionalSDE(1, brownian=True, drift=OU(), diffusion=One()).double()
    torch.manual_seed(1)
    with torch.no_grad():
        xs, _ = m.solve(torch.zeros(n, 1, dtype=torch.float64), torch.tensor([0.0, 3.0]),
                        dt=0.01)
    target = 1.0 / (2 * gamma)                 # e^{-2 gamma 3} of the start is left: 6e-6
    sample = float(xs[-1].var())
    assert abs(sample - target) < 4.5 * target * math.sqrt(2 / n) + 0.015 * target


def test_path_kl_of_a_constant_control():
    m = LatentFractionalSDE(3, K=3, hurst=0.4)
    c = 0.7
    _, kl = m.solve(torch.zeros(4, 3), torch.linspace(0, 2, 5),
                    control=lambda t, x, y: torch.full_like(x, c), dt=0.1)
    assert torch.allclose(kl, torch.full((4,), 0.5 * c * c * 3 * 2.0), rtol=1e-5)


def test_control_shifts_the_mean_as_the_augmented_ode_says():
    """E x(T) under u = c (b = 0, s = 1, type II) is c sum_k omega_k (1 - e^{-g_k T}) / g_k,
    the solution of the mean ODE of the augmented system (Euler bias O(dt))."""
    m = pure_noise_model(dim=1, K=4, gamma_max=8.0, hurst=0.3, T=1.0)
    c, n = 1.5, 4000
    torch.manual_seed(0)
    with torch.no_grad():
        xs, _ = m.solve(torch.zeros(n, 1), torch.tensor([0.0, 1.0]),
                        control=lambda t, x, y: torch.full_like(x, c), dt=0.002)
    g, w = m.gamma.double(), m.omega().detach().double()
    expected = float(c * (w * (1 - torch.exp(-g)) / g).sum())
    sd = math.sqrt(float(w @ mafbm.state_covariance(g, 1.0, "II") @ w) / n)
    assert abs(float(xs[-1].mean()) - expected) < 4 * sd + 0.02 * abs(expected)


@pytest.mark.parametrize("kind", ["II", "I"])
def test_euler_solution_variance_matches_ma_fbm_theory(kind):
    m = pure_noise_model(dim=2, K=3, kind=kind, gamma_max=4.0, hurst=0.3, T=0.5)
    n = 3000
    torch.manual_seed(1)
    with torch.no_grad():
        xs, _ = m.solve(torch.zeros(n, 2), torch.tensor([0.0, 0.25, 0.5]), dt=0.002)
    g, w = m.gamma.double(), m.omega().detach().double()
    for i, t in ((1, 0.25), (2, 0.5)):
        theory = float(w @ mafbm.state_covariance(g, t, kind) @ w)
        sample = float(xs[i].double().var(0).mean())          # two independent coordinates
        mc_sd = theory * math.sqrt(2.0 / (2 * n - 2))
        assert abs(sample - theory) < 4.5 * mc_sd + 0.02 * theory   # + Euler bias O(g dt)


def test_type_i_initial_state_is_stationary():
    m = LatentFractionalSDE(1, K=3, kind="I", gamma_max=4.0)
    torch.manual_seed(2)
    y = m.initial_y(20000).double()[:, :, 0]                   # (B, K)
    cov = torch.cov(y.T)
    target = mafbm.stationary_covariance(m.gamma.double())
    assert float((cov - target).abs().max() / target.abs().max()) < 0.05
    assert float(LatentFractionalSDE(1, K=3, kind="II").initial_y(4).abs().max()) == 0.0


def test_brownian_baseline():
    m = pure_noise_model(dim=1, brownian=True)
    assert m.K == 1 and float(m.gamma[0]) == 0.0 and torch.equal(m.omega(), torch.ones(1))
    assert float(m.hurst) == pytest.approx(0.5) and not any(
        p is m.raw_hurst for p in m.parameters())
    torch.manual_seed(3)
    n = 8000
    xs, kl = m.solve(torch.zeros(n, 1), torch.tensor([0.0, 2.0]), dt=0.05)
    assert abs(float(xs[-1].var()) - 2.0) < 4.5 * 2.0 * math.sqrt(2 / n)
    # a control u adds s u dt to dx exactly: mean shift c T
    xs, _ = m.solve(torch.zeros(n, 1), torch.tensor([0.0, 2.0]), dt=0.05,
                    control=lambda t, x, y: torch.full_like(x, 0.5))
    assert abs(float(xs[-1].mean()) - 1.0) < 4.5 * math.sqrt(2.0 / n)


def test_hurst_is_learnable_through_the_solver():
    m = LatentFractionalSDE(2, K=5, hurst=0.4)
    xs, kl = m.solve(torch.zeros(16, 2), torch.linspace(0, 1, 6), dt=0.05,
                     control=lambda t, x, y: -y.sum(1))
    loss = (xs[-1] ** 2).mean() + kl.mean()
    loss.backward()
    assert m.raw_hurst.grad is not None and math.isfinite(float(m.raw_hurst.grad))
    assert float(m.raw_hurst.grad.abs()) > 0
    frozen = LatentFractionalSDE(2, K=5, hurst=0.4, learn_hurst=False)
    assert all(p is not frozen.raw_hurst for p in frozen.parameters())


def test_gaussian_kl_closed_form():
    mu, lv = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.3, -0.5]])
    kl = gaussian_kl(mu, lv, 0.5, 0.2)
    p = torch.distributions.Normal(torch.tensor(0.5), math.exp(0.1))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * lv))
    assert torch.allclose(kl, torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        LatentFractionalSDE(1, hurst=1.2)
    with pytest.raises(ValueError):
        LatentFractionalSDE(1, K=1)
    with pytest.raises(ValueError):
        LatentFractionalSDE(1, kind="III")
    assert np.isfinite(LatentFractionalSDE(1, K=2).omega().detach().numpy()).all()
