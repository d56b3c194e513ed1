"""Latent fractional-SDE video model that separates what from where (Daems et al., ICLR 2024).

*What*: each object slot (at most 2) has a glimpse, a patch of ``glimpse`` x the shorter frame
side cut from the context frame where the object stands most apart, then fitted with the
positions to all context frames (engine.fsde.video_render.decompose), which removes the other
digit's ink from it.
*Where*: the latent SDE state carries each slot's pose, x = (p_row, p_col, v_row, v_col) per
slot (normalised frame units, velocities per unit time), solved by
:class:`engine.fsde.sde.LatentFractionalSDE` (MA-fBM noise with a learned Hurst index;
``brownian=True`` is the Brownian baseline, same architecture). Prior drift: dp = v,
dv = 0; diffusion: small constant on p, s_v(pose) on v (learned; large, in proportion to the
speed, near a wall ahead or just behind, where a digit bounces and draws a new
velocity). Positions are
unfolded: the renderer reflects them between the walls (:func:`video_render.fold`), so a
constant velocity bounces. Decoder: each glimpse drawn at its folded position
(``grid_sample``), maximum over slots and the background (per-pixel minimum of the context),
plus a small conv residual; Gaussian pixel likelihood with a learned sigma. Frames are decoded
at the clip's own resolution.

Posterior: the encoder detects and tracks the objects (video_render.detect / track), centres
each glimpse on its ink, fits glimpses and positions to the frames (video_render.decompose,
refine), checks the positions against straight-line predictions in time (correct), fits the
glimpses again at the corrected positions and makes the tracks piecewise straight
(smooth_track); the control u steers each
slot's velocity so that the path passes through the tracked positions (u = 0 on the position
coordinates). Training uses the whole clip (context + horizon); forecasting observes the
first N frames, then samples the prior (u = 0) from the last observed position, with the
velocity the track has there (video_render.end_velocity: the last straight run's slope, or
the run before a bounce in the last few frames, mirrored, where the steps since agree) and
the MA-fBM memory restarted.

ELBO (per clip, nats) = log p(frames | x) - KL(q(x0) || N(0, I)) - E 0.5 int |u|^2 dt; the
loss adds the pixel NLL and 1 - SSIM of the forecast's sample mean
(:meth:`VideoSDE.forecast_loss`), the only terms that set the noise scales and H.
Shapes: frames (B, L, C, H, W) in [0, 1]; latent (L, B, 4 * slots).
"""
from __future__ import annotations

import math

from engine._torch import torch
from engine.fsde import video_render as vr

nn = torch.nn
F = torch.nn.functional
KIND = "fsde-video-3"  # 3: wall noise in proportion to the speed, glimpses fitted (decompose)
OLD_KINDS = ("fsde-video", "fsde-video-2")

DEFAULT_CONFIG = {
    "size": 64,  # side of the moving-digit frames it is trained on (the model itself runs at
                 # any resolution up to video_data.MAX_SIDE)
    "channels": 1,  # 1 grayscale, 3 colour
    "slots": 2,  # objects tracked (1 or 2)
    "glimpse": 0.4375,  # glimpse side as a fraction of the shorter frame side (28 px of 64)
    "residual": 4,  # channels of the conv residual on the rendered frame (0: none)
    "K": 5,
    "kind": "II",
    "hurst": 0.5,  # initial Hurst index
    "learn_hurst": True,
    "gamma_max": 20.0,
    "brownian": False,
    "T": 1.0,  # SDE time spanned by a clip of context + horizon frames
    "context": 10,  # N: frames the posterior sees when forecasting
    "horizon": 10,  # M: frames predicted by the prior
    "substeps": 2,  # solver steps per frame interval
    "forecast_weight": 1.0,  # weight of the forecast's sample-mean pixel NLL in the loss
    "forecast_ssim": 15.0,  # weight of 1 - SSIM of the forecast's sample mean (both 0: no
                            # forecast term; the ELBO then fits the noise scales and H)
}


