"""Latent fractional-SDE video model (Daems et al., ICLR 2024, video experiment).

Conv encoder -> per-frame features f_i; from the context frames: q(x0) (first three frames),
a static content vector c (mean over the context, variational) and a context h_i (backward GRU)
that drives the control u(t, x) = net([x, h_i]) while t is inside the context window; then
u = 0 (prior). The latent path x(t) comes from :class:`engine.fsde.sde.LatentFractionalSDE`
(MA-fBM driven, learned Hurst index; ``brownian=True`` gives the Brownian baseline with the same
architecture). A conv decoder maps [x(t), c] to Bernoulli pixel probabilities.

ELBO (per video, nats) = sum over frames and pixels of log p(frame | x, c)
    - KL(q(x0) || N(0, I)) - KL(q(c) || N(0, I)) - E 0.5 int_context |u|^2 dt.
Training uses the forecast split: u acts only on the first ``context`` frames, so the future
frames are explained by the prior, which is also what ``forecast`` samples from.

Shapes: frames (B, L, C, H, W) in [0, 1]; latent (L, B, dim).
"""
from __future__ import annotations

import math

from engine._torch import torch

nn = torch.nn
F = torch.nn.functional

DEFAULT_CONFIG = {
    "size": 32,  # frame side in pixels (divisible by 8)
    "channels": 1,  # 1 grayscale, 3 colour
    "latent_dim": 8,
    "content_dim": 16,
    "feat_dim": 64,
    "hidden": 64,
    "K": 5,
    "kind": "II",
    "hurst": 0.5,  # initial Hurst index
    "learn_hurst": True,
    "gamma_max": 20.0,
    "brownian": False,
    "T": 1.0,  # SDE time spanned by a training clip of context + horizon frames
    "context": 10,  # N: frames the posterior sees
    "horizon": 10,  # M: frames predicted by the prior
    "substeps": 2,  # solver steps per frame interval
}


def make_config(**overrides) -> dict:
    """DEFAULT_CONFIG with ``overrides`` (unknown keys raise ValueError)."""
    bad = set(overrides) - set(DEFAULT_CONFIG)
    if bad:
        raise ValueError(f"unknown model settings: {', '.join(sorted(bad))}")
    return {**DEFAULT_CONFIG, **overrides}


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.Softplus(), nn.Linear(n_hidden, n_out))


class Drift(nn.Module):
    """Prior drift b(x): (B, dim) -> (B, dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = _mlp(dim, hidden, dim)

    def forward(self, *args):  # accepts (x) or (t, x)
        return self.net(args[-1])


class Diffusion(nn.Module):
    """Diagonal diffusion s(x) > 0: (B, dim) -> (B, dim), starting near 0.3."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = _mlp(dim, hidden, dim)
        with torch.no_grad():
            self.net[-1].bias.fill_(math.log(math.expm1(0.3)))

    def forward(self, *args):
        return F.softplus(self.net(args[-1])) + 1e-3


