"""What and where for the video model: object detection, tracking, glimpses and rendering.

Coordinates: a position is the centre of an object in *normalised* frame coordinates
(row / H, column / W), continuous (pixel i covers [i, i + 1)), so (0.5, 0.5) is the frame's
centre. Objects live between walls: ``walls`` (..., 2, 2) holds the lowest and the highest
position (row, col) each axis allows, per clip (B, 2, 2) or for every clip (2, 2); latent
positions are unfolded (any real number) and :func:`fold` reflects them between the walls,
which is how a digit bounces off a wall.

* :func:`detect` (no gradient): the two strongest blobs of ink (Gaussian-blurred frame minus
  background, sub-pixel peak by a quadratic fit; the second after removing the first's glimpse).
* :func:`track`: consistent slot identities over a clip (constant-velocity prediction and
  nearest assignment); a second slot is "born" when a second object is seen;
  :func:`merge_piece` merges a second slot that moves rigidly with the first into it.
* :func:`ink_walls`: each clip's walls, from the size of its objects' ink;
  :func:`seen_walls` moves them to agree with the bounces seen in the context.
* :func:`correct`: tracking by synthesis in time (constant-velocity predictions checked
  against the frames with the glimpses); :func:`layer_tracks`: two objects tracked by their
  motion alone (phase correlation), for two that overlap in every frame.
* :func:`crop` / :func:`render`: glimpses (B, S, C, g, g) cut at positions and drawn back at
  other positions with ``grid_sample`` on an axis-aligned grid (:func:`scale_shift_grid`;
  differentiable in the positions),
  composited with a pixelwise maximum over slots and the background.
"""
from __future__ import annotations

import math

import numpy as np

from engine._torch import torch

F = torch.nn.functional
SECOND_PEAK = 0.25  # a second object needs at least this fraction of the first one's ink peak


def glimpse_px(height: int, width: int, frac: float) -> int:
    """Glimpse side in pixels: ``frac`` of the shorter frame side, at least 4."""
    return max(4, int(round(frac * min(height, width))))


def glimpse_walls(height: int, width: int, g: int, device=None) -> "torch.Tensor":
    """Walls (2, 2) half a glimpse ``g`` from each edge (before the objects' size is known)."""
    m = torch.tensor([g / 2 / height, g / 2 / width], dtype=torch.float32, device=device)
    return torch.stack([m, 1 - m])


def ink_extent(glimpses: "torch.Tensor") -> "torch.Tensor":
    """Longer side in pixels of the box of the ink of glimpses (N, C, g, g), measured where
    the ink's row and column profiles (maxima) cross half their peak, to a fraction of a pixel
    (linear between pixels). (N,); 0 for a glimpse without ink."""
    ink = glimpses.mean(1)
    prof = torch.stack([ink.amax(2), ink.amax(1)], 1)  # (N, 2, g): rows, columns
    g = prof.shape[-1]
    peak = prof.amax(-1, keepdim=True)
    half = 0.5 * peak
    above = prof > half

    def edge(p, a):  # first index above half, and where the profile crosses it before that
        before = p.gather(-1, (a - 1).clamp_min(0)[..., None])[..., 0]
        at = p.gather(-1, a[..., None])[..., 0]
        frac = (at - half[..., 0]) / (at - before).clamp_min(1e-6)
        return a - torch.where(a > 0, frac.clamp(0, 1), torch.full_like(frac, 0.5))

    first = above.float().argmax(-1)
    last = g - 1 - above.flip(-1).float().argmax(-1)
    lo = edge(prof, first)
    hi = g - 1 - edge(prof.flip(-1), g - 1 - last)
    side = (hi - lo).amax(-1)
    return torch.where(peak[:, :, 0].amax(-1) > 1e-6, side, torch.zeros_like(side))


def ink_walls(glimpses: "torch.Tensor", presence: "torch.Tensor", height: int,
              width: int) -> "torch.Tensor":
    """Walls (B, 2, 2) for clips whose objects are the glimpses (B, S, C, g, g) (``presence``
    (B, S)), from the largest ink extent e (:func:`ink_extent`) among the clip's objects (a
    piece of a digit or a lost one only looks smaller): 0.725 e from the low edge of each axis
    and 0.675 e from the high one, at most 0.45 of the frame; half a glimpse for a clip
    without an object with ink. A moving-digit sprite is a square box 1.4 e (MNIST: a 20 px
    digit in a 28 px image) that bounces when the box touches the frame's edge, so the box's
    centre turns 0.7 e from each edge; MNIST puts a digit's centre of mass, which is what the
    glimpses are centred on, at pixel 14 of its 28 (14.5 px from the image's corner, half a
    pixel of the image, 0.025 e, past the box's centre on both axes). That gives the walls of
    Srivastava et al.'s generator and ours exactly ([14.5, 50.5] px for 28 px digits on 64
    px); Denton and Fergus's puts the box back one pixel short of the high edge, which
    :func:`seen_walls` finds where the context shows a bounce."""
    B, S, C, g = glimpses.shape[:4]
    ext = ink_extent(glimpses.flatten(0, 1)).view(B, S)
    largest = (ext * presence).amax(1)
    found = largest > 0
    size = torch.tensor([height, width]).to(largest)

    def margin(k):  # (B, 2): k ink extents from the edge, normalised
        px = torch.where(found, k * largest, torch.full_like(largest, g / 2))
        return (px[:, None] / size).clamp(max=0.45)

    return torch.stack([margin(0.725), 1 - margin(0.675)], 1)