FORECAST_SIGMA = 0.1  # pixel sigma of the forecast term (fixed, so the loss is one objective)
LEGACY_KEYS = ("latent_dim", "content_dim", "feat_dim", "hidden")  # model 1; ignored


def make_config(**overrides) -> dict:
    """DEFAULT_CONFIG with ``overrides`` (unknown keys raise ValueError; the settings of the
    old model in LEGACY_KEYS are ignored, so callers written for it keep working)."""
    overrides = {k: v for k, v in overrides.items() if k not in LEGACY_KEYS}
    bad = set(overrides) - set(DEFAULT_CONFIG)
    if bad:
        raise ValueError(f"unknown model settings: {', '.join(sorted(bad))}")
    cfg = {**DEFAULT_CONFIG, **overrides}
    if cfg["slots"] not in (1, 2):
        raise ValueError(f"slots must be 1 or 2, not {cfg['slots']}")
    if not 0.05 <= cfg["glimpse"] <= 1.0:
        raise ValueError(f"glimpse must be between 0.05 and 1, not {cfg['glimpse']}")
    return cfg


class SlotDrift(nn.Module):
    """b(x): dp = v, dv = 0 (constant velocity between walls; the walls are in the renderer's
    fold). (B, 4S) -> (B, 4S)."""

    def __init__(self, slots: int):
        super().__init__()
        self.slots = slots

    def forward(self, *args):
        x = args[-1]
        pose = x.view(x.shape[0], self.slots, 4)
        return torch.cat([pose[..., 2:], torch.zeros_like(pose[..., 2:])], -1).flatten(1)


class SlotDiffusion(nn.Module):
    """s(x) > 0: a learned constant on p; on v (both axes),

        s_v = s_free + s_wall * |v| * exp(-rate * n_wall),

    n_wall = frames from the slot to its nearest wall (either axis, ahead or behind), so the
    noise can concentrate where an object bounces and draws a new velocity, in proportion to its
    speed |v| (a slow digit's new velocity is spread less widely than a fast one's: one noise
    scale fitted to fast digits swamps slow ones). All learned, positive.
    ``walls`` (B, 2, 2) (each clip's walls, normalised) is set per batch; ``step`` is the
    time between frames. (B, 4S) -> (B, 4S)."""

    def __init__(self, slots: int, step: float):
        super().__init__()
        self.slots, self.step = slots, float(step)
        inv = lambda v: math.log(math.expm1(v))  # noqa: E731
        self.raw_p = nn.Parameter(torch.full((2,), inv(0.005)))
        self.raw_free = nn.Parameter(torch.full((2,), inv(0.05)))
        self.raw_wall = nn.Parameter(torch.full((2,), inv(0.7)))
        self.raw_rate = nn.Parameter(torch.tensor(inv(2.0)))
        self.register_buffer("walls", torch.tensor([[0.22, 0.22], [0.78, 0.78]]),
                             persistent=False)
        self.frozen = False  # True: no gradient to the noise scales (see VideoSDE.elbo)

    def frames_to_wall(self, x) -> "torch.Tensor":
        """(B, 4S) -> (B, S, 1): frames, at the slot's speed, to its nearest wall (either axis,
        ahead or behind: an object about to bounce or that has just bounced, whose new
        velocity the frames do not show yet), clipped to [0, 10]."""
        pose = x.view(x.shape[0], self.slots, 4)
        w = self.walls.to(x)
        pf, _ = vr.fold(pose[..., :2], w)
        gap = torch.minimum(w[..., 1:, :] - pf, pf - w[..., :1, :]).clamp_min(0)
        n = (gap / (pose[..., 2:].abs() * self.step + 1e-6)).clamp(0, 10)
        return n.min(-1, keepdim=True).values

    def forward(self, *args):
        x = args[-1]
        B = x.shape[0]
        raw = [p.detach() if self.frozen else p
               for p in (self.raw_p, self.raw_rate, self.raw_free, self.raw_wall)]
        sp = F.softplus(raw[0]).expand(B, self.slots, 2)
        near = torch.exp(-F.softplus(raw[1]) * self.frames_to_wall(x))
        speed = (x.view(B, self.slots, 4)[..., 2:].pow(2).sum(-1, keepdim=True) + 1e-8).sqrt()
        sv = F.softplus(raw[2]) + F.softplus(raw[3]) * speed * near
        return torch.cat([sp, sv], -1).flatten(1)


