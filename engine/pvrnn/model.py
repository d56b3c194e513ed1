"""PV-RNN (Ahmadi & Tani 2019) in numpy: forward, loss, hand-written backward, generation.

Why numpy and not torch autograd: these nets are tiny (tens of units), so the cost is
the per-operation overhead, not arithmetic. The computation is rearranged so that only
the deterministic recurrence runs step by step (about 5 array operations per step and
layer, forward and backward); everything else (posterior, prior, KL, output, weight
gradients) is batched over the whole time axis. The gradients are checked against a
plain torch autograd transcription of the equations (engine/pvrnn/reference.py).

Conventions: arrays are time-major, ``(T, B, .)``; layer index 0 is nearest the output
(the design's layer 1). Per layer l with time constant tau, a = 1 - 1/tau, k = 1/tau:

    h_t = a h_{t-1} + k (d_{t-1} W_dd + z_t W_zd + d^{l+1}_t W_top + b),   d_t = tanh(h_t)
    prior  p(z_t | d_{t-1}):  mu = tanh(d_{t-1} W_mu + b_mu), log sigma = d_{t-1} W_sig + b_sig
                              (N(0, I) at the first step)
    posterior q(z_t):         mu = tanh(A_mu_t), log sigma = A_sig_t,  z_t = mu + sigma * eps
    output x_t = tanh(d^1_t W_o + b_o)
    loss = sum_{t,b} mask [0.5 |x - x_hat|^2 / D + sum_l w_l KL_l / z_l] / norm
           (w_l replaced by beta at the first step)

Note that the prior only enters the KL term, so layer l's recurrence needs only the
posterior z and the layer above: the forward runs layer by layer, top first.
"""
from __future__ import annotations

import contextlib

import numpy as np

ATANH_CLIP = 0.999


def single_thread_blas():
    """Context limiting numpy's BLAS to one thread: for these small matrices the thread
    hand-off costs more than it saves (measured 5x slower training on 2 busy cores).
    Uses threadpoolctl when installed, else numpy's bundled OpenBLAS directly, else
    does nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return _openblas_limit()
    return threadpool_limits(1, user_api="blas")


@contextlib.contextmanager
def _openblas_limit():
    """Fallback without threadpoolctl: numpy wheels bundle scipy-openblas; set its thread
    count through ctypes and restore it afterwards."""
    lib = None
    try:
        import ctypes
        import glob
        import os

        libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs",
                                      "libscipy_openblas*.so*"))
        if libs:
            lib = ctypes.CDLL(libs[0])
            get, put = lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_
            before = get()
            put(1)
    except (OSError, AttributeError):
        lib = None
    try:
        yield
    finally:
        if lib is not None:
            put(before)


def kl_gauss(mu_q, lsig_q, mu_p, lsig_p):
    """Elementwise KL(N(mu_q, exp(lsig_q)^2) || N(mu_p, exp(lsig_p)^2)) (log-sigma inputs)."""
    return (lsig_p - lsig_q + (np.exp(2 * lsig_q) + (mu_q - mu_p) ** 2)
            / (2 * np.exp(2 * lsig_p)) - 0.5)


def param_names(n_layers: int) -> list[str]:
    names = []
    for l in range(n_layers):
        names += [f"Wdd{l}", f"Wzd{l}", f"b{l}", f"Wmu{l}", f"bmu{l}", f"Wsig{l}", f"bsig{l}"]
        if l < n_layers - 1:
            names.append(f"Wtop{l}")
    return names + ["Wo", "bo"]


def init_params(layers, dim: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights, zero biases; ``layers`` are
    LayerConfig-like (d, z, tau, w); ``dim`` = D, the data channels."""
    rng = np.random.default_rng(seed)
    p = {}

    def u(fan_in, shape):
        lim = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-lim, lim, size=shape)

    L = len(layers)
    for l, lay in enumerate(layers):
        d, z = lay.d, lay.z
        p[f"Wdd{l}"] = u(d, (d, d))
        p[f"Wzd{l}"] = u(z, (z, d))
        p[f"b{l}"] = np.zeros(d)
        p[f"Wmu{l}"] = u(d, (d, z))
        p[f"bmu{l}"] = np.zeros(z)
        p[f"Wsig{l}"] = u(d, (d, z)) * 0.1
        p[f"bsig{l}"] = np.zeros(z)
        if l < L - 1:
            p[f"Wtop{l}"] = u(layers[l + 1].d, (layers[l + 1].d, d))
    p["Wo"] = u(layers[0].d, (layers[0].d, dim))
    p["bo"] = np.zeros(dim)
    return p