def seen_walls(obs: np.ndarray, seen: np.ndarray, walls: np.ndarray, height: int, width: int,
               near_px: float = 3.0, turn_px: float = 0.5, inward_px: float = 1.25) -> np.ndarray:
    """One clip's walls (2, 2) (normalised) from the rule ``walls`` (:func:`ink_walls`),
    moved to agree with the bounces in its tracks obs (N, S, 2) (normalised; ``seen`` (N, S)).

    A bounce off the high wall of an axis is a frame k where the object moved up at more than
    ``turn_px`` per frame and the next position falls short of that step's straight line by
    more than 2 ``turn_px``, within ``near_px`` of the rule's wall (elsewhere a new velocity
    is not a wall), and that does not put the wall more than ``inward_px`` inside the rule's
    (a digit bouncing off a wall of the other axis can draw a new velocity on this one too,
    near a wall of this one). Clip generators bounce two ways: reflecting the step that
    crossed the wall (the wall is halfway between the straight line's position and the one
    seen: ours) or putting the object back on the wall (the wall is the extreme position:
    Srivastava et al.'s Moving MNIST, Denton and Fergus's SVG), so the wall is at most the
    larger of the two. It is at least every position seen. The rule's wall is moved into
    those bounds (a wall without a bounce only moves out to the positions seen). The low
    walls likewise.
    -> (2, 2)."""
    scale = np.array([height, width], np.float64)
    out = np.asarray(walls, np.float64) * scale  # (2, 2) px
    px = obs * scale
    N, S = seen.shape
    for ax in range(2):
        for side, sign in ((0, -1.0), (1, 1.0)):  # sign: direction towards the wall
            lower, upper = -np.inf, np.inf  # bounds on sign * wall
            rule = sign * out[side, ax]
            for s in range(S):
                x = sign * px[:, s, ax]
                if seen[:, s].any():
                    lower = max(lower, x[seen[:, s]].max())
                k = 1
                while k < N - 1:
                    v = x[k] - x[k - 1]
                    ok = seen[k - 1:k + 2, s].all() and v > turn_px
                    short = x[k] + v - x[k + 1]
                    edge = max(x[k], x[k + 1])
                    mid = x[k + 1] + 0.5 * short  # the wall if the step was reflected
                    if (ok and short > 2 * turn_px and abs(edge - rule) <= near_px
                            and max(edge, mid) >= rule - inward_px):
                        upper = min(upper, max(edge, mid))
                        k += 2  # the frame after belongs to the same bounce
                    else:
                        k += 1
            if np.isfinite(lower):
                out[side, ax] = sign * np.clip(rule, lower, max(lower, upper))
    return (out / scale).astype(np.float32)


def per_frame(walls: "torch.Tensor", B: int, L: int) -> "torch.Tensor":
    """Walls (2, 2) or (B, 2, 2) -> (B * L, 2, 2): one row per frame of B clips of L frames."""
    return walls.expand(B, 2, 2)[:, None].expand(B, L, 2, 2).flatten(0, 1)