class VideoSDE(nn.Module):
    """The video model. ``config`` as in :data:`DEFAULT_CONFIG`."""

    def __init__(self, config: dict | None = None):
        super().__init__()
        from engine.fsde.sde import LatentFractionalSDE

        cfg = make_config(**(config or {}))
        self.config = cfg
        S, C = cfg["slots"], cfg["channels"]
        self.sde = LatentFractionalSDE(
            4 * S, K=cfg["K"], kind=cfg["kind"], hurst=cfg["hurst"],
            learn_hurst=cfg["learn_hurst"], gamma_max=cfg["gamma_max"], T=cfg["T"],
            brownian=cfg["brownian"], drift=SlotDrift(S),
            diffusion=SlotDiffusion(S, cfg["T"] / (cfg["context"] + cfg["horizon"] - 1)))
        r = cfg["residual"]
        self.residual = nn.Sequential(nn.Conv2d(C, r, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(r, C, 3, padding=1)) if r else None
        if r:
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))  # pixel noise
        self.q0_logvar = nn.Parameter(torch.tensor([math.log(1e-5)] * 2 + [math.log(1e-2)] * 2))

    # --- pieces -------------------------------------------------------------------------
    @property
    def hurst(self) -> float:
        return float(self.sde.hurst.detach())

    def frame_times(self, n_frames: int) -> "torch.Tensor":
        """Times of ``n_frames`` frames, spaced as in training: (n_frames,)."""
        step = self.config["T"] / (self.config["context"] + self.config["horizon"] - 1)
        return torch.arange(n_frames, dtype=torch.float32) * step

    def encode(self, frames: "torch.Tensor", n_context: int) -> dict:
        """Frames (B, L, C, H, W) -> tracks over all L frames and, from the first
        ``n_context`` frames, the background, the glimpses and which slots are present.

        Returns ``obs`` (B, L, S, 2) tracked positions, ``presence`` (B, S), ``glimpses``
        (B, S, C, g, g), ``bg`` (B, C, H, W), ``walls`` (B, 2, 2) (each clip's walls, from
        the size of its objects and the bounces in its context:
        :func:`~engine.fsde.video_render.ink_walls`, :func:`~engine.fsde.video_render.seen_walls`),
        ``velocity`` (B, S, 2) each slot's velocity (normalised, per frame) at the last
        context frame (:func:`~engine.fsde.video_render.end_velocity`), ``g``."""
        import numpy as np

        B, L, C, H, W = frames.shape
        S = self.config["slots"]
        g = vr.glimpse_px(H, W, self.config["glimpse"])
        bg = frames[:, :n_context].min(1).values
        first_walls = vr.glimpse_walls(H, W, g, frames.device)
        walls0 = first_walls.cpu().numpy()
        ink = (frames - bg[:, None]).clamp_min(0)
        pos, valid = vr.detect(ink.mean(2).flatten(0, 1), g, n=S)
        pos, valid = pos.reshape(B, L, S, 2), valid.reshape(B, L, S)
        obs = np.zeros((B, L, S, 2), np.float32)
        presence = np.zeros((B, S), np.float32)
        pick = np.zeros((B, S), np.int64)
        for b in range(B):
            o, seen, _ = vr.track(pos[b], valid[b], S, walls0)
            if S == 2:
                o, seen = vr.merge_piece(o, seen, n_context, g, H, W)
            obs[b] = o
            for s in range(S):
                ctx = seen[:n_context, s]
                presence[b, s] = float(ctx.any())
                apart = np.full(n_context, 1e3, np.float32)
                if S == 2:
                    other = seen[:n_context, 1 - s]
                    d = np.abs(o[:n_context, s] - o[:n_context, 1 - s]).max(1)
                    apart = np.where(other, d, apart)
                score = np.where(ctx, apart + 1e-3 * np.arange(n_context), -1.0)
                pick[b, s] = int(np.argmax(score)) if ctx.any() else n_context - 1
        obs_t = torch.from_numpy(obs).to(frames)
        pres_t = torch.from_numpy(presence).to(frames)
        idx = torch.from_numpy(pick)
        src = ink[torch.arange(B)[:, None], idx].flatten(0, 1)  # (B * S, C, H, W)

        every = torch.arange(B)

        def cut(o, k=every):
            """Glimpses of clips k at o's positions (len(k), L, S, 2) in the picked frames;
            with two slots, the ink nearer the other slot's centre is left out (it belongs to
            the other digit)."""
            ar = torch.arange(len(k))[:, None]
            centre = o[ar, idx[k], torch.arange(S)[None]]  # (len(k), S, 2)
            img = src.view(B, S, C, H, W)[k].flatten(0, 1)
            if S == 2:
                other = o[ar, idx[k], torch.arange(S - 1, -1, -1)[None]]
                yy = (torch.arange(H).to(o) + 0.5).view(1, 1, H, 1) / H
                xx = (torch.arange(W).to(o) + 0.5).view(1, 1, 1, W) / W
                dist = lambda c: ((yy - c[..., 0, None, None]) * H) ** 2 + (  # noqa: E731
                    (xx - c[..., 1, None, None]) * W) ** 2
                own = (dist(centre) <= dist(other)) | (pres_t[k][:, [1, 0], None, None] == 0)
                img = img * own.flatten(0, 1)[:, None].to(src)
            return vr.crop(img, centre.flatten(0, 1), g).view(len(k), S, C, g, g)

        def smooth(o, walls):  # (n, L, S, 2) -> piecewise straight tracks
            walls = walls.expand(len(o), 2, 2).cpu().numpy()
            return torch.from_numpy(np.array([[vr.smooth_track(t[:, s], H, W, w)
                                               for s in range(S)]
                                              for t, w in zip(o.cpu().numpy(), walls)]
                                             ).transpose(0, 2, 1, 3)).to(frames)

        px = torch.tensor([H, W]).to(frames)

        def fit(glimpses, obs_t, walls, iters, k=every):
            """Glimpses and context positions of clips k fitted jointly to the context frames
            (frees a glimpse of the other digit's ink: it would not move with it), then
            centred."""
            glimpses, ctx = vr.decompose(frames[k, :n_context], bg[k], glimpses, pres_t[k],
                                         obs_t[:, :n_context], walls, iters)
            glimpses, shift = vr.centre_glimpses(glimpses)
            return glimpses, torch.cat([ctx, obs_t[:, n_context:]], 1) + (shift / px)[:, None]

        if S == 2:
            # where both slots are used, put the tracks right with the glimpses as first cut
            # (the detector loses or swaps two digits that overlap for several frames, and a
            # glimpse fitted at such tracks fades); then a slot that keeps its offset from the
            # other one in the context frames is a piece of it
            both = np.flatnonzero(presence.all(1))
            o = obs_t.clone()
            if len(both):
                k = torch.from_numpy(both)
                o[k] = vr.correct(frames[k], bg[k], cut(obs_t[k], k), pres_t[k], obs_t[k],
                                  first_walls)
            o = o.cpu().numpy()
            for b in both:
                o[b], kept = vr.merge_piece(o[b], np.ones((L, S), bool), n_context, g, H, W)
                presence[b, 1] = float(kept[:, 1].any())
            obs_t, pres_t = torch.from_numpy(o).to(frames), torch.from_numpy(presence).to(frames)

        def first_fit(o, k=every):
            # centre each glimpse on its ink's centre of mass and fit; the walls are half a
            # glimpse from the edges until the glimpses tell the objects' size
            shift = vr.centre_of_ink(cut(o, k).flatten(0, 1)).view(len(k), S, 2)
            o = smooth(o + (shift / px)[:, None], first_walls)
            glimpses, o = fit(cut(o, k), o, first_walls, 40, k)
            drawn = vr.draw_clips(glimpses, o[:, :n_context].flatten(0, 1), pres_t[k], bg[k],
                                  first_walls).view(len(k), n_context, C, H, W)
            return glimpses, o, (drawn - frames[k, :n_context]).pow(2).sum((1, 2, 3, 4))

        glimpses, obs_t, err = first_fit(obs_t)
        two = torch.from_numpy(np.flatnonzero(presence.all(1)))
        if S == 2 and len(two):
            # two digits that overlap in most context frames, tracked by their motion
            # instead (kept where that explains the context better once fitted; in the
            # slots' order)
            alt = vr.layer_tracks(frames[two], bg[two])
            near = lambda a: (a - obs_t[two]).abs().sum((1, 2, 3))  # noqa: E731
            alt = torch.where((near(alt) > near(alt.flip(2)))[:, None, None, None],
                              alt.flip(2), alt)
            alt_glimpses, alt, alt_err = first_fit(alt, two)
            better = alt_err < err[two]
            glimpses[two[better]], obs_t[two[better]] = alt_glimpses[better], alt[better]
        rule = vr.ink_walls(glimpses, pres_t, H, W)
        # while the positions are fitted the walls are left 1.5 px looser than the rule (a
        # wall too tight folds the positions near it back in, and they would not tell where
        # it is): fit the positions in all frames, check them against straight-line
        # predictions in time (a digit lost or swapped where it overlaps the other one), fit
        # the glimpses again, then the positions
        loose = rule + torch.tensor([-1.5, 1.5]).to(rule)[:, None] / px
        obs_t = vr.refine(frames, bg, glimpses, pres_t, obs_t, loose)
        obs_t = vr.correct(frames, bg, glimpses, pres_t, obs_t, loose)
        # the glimpses again, now that the positions are right in every context frame (fitted
        # where a digit was lost or swapped, a glimpse fades: drawn in the wrong place there)
        glimpses, obs_t = fit(glimpses, obs_t, loose, 20)
        obs_t = vr.refine(frames, bg, glimpses, pres_t, obs_t, loose)
        # then the walls the context's bounces show
        ctx = obs_t[:, :n_context].cpu().numpy()
        on = np.broadcast_to(presence[:, None] > 0, ctx.shape[:3])
        walls = torch.from_numpy(np.stack([vr.seen_walls(c, o, r, H, W) for c, o, r in zip(
            ctx, on, rule.cpu().numpy())])).to(frames)
        # (a position past a wall that kept the rule, a frame the loose walls let through,
        # is put on the wall: the posterior cannot reach it otherwise; so is one the straight
        # runs carry past it, where a digit bounced just off the wall)
        lo, hi = walls[:, None, :1], walls[:, None, 1:]
        obs_t = obs_t.clamp(lo, hi)
        o, w = obs_t[:, :n_context].cpu().numpy(), walls.cpu().numpy()
        velocity = torch.from_numpy(np.array([[vr.end_velocity(o[b, :, s], H, W, w[b])
                                               for s in range(S)] for b in range(B)],
                                             np.float32)).to(frames)
        return {"obs": smooth(obs_t, walls).clamp(lo, hi), "velocity": velocity,
                "presence": pres_t, "glimpses": glimpses, "bg": bg, "walls": walls, "g": g}

    def _latents(self, enc: dict, n_frames: int, n_obs: int, samples: int = 1):
        """Posterior through the first ``n_obs`` tracked frames, prior after: -> xs
        (n_frames, B * samples, 4S), path KL (B * samples,), KL(q(x0)) (B * samples,)."""
        from engine.fsde.sde import gaussian_kl

        S = self.config["slots"]
        obs = enc["obs"]
        if samples > 1:
            obs = obs.repeat(samples, 1, 1, 1)
        Bs = obs.shape[0]
        times = self.frame_times(n_frames).to(obs.device)
        step = float(times[1] - times[0])
        h = step / self.config["substeps"]
        v0 = (obs[:, 1] - obs[:, 0]) / step if n_obs > 1 else torch.zeros_like(obs[:, 0])
        m0 = torch.cat([obs[:, 0], v0], -1).flatten(1)  # (Bs, 4S)
        lv0 = self.q0_logvar.repeat(S).expand_as(m0)
        x0 = m0 + torch.randn_like(m0) * (0.5 * lv0).exp()
        walls = enc["walls"].repeat(samples, 1, 1)  # as obs: sample-major
        self.sde.diffusion.walls = walls  # the prior's wall noise needs each clip's walls
        sde = self.sde
        w = sde.omega().to(obs)
        wsum = w.sum()
        wg = (w * sde.gamma.to(obs))[:, None]  # (K, 1)

        def control(t, x, y):
            j = int(math.floor((t + h) / step + 1e-6)) + 1  # next frame strictly after t + h
            if j >= n_obs:
                return torch.zeros_like(x)
            tau = j * step - (t + h)
            pose = x.view(Bs, S, 4)
            p, v = pose[..., :2], pose[..., 2:]
            # the unfolded target: the tracked position taken on the side of the wall where the
            # current velocity would put the object at frame j (a step that crosses a wall
            # bounces; linearised at the next sub-step instead, a bounce in the last context
            # interval was tracked as a slow step back from the wall: the forecast then set
            # off with the wrong velocity)
            q = p + v * (h + tau)
            qf, sign = vr.fold(q, walls)
            v_des = (q + sign * (obs[:, j] - qf) - (p + v * h)) / tau
            b = sde.drift(x).view(Bs, S, 4)[..., 2:]
            s = sde.diffusion(x).view(Bs, S, 4)[..., 2:]
            mix = (wg * y).sum(1).view(Bs, S, 4)[..., 2:]
            u_v = ((v_des - v) / h - b) / (s * wsum) + mix / wsum
            return torch.cat([torch.zeros_like(u_v), u_v], -1).flatten(1)

        if n_obs >= n_frames:
            xs, path_kl = sde.solve(x0, times, control=control, dt=h)
            return xs, path_kl, gaussian_kl(m0, lv0)
        # forecast: the prior starts from the posterior's last position with the encoder's
        # velocity at the last context frame (the posterior state's own velocity carries the
        # control's last correction and the posterior noise of that step: up to 0.3 px per
        # frame off) and the noise memory y restarted (a fresh type-II MA-fBM from that
        # frame; carrying the posterior's y over pushed forecasts several pixels per frame
        # off, see docs/fsde_video.md)
        seen, path_kl, (x, _) = sde.solve(x0, times[:n_obs], control=control, dt=h,
                                          return_state=True)
        if n_obs > 1:
            # the encoder's velocity at the last context frame (vr.end_velocity: the last
            # straight run's slope, or the run before a bounce mirrored), unfolded like the
            # posterior's position
            p = seen[-1].view(Bs, S, 4)[..., :2]
            v = enc["velocity"].repeat(samples, 1, 1) * vr.fold(p, walls)[1] / step
            x = torch.cat([p, v], -1).flatten(1)
        ahead, _ = sde.solve(x, times[n_obs - 1:], dt=h)
        return torch.cat([seen, ahead[1:]]), path_kl, gaussian_kl(m0, lv0)

    def decode(self, xs: "torch.Tensor", enc: dict, samples: int = 1) -> "torch.Tensor":
        """Latents (L, B * samples, 4S) -> frames (B * samples, L, C, H, W) in [0, 1]."""
        L, Bs = xs.shape[:2]
        S = self.config["slots"]
        rep = (lambda a: a.repeat(samples, *([1] * (a.dim() - 1)))) if samples > 1 else (
            lambda a: a)
        bg = rep(enc["bg"])
        pos = xs.view(L, Bs, S, 4)[..., :2].transpose(0, 1).flatten(0, 1)  # (Bs * L, S, 2)
        canvas = vr.draw_clips(rep(enc["glimpses"]), pos, rep(enc["presence"]), bg,
                               rep(enc["walls"]))
        if self.residual is not None:
            canvas = (canvas + self.residual(canvas)).clamp(0.0, 1.0)
        return canvas.view(Bs, L, *bg.shape[1:])

    # --- objective and prediction --------------------------------------------------------
    def elbo(self, frames: "torch.Tensor", context: int | None = None, beta: float = 1.0) -> dict:
        """ELBO terms for clips (B, L, C, H, W) in [0, 1]; glimpses and background from the
        first ``context`` frames (default: config), the posterior path through all L frames.
        Returns per-clip means (nats, detached): ``elbo``, ``loglik``, ``kl_x0``,
        ``kl_path``, ``kl``; and ``loss``, the negative beta-weighted ELBO per pixel."""
        N = context or self.config["context"]
        B, L = frames.shape[:2]
        enc = self.encode(frames, min(N, L))
        # the posterior control tracks the frames whatever the prior noise is, so the path KL
        # says nothing about how well the noise fits (a larger s is always "better"): the
        # noise scales and H get no gradient from the ELBO and are fitted by the forecast term
        frozen = self.config["forecast_weight"] > 0 or self.config["forecast_ssim"] > 0
        self.sde.diffusion.frozen = self.sde.freeze_hurst = frozen
        try:
            xs, path_kl, kl_x0 = self._latents(enc, L, n_obs=L)
        finally:
            self.sde.diffusion.frozen = self.sde.freeze_hurst = False
        mean = self.decode(xs, enc)
        sigma = self.log_sigma.exp()
        z = ((frames - mean) / sigma).flatten(1)
        loglik = -0.5 * (z ** 2).sum(1) - z.shape[1] * (self.log_sigma + 0.5 * math.log(
            2 * math.pi))
        kl = kl_x0 + path_kl
        loss = -(loglik - beta * kl).mean() / frames[0].numel()
        terms = {"elbo": loglik - kl, "loglik": loglik, "kl_x0": kl_x0, "kl_path": path_kl,
                 "kl": kl}
        if frozen and L > N:
            forecast = self.forecast_loss(frames, enc, N)
            loss = loss + forecast
            terms["forecast"] = forecast.detach()
        return {**{k: v.detach().mean() for k, v in terms.items()}, "loss": loss}

    def forecast_loss(self, frames: "torch.Tensor", enc: dict, n_context: int,
                      samples: int = 4) -> "torch.Tensor":
        """``forecast_weight`` x Gaussian pixel NLL (per pixel, sigma FORECAST_SIGMA) plus
        ``forecast_ssim`` x (1 - SSIM) of the mean of ``samples`` forecasts from the first
        ``n_context`` frames against the frames after them: what the workbench shows and the
        benchmark scores; the only term that fits the noise scales and H (see :meth:`elbo`)."""
        B, L = frames.shape[:2]
        xs, _, _ = self._latents(enc, L, n_obs=n_context, samples=samples)
        pred = self.decode(xs[n_context:], enc, samples)  # (samples * B, M, C, H, W)
        mean = pred.view(samples, B, *pred.shape[1:]).mean(0)
        truth = frames[:, n_context:]
        loss = self.config["forecast_weight"] * 0.5 * (
            (mean - truth) / FORECAST_SIGMA).pow(2).mean()
        w = self.config["forecast_ssim"]
        if w:
            loss = loss + w * (1 - ssim_torch(mean.flatten(0, 2), truth.flatten(0, 2)).mean())
        return loss

    @torch.no_grad()
    def forecast(self, context_frames: "torch.Tensor", horizon: int,
                 samples: int = 8) -> "torch.Tensor":
        """Condition on context frames (B, N, C, H, W), N >= 3, and sample ``horizon`` more
        frames from the prior ``samples`` times: -> (samples, B, N + horizon, C, H, W) in
        [0, 1] (the first N frames are reconstructions)."""
        B, N = context_frames.shape[:2]
        enc = self.encode(context_frames, N)
        xs, _, _ = self._latents(enc, N + horizon, n_obs=N, samples=samples)
        out = self.decode(xs, enc, samples)
        return out.view(samples, B, *out.shape[1:])