class PVRNN:
    """Weights + layer settings. ``params`` maps names to float64 arrays (see init_params)."""

    def __init__(self, layers, params: dict[str, np.ndarray], beta: float):
        self.layers = list(layers)
        self.L = len(self.layers)
        self.params = params
        self.beta = float(beta)
        self.dim = params["Wo"].shape[1]
        self.refresh()

    def refresh(self) -> None:
        """Recompute derived constants after the weights changed."""
        p = self.params
        self.a = [1.0 - 1.0 / lay.tau for lay in self.layers]
        self.k = [1.0 / lay.tau for lay in self.layers]
        self.Wdd_k = [self.k[l] * p[f"Wdd{l}"] for l in range(self.L)]
        self.Wdd_kT = [np.ascontiguousarray(w.T) for w in self.Wdd_k]

    def zeros_state(self, B: int) -> list[np.ndarray]:
        """Initial internal states h (B, d_l) per layer."""
        return [np.zeros((B, lay.d)) for lay in self.layers]

    # ------------------------------------------------------------------ forward
    def forward(self, Amu, Asig, h0=None, first=True, eps=None, w=None) -> dict:
        """Posterior-driven pass over a window.

        Amu, Asig: lists per layer of (T, B, z_l) adaptive vectors; h0: list of (B, d_l)
        states before the first step (zeros if None); ``first``: the window starts at the
        sequence's first step (prior N(0, I) and weight beta there); eps: list of
        (T, B, z_l) noise or None (posterior mean); w: meta-prior per layer (defaults to
        the configured w). Returns a cache with x_hat (T, B, D) and per-layer arrays.
        """
        p, L = self.params, self.L
        T, B = Amu[0].shape[:2]
        h0 = h0 if h0 is not None else self.zeros_state(B)
        c = {"T": T, "B": B, "first": first, "h0": h0, "eps": eps,
             "w": list(w) if w is not None else [lay.w for lay in self.layers]}
        mu_q = [np.tanh(a) for a in Amu]
        sig_q = [np.exp(a) for a in Asig]
        z = [mu_q[l] + sig_q[l] * eps[l] if eps is not None else mu_q[l] for l in range(L)]
        d_all = [None] * L
        for l in range(L - 1, -1, -1):
            inp = z[l] @ (self.k[l] * p[f"Wzd{l}"]) + self.k[l] * p[f"b{l}"]
            if l < L - 1:
                inp += d_all[l + 1] @ (self.k[l] * p[f"Wtop{l}"])
            d = np.empty((T, B, self.layers[l].d))
            hp, a, W = h0[l], self.a[l], self.Wdd_k[l]
            dp = np.tanh(hp)
            for t in range(T):
                hp = a * hp + dp @ W + inp[t]
                dp = np.tanh(hp, out=d[t])
            d_all[l] = d
            c[f"h_last{l}"] = hp
        d_prev = [np.concatenate([np.tanh(h0[l])[None], d_all[l][:-1]], axis=0) for l in range(L)]
        mu_p, lsig_p = [], []
        for l in range(L):
            mp = np.tanh(d_prev[l] @ p[f"Wmu{l}"] + p[f"bmu{l}"])
            lp = d_prev[l] @ p[f"Wsig{l}"] + p[f"bsig{l}"]
            if first:
                mp[0] = 0.0
                lp[0] = 0.0
            mu_p.append(mp)
            lsig_p.append(lp)
        c.update(mu_q=mu_q, sig_q=sig_q, lsig_q=list(Asig), z=z, d=d_all, d_prev=d_prev,
                 mu_p=mu_p, lsig_p=lsig_p)
        c["x_hat"] = np.tanh(d_all[0] @ p["Wo"] + p["bo"])
        return c

    def kl(self, c) -> list[np.ndarray]:
        """KL(q || p) per layer, summed over z units: list of (T, B)."""
        return [kl_gauss(c["mu_q"][l], c["lsig_q"][l], c["mu_p"][l], c["lsig_p"][l]).sum(-1)
                for l in range(self.L)]

    def kl_weights(self, c) -> list[np.ndarray]:
        """Per-layer (T,) KL weights: w_l, beta at the sequence's first step."""
        ws = []
        for l in range(self.L):
            wt = np.full(c["T"], float(c["w"][l]))
            if c["first"]:
                wt[0] = self.beta
            ws.append(wt)
        return ws

    def loss(self, c, X, mask, norm) -> tuple[float, float, list[float]]:
        """X: (T, B, D) scaled targets, mask: (T, B) 0/1. Returns (loss, rec, KL per layer),
        each summed over valid steps and divided by ``norm``; KL per layer is per z unit
        and unweighted."""
        D = X.shape[-1]
        rec = float((mask * 0.5 * ((c["x_hat"] - X) ** 2).sum(-1) / D).sum() / norm)
        kl, ws = self.kl(c), self.kl_weights(c)
        kls = [float((mask * k).sum() / (norm * self.layers[l].z)) for l, k in enumerate(kl)]
        total = rec + sum(float((mask * ws[l][:, None] * k).sum() / (norm * self.layers[l].z))
                          for l, k in enumerate(kl))
        return total, rec, kls

    # ------------------------------------------------------------------ backward
    def backward(self, c, X, mask, norm, want_params=True):
        """Gradients of ``loss`` w.r.t. the adaptive vectors (lists of (T, B, z_l)) and,
        if ``want_params``, the weights (dict like params)."""
        p, L, T, B = self.params, self.L, c["T"], c["B"]
        D = X.shape[-1]
        g = {} if want_params else None
        x_hat = c["x_hat"]
        go = (mask[..., None] / (D * norm)) * (x_hat - X) * (1 - x_hat ** 2)  # (T, B, D)
        G = [np.zeros_like(d) for d in c["d"]]  # gradient w.r.t. d_t per layer (T, B, d_l)
        G[0] += go @ p["Wo"].T
        d_all, d_prev = c["d"], c["d_prev"]
        if want_params:
            g["Wo"] = _outer_sum(d_all[0], go)
            g["bo"] = go.sum((0, 1))
        ws = self.kl_weights(c)
        g_muq_kl, g_lsq_kl = [], []
        for l in range(L):
            wk = (mask * ws[l][:, None] / (self.layers[l].z * norm))[..., None]  # (T, B, 1)
            vp = np.exp(2 * c["lsig_p"][l])
            vq = c["sig_q"][l] ** 2
            diff = c["mu_q"][l] - c["mu_p"][l]
            gm = wk * diff / vp
            g_muq_kl.append(gm)
            g_lsq_kl.append(wk * (vq / vp - 1.0))
            g_mup = -gm * (1 - c["mu_p"][l] ** 2)
            g_lsp = wk * (1.0 - (vq + diff ** 2) / vp)
            if c["first"]:
                g_mup[0] = 0.0
                g_lsp[0] = 0.0
            # the prior at step t reads d_{t-1}; row 0 reads the fixed initial state
            G[l][:-1] += g_mup[1:] @ p[f"Wmu{l}"].T + g_lsp[1:] @ p[f"Wsig{l}"].T
            if want_params:
                g[f"Wmu{l}"] = _outer_sum(d_prev[l], g_mup)
                g[f"bmu{l}"] = g_mup.sum((0, 1))
                g[f"Wsig{l}"] = _outer_sum(d_prev[l], g_lsp)
                g[f"bsig{l}"] = g_lsp.sum((0, 1))
        gAmu, gAsig = [None] * L, [None] * L
        for l in range(L):
            if l > 0:  # from the layer below through W_top (same step)
                G[l] += gpre_below @ (self.k[l - 1] * p[f"Wtop{l - 1}"]).T
            dd = 1.0 - d_all[l] ** 2
            gh_all = np.empty_like(d_all[l])
            gh = np.zeros((B, self.layers[l].d))
            a, WT = self.a[l], self.Wdd_kT[l]
            Gl = G[l]
            for t in range(T - 1, -1, -1):
                gh = (Gl[t] + gh @ WT) * dd[t] + a * gh
                gh_all[t] = gh
            # gh_all is the gradient w.r.t. k * pre (inp and d_prev @ Wdd_k)
            k = self.k[l]
            gz = gh_all @ (k * p[f"Wzd{l}"]).T
            gpre_below = gh_all
            if want_params:
                g[f"Wdd{l}"] = k * _outer_sum(d_prev[l], gh_all)
                g[f"Wzd{l}"] = k * _outer_sum(c["z"][l], gh_all)
                g[f"b{l}"] = k * gh_all.sum((0, 1))
                if l < L - 1:
                    g[f"Wtop{l}"] = k * _outer_sum(d_all[l + 1], gh_all)
            g_muq = gz + g_muq_kl[l]
            g_lsq = g_lsq_kl[l]
            if c["eps"] is not None:
                g_lsq = g_lsq + gz * c["eps"][l] * c["sig_q"][l]
            gAmu[l] = g_muq * (1 - c["mu_q"][l] ** 2)
            gAsig[l] = g_lsq
        return gAmu, gAsig, g

    # ------------------------------------------------------------------ generation
    def step_prior(self, h: list[np.ndarray], first: bool = False):
        """One prior-driven step (z = prior mean). h: list of (B, d_l) states, updated
        and returned with the output x (B, D) in scaled units."""
        p, L = self.params, self.L
        h = list(h)
        d_new = [None] * L
        for l in range(L - 1, -1, -1):
            dprev = np.tanh(h[l])
            zp = np.zeros((h[l].shape[0], self.layers[l].z)) if first else \
                np.tanh(dprev @ p[f"Wmu{l}"] + p[f"bmu{l}"])
            pre = dprev @ p[f"Wdd{l}"] + zp @ p[f"Wzd{l}"] + p[f"b{l}"]
            if l < L - 1:
                pre = pre + d_new[l + 1] @ p[f"Wtop{l}"]
            h[l] = self.a[l] * h[l] + self.k[l] * pre
            d_new[l] = np.tanh(h[l])
        return h, np.tanh(d_new[0] @ p["Wo"] + p["bo"])

    def generate(self, h: list[np.ndarray], steps: int, first: bool = False) -> np.ndarray:
        """Prior-driven generation from states h: (steps, B, D) scaled outputs."""
        out = []
        for i in range(steps):
            h, x = self.step_prior(h, first=first and i == 0)
            out.append(x)
        return np.stack(out)

    def prior_init(self, h: list[np.ndarray], first: bool):
        """Adaptive vectors (A_mu, A_sig) per layer, (B, z_l), that make the posterior
        equal the prior of the next step given states h."""
        p = self.params
        amu, asig = [], []
        for l in range(self.L):
            B = h[l].shape[0]
            if first:
                amu.append(np.zeros((B, self.layers[l].z)))
                asig.append(np.zeros((B, self.layers[l].z)))
                continue
            dprev = np.tanh(h[l])
            mu = np.tanh(dprev @ p[f"Wmu{l}"] + p[f"bmu{l}"])
            amu.append(np.arctanh(np.clip(mu, -ATANH_CLIP, ATANH_CLIP)))
            asig.append(dprev @ p[f"Wsig{l}"] + p[f"bsig{l}"])
        return amu, asig

    def advance(self, h: list[np.ndarray], amu, asig=None):
        """States after one posterior-mean step with adaptive vectors amu (B, z_l) per layer."""
        p, L = self.params, self.L
        h = list(h)
        d_new = [None] * L
        for l in range(L - 1, -1, -1):
            pre = np.tanh(h[l]) @ p[f"Wdd{l}"] + np.tanh(amu[l]) @ p[f"Wzd{l}"] + p[f"b{l}"]
            if l < L - 1:
                pre = pre + d_new[l + 1] @ p[f"Wtop{l}"]
            h[l] = self.a[l] * h[l] + self.k[l] * pre
            d_new[l] = np.tanh(h[l])
        return h


def _outer_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_{t,b} a[t,b,:]^T b[t,b,:]: (T, B, m), (T, B, n) -> (m, n)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


class Adam:
    """Plain Adam over a list of numpy arrays (updated in place)."""

    def __init__(self, arrays: list[np.ndarray], lr: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = [np.zeros_like(a) for a in arrays]
        self.v = [np.zeros_like(a) for a in arrays]
        self.step_count = 0

    def step(self, arrays: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.step_count += 1
        c1 = 1 - self.b1 ** self.step_count
        c2 = 1 - self.b2 ** self.step_count
        lr = self.lr * np.sqrt(c2) / c1
        for a, g, m, v in zip(arrays, grads, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * (g * g)
            a -= lr * m / (np.sqrt(v) + self.eps)