class VideoSDE(nn.Module):
    """The video model. ``config`` as in :data:`DEFAULT_CONFIG`."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        from engine.fsde.sde import LatentFractionalSDE

        cfg = make_config(**(config or {}))
        self.config = cfg
        C, S, D = cfg["channels"], cfg["size"], cfg["latent_dim"]
        if S % 8:
            raise ValueError(f"frame size must be divisible by 8, not {S}")
        s8, fd, hd, cd = S // 8, cfg["feat_dim"], cfg["hidden"], cfg["content_dim"]
        self.encoder = nn.Sequential(
            nn.Conv2d(C, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * s8 * s8, fd))
        self.q0 = _mlp(3 * fd, hd, 2 * D)
        self.content = _mlp(fd, hd, 2 * cd)
        self.context_rnn = nn.GRU(fd, hd, batch_first=True)
        self.control_net = nn.Sequential(nn.Linear(D + hd, hd), nn.Softplus(), nn.Linear(hd, D))
        self.sde = LatentFractionalSDE(
            D, K=cfg["K"], kind=cfg["kind"], hurst=cfg["hurst"], learn_hurst=cfg["learn_hurst"],
            gamma_max=cfg["gamma_max"], T=cfg["T"], brownian=cfg["brownian"],
            drift=Drift(D, hd), diffusion=Diffusion(D, hd))
        self.dec_in = nn.Linear(D + cd, 64 * s8 * s8)
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Unflatten(1, (64, s8, s8)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(16, C, 4, 2, 1))

    # --- pieces -------------------------------------------------------------------------
    @property
    def hurst(self) -> float:
        return float(self.sde.hurst.detach())

    def frame_times(self, n_frames: int) -> "torch.Tensor":
        """Times of ``n_frames`` frames, spaced as in training: (n_frames,)."""
        step = self.config["T"] / (self.config["context"] + self.config["horizon"] - 1)
        return torch.arange(n_frames, dtype=torch.float32) * step

    def encode(self, frames: "torch.Tensor") -> dict:
        """Context frames (B, N, C, H, W), N >= 3 -> q(x0), q(c) parameters and h (B, N, hidden)."""
        B, N = frames.shape[:2]
        feats = self.encoder(frames.flatten(0, 1)).view(B, N, -1)
        m0, lv0 = self.q0(feats[:, :3].flatten(1)).chunk(2, dim=-1)
        mc, lvc = self.content(feats.mean(1)).chunk(2, dim=-1)
        h, _ = self.context_rnn(feats.flip(1))  # backward in time: h_i summarises frames >= i
        return {"m0": m0, "lv0": lv0.clamp(-8, 4), "mc": mc, "lvc": lvc.clamp(-8, 4),
                "h": h.flip(1)}

    def decode(self, x: "torch.Tensor", c: "torch.Tensor") -> "torch.Tensor":
        """Latents (L, B, dim) and content (B, cd) -> pixel logits (B, L, C, H, W)."""
        L, B = x.shape[:2]
        z = torch.cat([x, c.unsqueeze(0).expand(L, -1, -1)], -1).flatten(0, 1)
        logits = self.decoder(self.dec_in(z))
        return logits.view(L, B, *logits.shape[1:]).transpose(0, 1)

    def _control(self, h: "torch.Tensor", times: "torch.Tensor"):
        """u(t, x, y) = net([x, h_{i+1}]) for t in [t_i, t_{i+1}), i + 1 < N; else 0."""
        n_ctx, step = h.shape[1], float(times[1] - times[0])
        t_end = float(times[n_ctx - 1]) - 1e-6 * step

        def control(t, x, y=None):
            t = float(t)
            if t >= t_end:
                return torch.zeros_like(x)
            i = min(int(math.floor(t / step + 1e-6)) + 1, n_ctx - 1)
            return self.control_net(torch.cat([x, h[:, i]], -1))

        return control

    def _latents(self, enc: dict, n_frames: int, samples: int = 1):
        """Sample x0, c and solve: -> xs (L, B*samples, dim), c (B*samples, cd), path KL."""
        rep = (lambda a: a.repeat(samples, *([1] * (a.dim() - 1)))) if samples > 1 else (
            lambda a: a)
        m0, lv0, mc, lvc, h = (rep(enc[k]) for k in ("m0", "lv0", "mc", "lvc", "h"))
        x0 = m0 + torch.randn_like(m0) * (0.5 * lv0).exp()
        c = mc + torch.randn_like(mc) * (0.5 * lvc).exp()
        times = self.frame_times(n_frames).to(x0.device)
        dt = float(times[1] - times[0]) / self.config["substeps"]
        xs, path_kl = self.sde.solve(x0, times, control=self._control(h, times), dt=dt)
        return xs, c, path_kl

    # --- objective and prediction --------------------------------------------------------
    def elbo(self, frames: "torch.Tensor", context: int | None = None, beta: float = 1.0) -> dict:
        """ELBO terms for clips (B, L, C, H, W) in [0, 1] with the posterior on the first
        ``context`` frames (default: config). Returns per-video means (nats, detached):
        ``elbo``, ``loglik``, ``kl_x0``, ``kl_content``, ``kl_path``, ``kl``; and ``loss``, the
        negative beta-weighted ELBO per pixel, for the optimiser."""
        N = context or self.config["context"]
        B, L = frames.shape[:2]
        enc = self.encode(frames[:, :N])
        xs, c, path_kl = self._latents(enc, L)
        logits = self.decode(xs, c)
        loglik = -F.binary_cross_entropy_with_logits(logits, frames, reduction="none").flatten(
            1).sum(1)
        kl_x0 = 0.5 * (enc["m0"] ** 2 + enc["lv0"].exp() - 1 - enc["lv0"]).sum(1)
        kl_c = 0.5 * (enc["mc"] ** 2 + enc["lvc"].exp() - 1 - enc["lvc"]).sum(1)
        kl = kl_x0 + kl_c + path_kl
        elbo = loglik - kl
        loss = -(loglik - beta * kl).mean() / frames[0].numel()
        terms = {"elbo": elbo, "loglik": loglik, "kl_x0": kl_x0, "kl_content": kl_c,
                 "kl_path": path_kl, "kl": kl}
        return {**{k: v.detach().mean() for k, v in terms.items()}, "loss": loss}

    @torch.no_grad()
    def forecast(self, context_frames: "torch.Tensor", horizon: int,
                 samples: int = 8) -> "torch.Tensor":
        """Condition on context frames (B, N, C, H, W), N >= 3, and sample ``horizon`` more
        frames from the prior ``samples`` times: -> (samples, B, N + horizon, C, H, W) pixel
        probabilities in [0, 1] (the first N frames are reconstructions)."""
        B, N = context_frames.shape[:2]
        enc = self.encode(context_frames)
        xs, c, _ = self._latents(enc, N + horizon, samples)
        probs = torch.sigmoid(self.decode(xs, c))
        return probs.view(samples, B, *probs.shape[1:])


def checkpoint_state(model: VideoSDE) -> dict:
    """A plain dict (tensors, numbers, strings) for torch.save / torch.load(weights_only=True)."""
    return {"config": dict(model.config), "state_dict": model.state_dict(), "kind": "fsde-video"}


def load_model(path, map_location: str = "cpu") -> VideoSDE:
    """Load a model file written by the trainer; InputError for anything unreadable."""
    from pathlib import Path

    from engine.jobs import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"The model '{path}' does not exist.")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
        model = VideoSDE(blob["config"])
        model.load_state_dict(blob["state_dict"])
    except InputError:
        raise
    except Exception:
        raise InputError(f"The model '{path}' is not a readable fractional-SDE video model.") \
            from None
    model.eval()
    return model


def predict_clip(model: VideoSDE, frames, context: int, horizon: int, samples: int = 8,
                 seed: int = 0) -> dict:
    """Forecast one clip. ``frames`` (>= context + horizon, H, W[, 3]) float in [0, 1] at the
    model's size. Returns numpy arrays: ``frames`` (N+M, H, W[, 3]) ground truth, ``samples``
    (S, M, H, W[, 3]) predicted frames, ``recon`` (S, N, H, W[, 3]) context reconstructions,
    ``mean`` / ``std`` (N+M, ...) over samples (reconstruction then prediction), ``psnr`` and
    ``ssim`` (M,) of the sample mean against the ground truth."""
    import numpy as np

    from engine.fsde.video_data import from_channels, psnr, ssim, to_channels

    if context < 3:
        raise ValueError("the context needs at least 3 frames")
    truth = np.asarray(frames[: context + horizon], np.float32)
    x = torch.from_numpy(to_channels(truth[:context]))[None]
    torch.manual_seed(seed)
    probs = model.forecast(x, horizon, samples)[:, 0].cpu().numpy()  # (S, N+M, C, H, W)
    probs = from_channels(probs)
    mean = probs.mean(0)
    return {"frames": truth, "samples": probs[:, context:], "recon": probs[:, :context],
            "mean": mean, "std": probs.std(0), "psnr": psnr(mean[context:], truth[context:]),
            "ssim": ssim(mean[context:], truth[context:])}
