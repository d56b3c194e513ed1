"""A literal torch transcription of the PV-RNN equations, step by step, with autograd.

Used to check the numpy model's hand-written gradients (tests) and as the torch
baseline in benchmarks/pvrnn.py. Same conventions as engine/pvrnn/model.py.
"""
from __future__ import annotations

import numpy as np

from engine._torch import torch


def loss_torch(model, Amu, Asig, X, mask, norm, h0=None, first=True, eps=None,
               weights_grad=True):
    """Loss of ``model`` (a PVRNN whose params are numpy) as a torch scalar.

    Amu, Asig: lists of (T, B, z_l) torch tensors (requires_grad as wanted); X (T, B, D),
    mask (T, B) numpy or torch. Returns (loss, params as torch tensors, with gradients
    unless ``weights_grad`` is False, as in error regression).
    """
    P = {k: torch.tensor(v, dtype=torch.float64, requires_grad=weights_grad)
         for k, v in model.params.items()}
    X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    mask = torch.as_tensor(np.asarray(mask), dtype=torch.float64)
    L, T, B = model.L, Amu[0].shape[0], Amu[0].shape[1]
    D = X.shape[-1]
    h = [torch.zeros(B, lay.d, dtype=torch.float64) if h0 is None else
         torch.as_tensor(h0[l], dtype=torch.float64) for l, lay in enumerate(model.layers)]
    total = torch.zeros((), dtype=torch.float64)
    for t in range(T):
        d_new = [None] * L
        for l in range(L - 1, -1, -1):
            lay = model.layers[l]
            dprev = torch.tanh(h[l])
            if first and t == 0:
                mu_p = torch.zeros(B, lay.z, dtype=torch.float64)
                ls_p = torch.zeros(B, lay.z, dtype=torch.float64)
                w = model.beta
            else:
                mu_p = torch.tanh(dprev @ P[f"Wmu{l}"] + P[f"bmu{l}"])
                ls_p = dprev @ P[f"Wsig{l}"] + P[f"bsig{l}"]
                w = lay.w
            mu_q = torch.tanh(Amu[l][t])
            ls_q = Asig[l][t]
            z = mu_q if eps is None else mu_q + torch.exp(ls_q) * torch.as_tensor(eps[l][t])
            kl = (ls_p - ls_q + (torch.exp(2 * ls_q) + (mu_q - mu_p) ** 2)
                  / (2 * torch.exp(2 * ls_p)) - 0.5).sum(-1)
            total = total + (mask[t] * w * kl).sum() / (lay.z * norm)
            pre = dprev @ P[f"Wdd{l}"] + z @ P[f"Wzd{l}"] + P[f"b{l}"]
            if l < L - 1:
                pre = pre + d_new[l + 1] @ P[f"Wtop{l}"]
            h[l] = (1 - 1 / lay.tau) * h[l] + pre / lay.tau
            d_new[l] = torch.tanh(h[l])
        x_hat = torch.tanh(d_new[0] @ P["Wo"] + P["bo"])
        total = total + (mask[t] * 0.5 * ((x_hat - X[t]) ** 2).sum(-1) / D).sum() / norm
    return total, P


def kl_gauss_torch(mu_q, sig_q, mu_p, sig_p):
    """KL(N(mu_q, sig_q^2) || N(mu_p, sig_p^2)) with torch.distributions (elementwise)."""
    q = torch.distributions.Normal(torch.as_tensor(mu_q), torch.as_tensor(sig_q))
    p = torch.distributions.Normal(torch.as_tensor(mu_p), torch.as_tensor(sig_p))
    return torch.distributions.kl_divergence(q, p)