def ssim_torch(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Differentiable mean SSIM of images (N, H, W) in [0, 1] as in video_data.ssim (11 x 11
    Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03): -> (N,)."""
    k = vr._gauss_kernel(1.5).to(a)
    r = len(k) // 2

    def blur(z):
        z = F.pad(z[:, None], (r, r, r, r), mode="reflect")
        z = F.conv2d(z, k.view(1, 1, 1, -1))
        return F.conv2d(z, k.view(1, 1, -1, 1))[:, 0]

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return s.mean((1, 2))


def checkpoint_state(model: VideoSDE) -> dict:
    """A plain dict (tensors, numbers, strings) for torch.save / torch.load(weights_only=True)."""
    return {"config": dict(model.config), "state_dict": model.state_dict(), "kind": KIND}


def load_model(path, map_location: str = "cpu") -> VideoSDE:
    """Load a model file written by the trainer; InputError (one sentence) for anything
    unreadable, and for models of the old format."""
    from pathlib import Path

    from engine.jobs import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"The model '{path}' does not exist.")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:
        raise InputError(f"The model '{path}' is not a readable fractional-SDE video model.") \
            from None
    kind = blob.get("kind") if isinstance(blob, dict) else None
    if kind in OLD_KINDS:
        raise InputError(f"The model '{path}' was made by an older version of the video model "
                         "and cannot be used: retrain it with fsde train.")
    try:
        if kind != KIND:
            raise ValueError(kind)
        model = VideoSDE(blob["config"])
        model.load_state_dict(blob["state_dict"])
    except Exception:
        raise InputError(f"The model '{path}' is not a readable fractional-SDE video model.") \
            from None
    model.eval()
    return model


def predict_clip(model: VideoSDE, frames, context: int, horizon: int, samples: int = 8,
                 seed: int = 0) -> dict:
    """Forecast one clip at its own resolution (see docs/dev/fsde_video_api.md).

    ``frames`` (>= context + horizon, H, W[, 3]) float in [0, 1] or uint8. Returns numpy
    arrays: ``frames`` (N+M, H', W'[, 3]) ground truth, ``samples`` (S, M, ...) predicted
    frames, ``recon`` (S, N, ...) context reconstructions, ``mean`` / ``std`` (N+M, ...) over
    samples, ``psnr`` and ``ssim`` (M,) of the sample mean; ``resized`` (bool),
    ``resize_reason`` (str), ``source_size`` (H, W), ``context`` (N). (H', W') = (H, W) unless
    the longer side exceeds video_data.MAX_SIDE."""
    import numpy as np

    from engine.fsde.video_data import MAX_SIDE, fit_native, from_channels, psnr, ssim, to_channels

    if context < 3:
        raise ValueError("the context needs at least 3 frames")
    raw = np.asarray(frames)[: context + horizon]
    source = tuple(int(v) for v in raw.shape[1:3])
    truth, resized, reason = fit_native(raw, MAX_SIDE, color=model.config["channels"] == 3)
    x = torch.from_numpy(to_channels(truth[:context]))[None]
    torch.manual_seed(seed)
    probs = model.forecast(x, horizon, samples)[:, 0].cpu().numpy()  # (S, N+M, C, H, W)
    probs = from_channels(probs)
    mean = probs.mean(0)
    return {"frames": truth, "samples": probs[:, context:], "recon": probs[:, :context],
            "mean": mean, "std": probs.std(0), "psnr": psnr(mean[context:], truth[context:]),
            "ssim": ssim(mean[context:], truth[context:]), "resized": bool(resized),
            "resize_reason": reason, "source_size": source, "context": int(context)}