def fold(p: "torch.Tensor", walls: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Reflect unfolded positions p (..., S, 2) between the walls (..., 2, 2) (triangle wave):
    -> (folded, sign) where sign (..., S, 2) is d folded / d p = +-1."""
    lo, hi = walls[..., :1, :], walls[..., 1:, :]
    span = (hi - lo).clamp_min(1e-3)
    z = torch.remainder(p - lo, 2 * span)
    return lo + span - (z - span).abs(), torch.where(z < span, 1.0, -1.0).to(p.dtype)


def _gauss_kernel(sigma: float) -> "torch.Tensor":
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@torch.no_grad()
def detect(ink: "torch.Tensor", g: int, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` (1 or 2) objects per frame. ink (F, H, W) >= 0 (grey, background removed)
    -> positions (F, n, 2) normalised (row, col), valid (F, n) bool.

    The first object is the peak of the Gaussian-blurred ink (sigma g / 6); the ink within 0.4 g
    of it is then removed and the second object is the peak of what is left, valid when at
    least ``SECOND_PEAK`` of the first peak."""
    Fn, H, W = ink.shape
    k = _gauss_kernel(max(1.0, g / 6))
    r = len(k) // 2

    def blur(a):
        a = F.conv2d(F.pad(a[:, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(a, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[:, 0]

    pos = np.zeros((Fn, n, 2), np.float32)
    valid = np.zeros((Fn, n), bool)
    rows = torch.arange(H).view(1, H, 1)
    cols = torch.arange(W).view(1, 1, W)
    top = None
    for j in range(n):
        heat = blur(ink)
        val, idx = heat.reshape(Fn, -1).max(1)
        ri, ci = idx // W, idx % W
        pr = ri.float() + 0.5 + _subpixel(heat, ri, ci, H, axis=0)
        pc = ci.float() + 0.5 + _subpixel(heat, ri, ci, W, axis=1)
        pos[:, j, 0], pos[:, j, 1] = (pr / H).numpy(), (pc / W).numpy()
        if j == 0:
            top = val
            valid[:, 0] = (val > 1e-4).numpy()
        else:
            valid[:, j] = ((val >= SECOND_PEAK * top) & (top > 1e-4)).numpy()
        near = (((rows - ri.view(-1, 1, 1)).abs() <= 0.4 * g)
                & ((cols - ci.view(-1, 1, 1)).abs() <= 0.4 * g))
        ink = ink.masked_fill(near, 0.0)
    return pos, valid


def _subpixel(heat, ri, ci, size, axis):
    """Quadratic-fit offset in (-0.5, 0.5) of the peak along ``axis``."""
    i = torch.arange(len(ri))
    lo = (ri if axis == 0 else ci) - 1
    hi = lo + 2
    lo, hi = lo.clamp(0, size - 1), hi.clamp(0, size - 1)
    c = heat[i, ri, ci]
    a = heat[i, lo, ci] if axis == 0 else heat[i, ri, lo]
    b = heat[i, hi, ci] if axis == 0 else heat[i, ri, hi]
    den = a - 2 * c + b
    off = torch.where(den < -1e-12, 0.5 * (a - b) / den.clamp(max=-1e-12), torch.zeros_like(c))
    return off.clamp(-0.5, 0.5)


def track(pos: np.ndarray, valid: np.ndarray, slots: int = 2, walls=((0.0, 0.0), (1.0, 1.0))
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slot tracks over one clip from detections pos (L, n, 2), valid (L, n); a slot not seen
    coasts at its last velocity, reflected at the walls (2, 2) (low and high (row, col));
    a detection goes to the slot whose prediction, reflected or not, is nearest.

    Returns obs (L, slots, 2) (a coasted prediction where a slot was not seen), seen
    (L, slots) bool, born (slots,) bool (a second slot is born at the first frame with two
    detections; before that it follows slot 0)."""
    L = len(pos)
    obs = np.zeros((L, slots, 2), np.float32)
    seen = np.zeros((L, slots), bool)
    born = np.zeros(slots, bool)
    cur = np.full((slots, 2), 0.5, np.float32)
    vel = np.zeros((slots, 2), np.float32)
    lo, hi = np.asarray(walls, np.float32)
    for t in range(L):
        dets = [pos[t, j] for j in range(pos.shape[1]) if valid[t, j]]
        straight = cur + vel
        out = (straight < lo) | (straight > hi)
        pred = np.where(straight < lo, 2 * lo - straight,
                        np.where(straight > hi, 2 * hi - straight, straight))
        kept, vel = vel, np.where(out, -vel, vel)
        if slots == 2 and not born[1]:
            pred[1], straight[1] = pred[0], straight[0]

        def cost(s, d):  # bounced or not: the walls are a guess (a piece of a digit larger
            # than the glimpse goes on past them; reflecting it hands it the other detection)
            return min(np.sum((pred[s] - d) ** 2), np.sum((straight[s] - d) ** 2))

        assign: dict[int, np.ndarray] = {}
        if len(dets) == 1 or (dets and slots == 1):
            d = dets[0] if len(dets) == 1 else min(dets, key=lambda q: cost(0, q))
            if slots == 1 or not born[1]:
                assign[0] = d
            else:
                assign[int(np.argmin([cost(s, d) for s in range(slots)]))] = d
        elif len(dets) >= 2 and slots == 2:
            a, b = dets[0], dets[1]
            if not born[1]:
                first = a if cost(0, a) <= cost(0, b) else b
                other = b if first is a else a
                assign = {0: first, 1: other}
                born[1] = True
            else:
                keep = cost(0, a) + cost(1, b)
                swap = cost(0, b) + cost(1, a)
                assign = {0: a, 1: b} if keep <= swap else {0: b, 1: a}
        if dets:
            born[0] = True
        for s in range(slots):
            if s in assign:
                new = assign[s]
                if t > 0 and seen[t - 1, s]:
                    vel[s] = new - cur[s]
                elif np.sum((straight[s] - new) ** 2) < np.sum((pred[s] - new) ** 2):
                    vel[s] = kept[s]  # found where it went on straight: it did not bounce
                cur[s], seen[t, s] = new, True
            else:
                cur[s] = pred[s]
        if slots == 2 and not born[1]:
            cur[1], vel[1] = cur[0], vel[0]
        obs[t] = cur
    return obs, seen, born


def layer_tracks(frames: "torch.Tensor", bg: "torch.Tensor", reach: float = 0.25
                 ) -> "torch.Tensor":
    """Two objects tracked by their motion alone, for two that overlap where the detector
    sees one blob: the two highest peaks of the phase correlation of consecutive frames' ink
    (frames (B, L, C, H, W) over bg (B, C, H, W)) are the two objects' steps (sub-pixel by a
    quadratic fit; at most ``reach`` of the frame); each peak goes to the object whose last
    step it is nearer (a bounce changes one object's step at a time), and an object's place
    in the first frame is the centre of mass of the frames aligned on its steps, pixelwise
    minimum (the other object's ink moves away). -> normalised positions (B, L, 2, 2), no
    gradient."""
    B, L, C, H, W = frames.shape
    ink = (frames - bg[:, None]).clamp_min(0).mean(2)  # (B, L, H, W)
    spec = torch.fft.rfft2(ink)
    cross = spec[:, 1:] * spec[:, :-1].conj()
    cross = cross / (cross.abs() + 1e-3 * cross.abs().amax((-2, -1), keepdim=True) + 1e-12)
    corr = torch.fft.irfft2(cross, (H, W)).flatten(-2)  # peak at d: ink[t + 1](x) = ink[t](x - d)
    dy = (torch.arange(H) + H // 2) % H - H // 2
    dx = (torch.arange(W) + W // 2) % W - W // 2
    far = ((dy.abs() > reach * H).view(H, 1) | (dx.abs() > reach * W).view(1, W)).flatten()
    work = corr.masked_fill(far, -math.inf)
    at = lambda i, j: corr.gather(-1, ((i % H) * W + j % W)[..., None])[..., 0]  # noqa: E731

    def vertex(a, b, c):  # offset of a parabola's top through (-1, a), (0, b), (1, c)
        den = a - 2 * b + c
        return torch.where(den < 0, 0.5 * (a - c) / den.clamp_max(-1e-12), 0).clamp(-0.5, 0.5)

    peaks = []
    for _ in range(2):
        k = work.argmax(-1)  # (B, L - 1)
        i, j = k // W, k % W
        top = at(i, j)
        peaks.append(torch.stack([dy[i] + vertex(at(i - 1, j), top, at(i + 1, j)),
                                  dx[j] + vertex(at(i, j - 1), top, at(i, j + 1))], -1))
        near = ((dy.view(H, 1) - dy[i][..., None, None]).abs() <= 1) & (
            (dx.view(1, W) - dx[j][..., None, None]).abs() <= 1)
        work = work.masked_fill(near.flatten(-2), -math.inf)
    steps = torch.stack(peaks, 2).cpu().numpy()  # (B, L - 1, 2 objects, 2)
    for t in range(1, L - 1):
        cost = lambda q: np.minimum(np.linalg.norm(q - steps[:, t - 1], axis=-1), 1.5).sum(-1)  # noqa: E731
        swap = cost(steps[:, t, ::-1]) < cost(steps[:, t])
        steps[swap, t] = steps[swap, t, ::-1]
    moved = torch.from_numpy(np.concatenate([np.zeros((B, 1, 2, 2), np.float32),
                                              np.cumsum(steps, 1)], 1)).to(ink)
    # each frame sampled at x + the object's displacement, so that the object stays put
    ys, xs = torch.arange(H).to(ink) + 0.5, torch.arange(W).to(ink) + 0.5
    gy = (ys.view(1, 1, 1, H, 1) + moved[..., 0, None, None]) * (2 / H) - 1  # (B, L, 2, H, 1)
    gx = (xs.view(1, 1, 1, 1, W) + moved[..., 1, None, None]) * (2 / W) - 1
    grid = torch.stack(torch.broadcast_tensors(gx, gy), -1).flatten(0, 2)
    src = ink[:, :, None].expand(B, L, 2, H, W).flatten(0, 2)[:, None]
    still = F.grid_sample(src, grid, align_corners=False).view(B, L, 2, H, W).amin(1)
    mass = still.sum((-2, -1)).clamp_min(1e-6)
    first = torch.stack([(still.sum(-1) * ys).sum(-1), (still.sum(-2) * xs).sum(-1)], -1)
    return ((first / mass[..., None])[:, None] + moved) / torch.tensor([H, W]).to(ink)


def merge_piece(obs: np.ndarray, seen: np.ndarray, n_context: int, g: int, height: int,
                width: int, jitter_px: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two-slot tracks obs (L, 2, 2) (normalised), seen (L, 2) from :func:`track`: when slot 1
    is seen with slot 0 in at least half (and at least 3) of the first ``n_context`` frames,
    always within 0.6 of a glimpse g of it on both axes and at an offset that varies by at
    most ``jitter_px`` pixels, it is a piece of slot 0's object (an object larger than the
    ink :func:`detect` removes around the first peak): slot 0 moves to the middle of the two
    (where only the piece was seen, to the piece minus half the offset), slot 1 is dropped
    (not seen; it follows slot 0). -> (obs, seen), new arrays."""
    both = seen[:n_context].all(1)
    if both.sum() < max(3, n_context / 2):
        return obs, seen
    px = np.array([height, width], np.float64)
    off = (obs[:n_context][both, 1] - obs[:n_context][both, 0]) * px  # (n, 2) pixels
    if np.abs(off).max() > 0.6 * g or np.ptp(off, axis=0).max() > jitter_px:
        return obs, seen
    half = (0.5 * off.mean(0) / px).astype(obs.dtype)
    obs, seen = obs.copy(), seen.copy()
    alone = seen[:, 1] & ~seen[:, 0]
    obs[:, 0] = np.where(alone[:, None], obs[:, 1] - half, obs[:, 0] + half)
    obs[:, 1], seen[:, 0], seen[:, 1] = obs[:, 0], seen[:, 0] | alone, False
    return obs, seen


def _line(px: np.ndarray, a: int, b: int):
    """Robust straight line through px[a..b] (Tukey's biweight, 4 px): -> ((p0, v), t0), the
    position p0 at frame t0 and the velocity v (pixels per frame)."""
    t = np.arange(a, b + 1, dtype=np.float64)
    A = np.stack([np.ones_like(t), t - t.mean()], 1)
    w = np.ones(len(t))
    for _ in range(6 if len(t) >= 4 else 1):
        coef = np.linalg.lstsq(A * w[:, None], px[a:b + 1] * w[:, None], rcond=None)[0]
        r = np.linalg.norm(px[a:b + 1] - A @ coef, axis=1)
        w = np.clip(1 - (r / 4.0) ** 2, 1e-3, None)  # square root of Tukey's weight
    return coef, t.mean()


def _runs(px: np.ndarray, lo, hi, jump_px: float, slack_px: float,
          turn_px: float) -> list[tuple[int, int]]:
    """The straight runs (first frame, last frame) of a track px (L, 2) in pixels, walls lo,
    hi (2,) in pixels or None: see :func:`smooth_track`. Consecutive runs share a frame."""
    L = len(px)
    d = np.diff(px, axis=0)

    def bounced(a, t):  # did the object of the run that started at frame a bounce at t?
        if t - a >= 2:
            (p0, v), tm = _line(px, a, t - 1)
            p = p0 + v * (t - tm)
        else:  # a one-frame run: its one step
            v, p = d[a], px[t]
        near = ((v < 0) & (p - lo <= np.abs(v) + slack_px)) | (
            (v > 0) & (hi - p <= np.abs(v) + slack_px))
        toward = d[t:t + 2] * np.sign(v)  # this step and the next, towards the wall
        turned = (toward < -turn_px).any(0)
        if t == len(d) - 1:
            turned |= toward[0] < np.abs(v) - 2 * jump_px
        return bool(np.any(near & turned))

    runs, start, bounces = [], 0, {0}  # frame 0 as a bounce: a jump ends a first one-frame run
    for t in range(1, L - 1):
        jump = np.abs(d[t] - d[start:t].mean(0)).max()
        if jump <= jump_px:
            continue
        after = t - start < 2 and (start in bounces or jump > 2 * jump_px)
        if lo is not None and bounced(start, t):
            bounces.add(t)
        if lo is None or after or t in bounces:
            runs.append((start, t))
            start = t
    runs.append((start, L - 1))
    return runs


def smooth_track(obs: np.ndarray, height: int, width: int, walls=None, jump_px: float = 0.75,
                 slack_px: float = 3.0, turn_px: float = 0.25) -> np.ndarray:
    """Piecewise-straight version of a slot track obs (L, 2) (normalised). The frame-to-frame
    displacements are cut into runs that stay within ``jump_px`` pixels per frame of their
    run's mean; with the walls (2, 2) (normalised), a run only ends where the object bounced
    (on an axis where its run's line, extended to that frame, is within its speed +
    ``slack_px`` of a wall it moves towards, that step or the next turns away from the wall
    by more than ``turn_px``; the context's last step need only be shorter by more than
    whole-pixel positions can make it, 2 ``jump_px``: the next one is not seen), in the
    frame after a bounce (a bounce between two frames bends the track at both), and after a
    one-frame run where the jump is more than 2 ``jump_px`` (two bounces in a row, off a
    corner). Elsewhere a jump is a tracking error (a digit lost for a frame where it
    overlaps another one) or whole-pixel positions (steps of 3 and 4 px where a digit moves
    3.6 px per frame), so the run goes on and its line is a robust fit (Tukey's biweight,
    4 px) that leaves such frames out. -> (L, 2)."""
    L = len(obs)
    if L < 3:
        return obs.copy()
    scale = np.array([height, width], np.float32)
    px = obs * scale
    lo, hi = (None, None) if walls is None else np.asarray(walls, np.float64) * scale
    fits = _run_fits(px, _runs(px, lo, hi, jump_px, slack_px, turn_px))
    return (_average(fits, px) / scale).astype(np.float32)


def _run_fits(px: np.ndarray, runs: list[tuple[int, int]]) -> list:
    """Each run (a, b) of px (L, 2) with its straight line's positions at frames a..b (the
    track itself for a one-step run): -> [(a, b, fit (b - a + 1, 2))]."""
    out = []
    for a, b in runs:  # steps a..b-1 cover frames a..b
        if b - a >= 2:
            (p0, v), tm = _line(px, a, b)
            out.append((a, b, p0 + v * (np.arange(a, b + 1)[:, None] - tm)))
        else:
            out.append((a, b, px[a:b + 1]))
    return out


def _average(fits: list, px: np.ndarray) -> np.ndarray:
    """The runs' fitted positions, averaged where consecutive runs share a frame."""
    weight = np.zeros(len(px), px.dtype)
    acc = np.zeros_like(px)
    for a, b, fit in fits:
        acc[a:b + 1] += fit
        weight[a:b + 1] += 1
    return acc / np.maximum(weight, 1)[:, None]


def end_velocity(obs: np.ndarray, height: int, width: int, walls, jump_px: float = 0.75,
                 slack_px: float = 3.0, turn_px: float = 0.25, short: int = 4,
                 floor_px: float = 0.1) -> np.ndarray:
    """The velocity (2,) (normalised, per frame) of a slot track obs (L, 2) (normalised) at
    its last frame, with walls (2, 2) (normalised). Normally the last step of
    :func:`smooth_track`'s track (its last straight run's slope). A run that began fewer
    than ``short`` frames before the end, just after a bounce, has its slope from a step or
    two (off by up to a pixel per frame where a digit is drawn at whole pixels), or none
    where the digit reached the wall in the last frame. Then the straight run before it is
    carried on with mirror bounces at the walls (reflected past a wall, or put on it:
    generators do both), and the steps seen since, between bounces, are compared with it
    axis by axis: where each stretch of n steps agrees within twice the error of an n-step
    velocity (the track's scatter about its straight runs, at least ``floor_px``, times
    sqrt(2) / n), the object bounced like a mirror and the earlier run's velocity, mirrored
    where it crossed a wall, is the better one (a random bounce that happens to look like
    a mirror within that error costs little); otherwise (a new velocity drawn at the wall)
    the short run's slope."""
    scale = np.array([height, width], np.float64)
    px = obs.astype(np.float64) * scale
    L = len(px)
    if L < 3:
        return (px[-1] - px[0]) / max(L - 1, 1) / scale
    lo, hi = np.asarray(walls, np.float64) * scale
    fits = _run_fits(px, _runs(px, lo, hi, jump_px, slack_px, turn_px))
    smooth = _average(fits, px)
    own = smooth[-1] - smooth[-2]
    a, b, _ = fits[-1]
    earlier = [f for f in fits[:-1] if f[1] - f[0] >= 2]
    if b - a >= short or not earlier or L - 1 - earlier[-1][1] > short:
        return own / scale
    # the scatter about the runs' lines (a one-step run fits exactly and counts no degree)
    res = sum(float(((px[r0:r1 + 1] - fit) ** 2).sum()) for r0, r1, fit in fits)
    scatter = np.sqrt(res / max(sum(2 * max(r1 - r0 - 1, 0) for r0, r1, _ in fits), 1))
    _, b0, fit = earlier[-1]
    start, u = fit[-1], fit[1] - fit[0]  # the earlier run's line at its last frame, slope
    noise = 2 * np.sqrt(2) * max(scatter, floor_px)  # a one-step velocity's error, twice
    best, v_best = np.inf, own
    for clamp in (False, True):
        x, v, since, err = start, u.copy(), np.full(2, b0), 0.0

        def check(k, e):  # the steps since[k]..e on axis k against the velocity v[k]
            n = e - since[k]
            return abs((px[e, k] - px[since[k], k]) / n - v[k]) * n / noise if n else 0.0

        for f in range(b0 + 1, L):
            x = x + v
            out = (x < lo) | (x > hi)
            x = np.clip(x, lo, hi) if clamp else np.where(x < lo, 2 * lo - x,
                                                          np.where(x > hi, 2 * hi - x, x))
            for k in np.flatnonzero(out):  # a bounce: the step through the wall is not seen
                err, since[k] = max(err, check(k, f - 1)), f
            v = np.where(out, -v, v)
        err = max(err, check(0, L - 1), check(1, L - 1))
        if err < best:
            best, v_best = err, v
    return (v_best if best <= 1 else own) / scale


def centre_of_ink(glimpses: "torch.Tensor") -> "torch.Tensor":
    """Offset (B, 2) in pixels (row, col) from the centre of glimpses (B, C, g, g) to the
    centre of mass of their ink. MNIST digits are centred on their centre of mass, so moving a
    glimpse by this offset puts its centre where the digit's box centre is, which is what
    bounces off the walls (:func:`ink_walls`)."""
    ink = glimpses.mean(1).clamp_min(0)
    g = ink.shape[-1]
    c = torch.arange(g, dtype=ink.dtype, device=ink.device) + 0.5 - g / 2
    total = ink.sum((1, 2)).clamp_min(1e-6)
    return torch.stack([(ink.sum(2) * c).sum(1), (ink.sum(1) * c).sum(1)], 1) / total[:, None]


def refine(frames: "torch.Tensor", bg: "torch.Tensor", glimpses: "torch.Tensor",
           presence: "torch.Tensor", obs: "torch.Tensor", walls: "torch.Tensor",
           iters: int = 24) -> "torch.Tensor":
    """Analysis by synthesis: move the tracked positions obs (B, L, S, 2) so that the glimpses
    (B, S, C, g, g) drawn there over the background bg (B, C, H, W) reproduce the frames
    (B, L, C, H, W) (squared error on 4 x 4 blocks, then on pixels; Adam with steps shrinking
    from 0.6 to 0.05 px). Frame-by-frame detection confuses two digits that touch; the glimpses
    do not. Positions are kept between the ``walls`` by :func:`fold`. -> refined
    positions (B, L, S, 2), no gradient."""
    B, L, C, H, W = frames.shape
    S = glimpses.shape[1]
    flat = frames.flatten(0, 1)
    with torch.enable_grad():
        p = obs.detach().flatten(0, 1).clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=0.6 / max(H, W))
        for i in range(iters):
            diff = draw_clips(glimpses, p, presence, bg, walls) - flat
            if i < iters // 2:  # coarse: 4 x 4 pixel blocks, so a digit a few pixels off is seen
                diff = F.avg_pool2d(diff, 4, ceil_mode=True)
            loss = (diff ** 2).sum()
            opt.zero_grad()
            loss.backward()
            for group in opt.param_groups:
                group["lr"] = (0.05 + 0.55 * (1 - i / iters)) / max(H, W)
            opt.step()
    return fold(p.detach(), per_frame(walls, B, L))[0].view(B, L, S, 2)


@torch.no_grad()
def matches(frames: "torch.Tensor", bg: "torch.Tensor", glimpses: "torch.Tensor",
            n: int = 2) -> "torch.Tensor":
    """Where each glimpse (B, S, C, g, g) fits the frames (B, L, C, H, W) best wherever it
    is: the ``n`` highest peaks (each at least 0.4 g from a higher one) of the correlation of
    the glimpse's ink with the frame's ink over the background bg (B, C, H, W) (for one
    glimpse inside an otherwise empty frame, the position of least squared error). ->
    normalised positions (B, L, S, n, 2), at whole pixels."""
    B, L, C, H, W = frames.shape
    S, g = glimpses.shape[1], glimpses.shape[-1]
    ink = (frames - bg[:, None]).clamp_min(0).mean(2)  # (B, L, H, W)
    kernel = glimpses.mean(2).clamp_min(0)  # (B, S, g, g)
    pad = g // 2
    # cross-correlation by FFT (a 28 x 28 kernel is slow as a convolution on CPU), each
    # glimpse at each shift -pad .. H - g + pad (the glimpse partly outside the frame too)
    size = (H + g, W + g)
    spec = torch.fft.rfft2(ink, size)[:, :, None] * torch.fft.rfft2(kernel, size).conj()[:, None]
    corr = torch.fft.irfft2(spec, size).roll((pad, pad), (-2, -1))  # (B, L, S, H + g, W + g)
    Hc, Wc = H + 2 * pad - g + 1, W + 2 * pad - g + 1
    corr = corr[..., :Hc, :Wc]
    rows = torch.arange(Hc, device=corr.device).view(Hc, 1)
    cols = torch.arange(Wc, device=corr.device).view(1, Wc)
    out = []
    for _ in range(n):
        idx = corr.flatten(-2).argmax(-1)  # (B, L, S)
        r, c = idx // Wc, idx % Wc
        out.append(torch.stack([(r - pad + g / 2) / H, (c - pad + g / 2) / W], -1))
        near = (((rows - r[..., None, None]).abs() <= 0.4 * g)
                & ((cols - c[..., None, None]).abs() <= 0.4 * g))
        corr = corr.masked_fill(near, -math.inf)
    return torch.stack(out, 3).to(frames)


def correct(frames: "torch.Tensor", bg: "torch.Tensor", glimpses: "torch.Tensor",
            presence: "torch.Tensor", obs: "torch.Tensor",
            walls: "torch.Tensor") -> "torch.Tensor":
    """Tracking by synthesis in time: in each frame, each slot's position obs (B, L, S, 2)
    stays, takes the other slot's position, is replaced by its constant-velocity
    prediction from the two frames before it (reflected at the ``walls``) or by one of the
    two places its glimpse matches the frame best (:func:`matches`), whichever way the
    glimpses (B, S, C, g, g) drawn over bg (B, C, H, W) reproduce the frame (B, L, C, H, W)
    best (squared error); a forward pass, then a backward one (predictions from the two
    frames after). Frame-by-frame detection and refinement lose a digit that overlaps
    another one, or swap the two; a digit moves on in a straight line between walls (until
    a random bounce), and the glimpses tell which position is right. -> positions
    (B, L, S, 2), no gradient."""
    B, L, C, H, W = frames.shape
    S = glimpses.shape[1]
    if L < 3:
        return obs
    obs = obs.detach().clone()
    found = matches(frames, bg, glimpses)  # (B, L, S, 2, 2)
    # every combination of each slot's candidates: own, other slot's, predicted, 2 matches
    n_opt = S + 1 + found.shape[3]
    pick = torch.cartesian_prod(*[torch.arange(n_opt)] * S).view(-1, S)  # (K, S)
    ar, slots = torch.arange(B), torch.arange(S)
    g = glimpses.shape[-1]
    each = glimpses[:, :, None].expand(B, S, n_opt, C, g, g).reshape(-1, 1, C, g, g)
    weight = presence[:, :, None].expand(B, S, n_opt).reshape(-1, 1)
    wall = walls.expand(B, 2, 2)[:, None]  # (B, 1, 2, 2)
    with torch.no_grad():
        for order, step in ((range(2, L), 1), (range(L - 3, -1, -1), -1)):
            for t in order:
                near, far = obs[:, t - step], obs[:, t - 2 * step]
                pred = fold(2 * near - far, walls)[0]  # (B, S, 2)
                options = torch.stack([obs[:, t, (slots + k) % S] for k in range(S)] + [pred]
                                      + list(found[:, t].unbind(2)), 2)  # (B, S, n_opt, 2)
                cand = options[:, slots[None], pick]  # (B, K, S, 2)
                # each slot's glimpse drawn at each of its options, composited in every pick
                layers = render(each, fold(options, wall)[0].reshape(-1, 1, 2), weight, H, W)
                layers = layers.view(B, S, n_opt, C, H, W)[:, slots[None], pick]
                drawn = torch.maximum(layers.amax(2), bg[:, None])  # (B, K, C, H, W)
                err = (drawn - frames[:, t, None]).pow(2).sum((2, 3, 4))
                obs[:, t] = cand[ar, err.argmin(1)]
    return obs


def draw_clips(glimpses: "torch.Tensor", positions: "torch.Tensor", presence: "torch.Tensor",
               bg: "torch.Tensor", walls: "torch.Tensor") -> "torch.Tensor":
    """Each clip's glimpses (B, S, C, g, g), weighted by presence (B, S), drawn at its L
    unfolded positions (B * L, S, 2) (reflected between the ``walls`` by :func:`fold`)
    over its background bg (B, C, H, W), pixelwise maximum: -> frames (B * L, C, H, W)."""
    B = glimpses.shape[0]
    C, H, W = bg.shape[1:]
    L = positions.shape[0] // B
    ex = lambda a: a[:, None].expand(B, L, *a.shape[1:]).flatten(0, 1)  # noqa: E731
    drawn = render(ex(glimpses), fold(positions, per_frame(walls, B, L))[0], ex(presence), H, W)
    return torch.maximum(drawn, ex(bg))


def centre_glimpses(glimpses: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Move the ink of glimpses (B, S, C, g, g) so that its centre of mass is at the centre:
    -> (centred glimpses, shift (B, S, 2) in pixels to add to their positions)."""
    B, S, C, g = glimpses.shape[:4]
    shift = centre_of_ink(glimpses.flatten(0, 1))
    out = crop(glimpses.flatten(0, 1), 0.5 + shift / g, g).view_as(glimpses)
    return out, shift.view(B, S, 2)


def decompose(frames: "torch.Tensor", bg: "torch.Tensor", glimpses: "torch.Tensor",
              presence: "torch.Tensor", obs: "torch.Tensor", walls: "torch.Tensor",
              iters: int = 40) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Fit the glimpses' pixels (B, S, C, g, g) and the positions obs (B, L, S, 2) together
    so that the glimpses drawn there over bg (B, C, H, W) reproduce the frames (B, L, C, H, W)
    (squared error; Adam, 0.3 px and 0.03 grey levels per step). A glimpse cut where two
    digits touch carries some of the other digit's ink; drawn in every frame, that ink is
    wrong wherever the digits have moved apart, and the fit removes it. -> (glimpses in
    [0, 1], positions), no gradient."""
    B, L, C, H, W = frames.shape
    flat = frames.flatten(0, 1)
    with torch.enable_grad():
        p = obs.detach().flatten(0, 1).clone().requires_grad_(True)
        ink = glimpses.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [p], "lr": 0.3 / max(H, W)},
                                {"params": [ink], "lr": 0.03}])
        for _ in range(iters):
            loss = ((draw_clips(ink.clamp(0, 1), p, presence, bg, walls) - flat) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (ink.detach().clamp(0, 1),
            fold(p.detach(), per_frame(walls, B, L))[0].view(B, L, -1, 2))


def scale_shift_grid(scale: "torch.Tensor", shift: "torch.Tensor", height: int,
                     width: int) -> "torch.Tensor":
    """The sampling grid of ``F.affine_grid`` (align_corners=False) for the axis-aligned maps
    (row, col) -> scale * (row, col) + shift (B, 2), built by broadcasting: the same numbers
    without affine_grid's batched matrix product (on the CPU a training step is 1.7x faster:
    benchmarks/fsde_video_speed.py). -> (B, H, W, 2) in grid_sample's (x, y) order."""
    ys = (torch.arange(height).to(shift) * 2 + 1) / height - 1
    xs = (torch.arange(width).to(shift) * 2 + 1) / width - 1
    gy = scale[..., 0, None] * ys + shift[:, 0, None]  # (B, H)
    gx = scale[..., 1, None] * xs + shift[:, 1, None]  # (B, W)
    B = shift.shape[0]
    return torch.stack([gx[:, None, :].expand(B, height, width),
                        gy[:, :, None].expand(B, height, width)], -1)


def crop(frames: "torch.Tensor", centre: "torch.Tensor", g: int) -> "torch.Tensor":
    """Glimpses (B, C, g, g) of frames (B, C, H, W) centred at normalised positions (B, 2)."""
    H, W = frames.shape[2:]
    grid = scale_shift_grid(torch.tensor([g / H, g / W]).to(centre), 2 * centre - 1, g, g)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def render(glimpses: "torch.Tensor", centre: "torch.Tensor", presence: "torch.Tensor",
           height: int, width: int) -> "torch.Tensor":
    """Draw glimpses (B, S, C, g, g) centred at normalised positions (B, S, 2), weighted by
    presence (B, S) in [0, 1], composited by a maximum over slots: -> (B, C, H, W)."""
    B, S, C, g = glimpses.shape[:4]
    scale = torch.tensor([height / g, width / g]).to(centre)
    grid = scale_shift_grid(scale, scale * (1 - 2 * centre.reshape(B * S, 2)), height, width)
    drawn = F.grid_sample(glimpses.reshape(B * S, C, g, g), grid, mode="bilinear",
                          padding_mode="zeros", align_corners=False)
    drawn = drawn.view(B, S, C, height, width) * presence.view(B, S, 1, 1, 1)
    return drawn.max(1).values
