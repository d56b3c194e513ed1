"""Video data for the latent fractional-SDE video model.

* Stochastic Moving Digits (after Denton & Fergus 2018): real MNIST digits (``resources/mnist``)
  moving on a black square; at a wall a digit bounces and draws a new random velocity pointing
  back into the frame. Deterministic from a seed.
* Any user video read with OpenCV (grayscale or colour), centre-cropped to a square and resized;
  ``.npz`` / ``.npy`` clips (``frames`` array, uint8 or values in [0, 1]) are read too.

Frames are float32 in [0, 1], shaped (T, H, W) for grayscale and (T, H, W, 3) RGB for colour.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.jobs import InputError

MNIST_PATH = Path(__file__).resolve().parents[2] / "resources" / "mnist" / "mnist_5k.npz"
HELD_OUT = 0.2  # the last fifth of each class's digits is held out for evaluation clips
SPEED_RANGE = (0.02, 0.10)  # speed in frame widths per frame (1.3..6.4 px at 64 px)
MAX_SIDE = 128  # longest side the video model works at; larger videos are scaled down
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


@lru_cache(maxsize=1)
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 5000 MNIST digits: images (5000, 28, 28) uint8, labels (5000,) uint8."""
    with np.load(MNIST_PATH) as z:
        return z["images"], z["labels"]


@lru_cache(maxsize=2)
def digit_pool(split: str) -> np.ndarray:
    """The MNIST digits (n, 28, 28) uint8 of ``split``, read-only (made once: training asks
    every step): "train", per class the first 1 - HELD_OUT of its digits, or "test", the rest.
    Every class is in both (the file is sorted by label: a cut by index would train on 0-7
    and test on 8 and 9 alone)."""
    if split not in ("train", "test"):
        raise ValueError(f"split is 'train' or 'test', not {split!r}")
    images, labels = mnist_digits()
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        cut = int(round(len(idx) * (1 - HELD_OUT)))
        keep.append(idx[:cut] if split == "train" else idx[cut:])
    pool = images[np.sort(np.concatenate(keep))]
    pool.flags.writeable = False
    return pool


def digit_size(size: int) -> int:
    """Side of a digit in pixels: 28 on 64-pixel frames, 14 on 32-pixel frames."""
    return max(4, int(round(size * 28 / 64)))


@dataclass
class DigitClips:
    """``frames`` (B, T, S, S) float32 in [0, 1]; ``positions`` (B, T, D, 2) top-left corner of
    each digit (row, col) in pixels; ``bounces`` (B, T, D) bool: the digit hit a wall at t;
    ``velocities`` (B, T, D, 2) the velocity (px per frame) that moves it on from t;
    ``glyphs`` (B, D, d, d) the digits drawn; ``speed`` and ``bounce`` as generated (what
    :func:`continue_digits` needs)."""

    frames: np.ndarray
    positions: np.ndarray
    bounces: np.ndarray
    velocities: np.ndarray
    glyphs: np.ndarray
    speed: tuple[float, float]
    bounce: str


def moving_digits(n_videos: int, n_frames: int, size: int = 32, n_digits: int = 1,
                  seed: int = 0, split: str = "train", bounce: str = "random",
                  speed: tuple[float, float] = SPEED_RANGE) -> DigitClips:
    """Generate ``n_videos`` Stochastic Moving Digits clips of ``n_frames`` frames.

    Each digit starts at a uniform position with a random direction and a speed uniform in
    ``speed`` (frame widths per frame); when the next step would leave the frame it is
    reflected at the wall and, with ``bounce="random"``, a new random velocity pointing inward
    is drawn (``bounce="reflect"``: the velocity is mirrored, as in the original Moving MNIST of
    Srivastava et al. 2015, so the whole clip follows from its first frames). Digits are drawn
    at sub-pixel positions (bilinear) and composited with a pixelwise maximum. ``split`` picks
    the digit pool ("train" or "test").
    """
    if size not in (32, 64):
        raise ValueError(f"moving digits come in sizes 32 and 64, not {size}")
    if n_digits not in (1, 2):
        raise ValueError(f"moving digits have 1 or 2 digits, not {n_digits}")
    if bounce not in ("random", "reflect"):
        raise ValueError(f"bounce is 'random' or 'reflect', not {bounce!r}")
    from engine._cv2 import cv2

    pool = digit_pool(split)
    rng = np.random.default_rng(seed)
    d = digit_size(size)
    frames = np.zeros((n_videos, n_frames, size, size), np.float32)
    positions = np.zeros((n_videos, n_frames, n_digits, 2), np.float32)
    velocities = np.zeros((n_videos, n_frames, n_digits, 2), np.float32)
    bounces = np.zeros((n_videos, n_frames, n_digits), bool)
    glyphs = np.zeros((n_videos, n_digits, d, d), np.float32)
    for b in range(n_videos):
        idx = rng.integers(0, len(pool), n_digits)
        glyphs[b] = [cv2.resize(pool[i], (d, d), interpolation=cv2.INTER_AREA).astype(
            np.float32) / 255.0 for i in idx]
        pos = rng.uniform(0, size - d, (n_digits, 2))
        vel = np.stack([_velocity(rng, speed, size) for _ in range(n_digits)])
        _run_digits(frames[b], glyphs[b], pos, vel, rng, speed, bounce, positions[b],
                    velocities[b], bounces[b])
    np.clip(frames, 0.0, 1.0, out=frames)
    return DigitClips(frames, positions, bounces, velocities, glyphs, tuple(speed), bounce)


def continue_digits(clips: DigitClips, t0: int, n_frames: int, samples: int,
                    seed: int = 0) -> np.ndarray:
    """``samples`` futures of each clip: the ``n_frames`` frames after frame ``t0``, drawn by
    the generator itself from the digits' true positions and velocities at ``t0`` with fresh
    random bounces (what an ideal forecaster that knows the state and the generator would
    sample). -> (samples, B, n_frames, S, S) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    B, _, size = clips.frames.shape[:3]
    out = np.zeros((samples, B, n_frames + 1, size, size), np.float32)
    for s in range(samples):
        for b in range(B):
            _run_digits(out[s, b], clips.glyphs[b], clips.positions[b, t0].astype(np.float64),
                        clips.velocities[b, t0].astype(np.float64), rng, clips.speed,
                        clips.bounce)
    return np.clip(out[:, :, 1:], 0.0, 1.0)


def _velocity(rng, speed, size, sign_r: float = 0.0, sign_c: float = 0.0) -> np.ndarray:
    """A random velocity (px per frame) with speed uniform in ``speed`` frame widths; a nonzero
    sign forces that component's direction (at least a quarter of the speed)."""
    speed_px = rng.uniform(*speed) * size
    angle = rng.uniform(0, 2 * np.pi)
    v = speed_px * np.array([np.sin(angle), np.cos(angle)])
    if sign_r:
        v[0] = sign_r * max(abs(v[0]), 0.25 * speed_px)
    if sign_c:
        v[1] = sign_c * max(abs(v[1]), 0.25 * speed_px)
    return v


def _run_digits(frames, glyphs, pos, vel, rng, speed, bounce, positions=None, velocities=None,
                bounces=None) -> None:
    """Draw digits ``glyphs`` (D, d, d) from ``pos`` / ``vel`` (D, 2), changed in place, into
    ``frames`` (T, S, S): at each frame draw, then step on; a digit whose next step would
    leave the frame is reflected at the wall and draws a new random inward velocity
    (``bounce="random"``) or has it mirrored. Records into the optional arrays."""
    size = frames.shape[-1]
    lim = float(size - glyphs.shape[-1])  # top-left corner lives in [0, lim]
    for t in range(len(frames)):
        for k in range(len(glyphs)):
            _draw(frames[t], glyphs[k], pos[k])
            if positions is not None:
                positions[t, k], velocities[t, k] = pos[k], vel[k]
            nxt = pos[k] + vel[k]
            hit_r = nxt[0] < 0 or nxt[0] > lim
            hit_c = nxt[1] < 0 or nxt[1] > lim
            if hit_r or hit_c:
                if bounces is not None:
                    bounces[t, k] = True
                # reflect at the wall, then a new random velocity pointing back inside
                nxt = np.abs(nxt)
                nxt = np.where(nxt > lim, 2 * lim - nxt, nxt)
                nxt = np.clip(nxt, 0, lim)
                sr = (1.0 if pos[k, 0] + vel[k, 0] < 0 else -1.0) if hit_r else 0.0
                sc = (1.0 if pos[k, 1] + vel[k, 1] < 0 else -1.0) if hit_c else 0.0
                if bounce == "random":
                    vel[k] = _velocity(rng, speed, size, sr, sc)
                else:
                    vel[k] *= np.where([hit_r, hit_c], -1.0, 1.0)
            pos[k] = nxt


def _draw(frame: np.ndarray, glyph: np.ndarray, pos: np.ndarray) -> None:
    """Max-composite ``glyph`` (d, d) onto ``frame`` at the sub-pixel top-left ``pos`` (row,
    col) with bilinear interpolation (so slow digits still move smoothly)."""
    d = glyph.shape[0]
    r0, c0 = int(np.floor(pos[0])), int(np.floor(pos[1]))
    fr, fc = pos[0] - r0, pos[1] - c0
    patch = np.zeros((d + 1, d + 1), np.float32)
    patch[:d, :d] += (1 - fr) * (1 - fc) * glyph
    patch[1:, :d] += fr * (1 - fc) * glyph
    patch[:d, 1:] += (1 - fr) * fc * glyph
    patch[1:, 1:] += fr * fc * glyph
    h = min(d + 1, frame.shape[0] - r0)
    w = min(d + 1, frame.shape[1] - c0)
    np.maximum(frame[r0:r0 + h, c0:c0 + w], patch[:h, :w], out=frame[r0:r0 + h, c0:c0 + w])


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (H, W[, C]) to a square and resize to (size, size[, C])."""
    from engine._cv2 import cv2

    h, w = frame.shape[:2]
    s = min(h, w)
    r0, c0 = (h - s) // 2, (w - s) // 2
    crop = frame[r0:r0 + s, c0:c0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def native_shape(height: int, width: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(height, width) scaled down (aspect kept) so the longer side is at most ``max_side``."""
    if max(height, width) <= max_side:
        return int(height), int(width)
    s = max_side / max(height, width)
    return max(1, int(round(height * s))), max(1, int(round(width * s)))


def resize_reason(height: int, width: int, max_side: int = MAX_SIDE) -> str:
    """One sentence saying why a (height, width) video is scaled, or "" when it is not."""
    h, w = native_shape(height, width, max_side)
    if (h, w) == (height, width):
        return ""
    return (f"The video is {height} x {width} pixels; the model works on at most {max_side} "
            f"pixels a side, so it was scaled to {h} x {w}.")


def fit_frame(frame: np.ndarray, size, color: bool, max_side: int = MAX_SIDE) -> np.ndarray:
    """One frame (H, W), (H, W, 1) or (H, W, 3) RGB, uint8 0..255 or float in [0, 1] ->
    float32 in [0, 1], grey (mean of the channels) or RGB (grey frames repeated).

    ``size`` None: the frame's own resolution (aspect kept), scaled down only when its longer
    side exceeds ``max_side`` (:func:`native_shape`). ``size`` int: centre-cropped to a square
    and resized to (size, size). Only this one frame is converted to float, so long
    full-resolution videos are never held as float."""
    f = np.asarray(frame)
    if f.ndim == 3 and f.shape[2] == 1:
        f = f[..., 0]
    h, w = f.shape[:2]
    if size is not None:
        s = min(h, w)
        r0, c0 = (h - s) // 2, (w - s) // 2
        f = f[r0:r0 + s, c0:c0 + s]
    f = f.astype(np.float32)
    if f.ndim == 3 and not color:
        f = f.mean(axis=2)
    elif f.ndim == 2 and color:
        f = np.repeat(f[..., None], 3, axis=2)
    if size is not None:
        f = _square(f, size)
    else:
        nh, nw = native_shape(h, w, max_side)
        if (nh, nw) != (h, w):
            from engine._cv2 import cv2

            f = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA)
    if frame.dtype == np.uint8:
        f *= 1.0 / 255.0
    return np.clip(f, 0.0, 1.0, out=f)


def fit_native(frames, max_side: int = MAX_SIDE, color: bool | None = None
               ) -> tuple[np.ndarray, bool, str]:
    """Frames (T, H, W[, 1|3]) uint8 or float in [0, 1] at their own resolution ->
    (float32 frames (T, H', W'[, 3]) in [0, 1], resized, reason). ``color`` None keeps the
    frames' own kind. (H', W') = (H, W) unless the longer side exceeds ``max_side``."""
    arr = np.asarray(frames)
    if color is None:
        color = arr.ndim == 4 and arr.shape[3] == 3
    h, w = arr.shape[1:3]
    out = np.stack([fit_frame(f, None, color, max_side) for f in arr]).astype(np.float32,
                                                                            copy=False)
    reason = resize_reason(h, w, max_side)
    return out, bool(reason), reason


def fit_frames(frames, size, color: bool) -> np.ndarray:
    """Frames (T, H, W[, 1|3]) uint8 or float in [0, 1] -> float32 (T, size, size) or
    (T, size, size, 3) in [0, 1] (see :func:`fit_frame`)."""
    return np.stack([fit_frame(f, size, color) for f in frames]).astype(np.float32, copy=False)


def load_video(path: str | Path, size: int | None = None, color: bool = False,
               min_frames: int = 1, max_frames: int | None = None,
               cancel=None, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read a video file into float32 frames in [0, 1]: (T, H, W) or (T, H, W, 3) RGB.

    ``size`` None: the video's own resolution, scaled down (aspect kept) only when its longer
    side exceeds ``max_side`` (see :func:`load_video_info` for the reason); ``size`` int:
    centre-cropped to a square and resized to size x size. Video files go through OpenCV (each
    frame is fitted as it is read); ``.npz`` (key ``frames``) and ``.npy`` clips hold arrays
    (T, H, W[, C]) of uint8 0..255 or values in [0, 1]. At most ``max_frames`` frames are read.
    ``cancel`` (a CancelToken) is checked once per frame. Raises :class:`InputError` (one
    sentence) for a missing, corrupt or unreadable file, values out of range, and a clip with
    fewer than ``min_frames`` frames.
    """
    return load_video_info(path, size, color, min_frames, max_frames, cancel, max_side)[0]


def load_video_info(path: str | Path, size: int | None = None, color: bool = False,
                    min_frames: int = 1, max_frames: int | None = None, cancel=None,
                    max_side: int = MAX_SIDE) -> tuple[np.ndarray, bool, str]:
    """:func:`load_video` plus (resized, reason): whether the frames were scaled from the
    video's own resolution, and one sentence why ("" when not)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The video '{path}' does not exist.")
    if path.suffix.lower() in (".npz", ".npy"):
        raw = _load_array_clip(path)[:max_frames]
        frames = []
        for f in raw:
            if cancel is not None:
                cancel.check()
            frames.append(fit_frame(f, size, color, max_side))
        shape = raw.shape[1:3]
    else:
        frames, shape = _load_cv2_clip(path, size, color, max_frames, cancel, max_side)
    if len(frames) < min_frames:
        raise InputError(f"The video '{path}' has {len(frames)} frames but at least {min_frames} "
                         f"are needed (context + horizon).")
    if size is not None:
        h, w = shape
        reason = ("" if (h, w) == (size, size) else
                  f"The video is {h} x {w} pixels; it was cropped and scaled to {size} x {size}.")
    else:
        reason = resize_reason(*shape, max_side)
    return np.stack(frames).astype(np.float32, copy=False), bool(reason), reason


def _load_array_clip(path: Path) -> np.ndarray:
    """The raw (T, H, W[, C]) array of a .npz / .npy clip, uint8 or float in [0, 1]."""
    arr = _read_array(path, "frames")
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] not in (1, 3)):
        raise InputError(f"The clip '{path}' must hold frames shaped (T, H, W) or (T, H, W, 3), "
                         f"not {arr.shape}.")
    return _checked_values(arr, path)


def load_clip_set(path: str | Path, time_first: bool = False, min_frames: int = 1,
                  max_clips: int | None = None, max_side: int = MAX_SIDE) -> np.ndarray:
    """The first ``max_clips`` (default: all) greyscale clips of one size from a .npy, or a
    .npz with a ``clips`` array, to score a model on: (B, T, H, W[, 1]), or (T, B, H, W) with
    ``time_first`` (the layout of Srivastava et al.'s ``mnist_test_seq.npy``); uint8 0..255
    or values in [0, 1] -> float32 (B, T, H, W) in [0, 1]. InputError (one sentence) for a
    missing or unreadable file, another shape, fewer than ``min_frames`` frames, a side under
    8 or over ``max_side`` px (no silent resizing of what is scored), NaN or values out of
    range."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The clips file '{path}' does not exist.")
    arr = _read_array(path, "clips")
    if arr.ndim == 5 and arr.shape[4] == 1:
        arr = arr[..., 0]
    layout = "(T, B, H, W)" if time_first else "(B, T, H, W)"
    if arr.ndim != 4 or 0 in arr.shape:
        raise InputError(f"The clips file '{path}' must hold greyscale clips shaped {layout}, "
                         f"not {arr.shape}.")
    arr = (arr.transpose(1, 0, 2, 3) if time_first else arr)[:max_clips]
    if arr.shape[1] < min_frames:
        raise InputError(f"The clips in '{path}', read as {layout}, have {arr.shape[1]} frames "
                         f"but at least {min_frames} are needed (context + horizon).")
    if not 8 <= min(arr.shape[2:]) <= max(arr.shape[2:]) <= max_side:
        raise InputError(f"The clips in '{path}', read as {layout}, are {arr.shape[2]} x "
                         f"{arr.shape[3]} pixels, but the video model works at 8 to {max_side} "
                         f"px a side.")
    arr = _checked_values(arr, path)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def _read_array(path: Path, key: str) -> np.ndarray:
    """The array of a .npy, or a .npz's array ``key``."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                if key not in z:
                    raise InputError(f"The file '{path}' has no '{key}' array.")
                return np.asarray(z[key])
        arr = np.load(path, mmap_mode="r")  # a large file is read only as far as it is used
    except InputError:
        raise
    except Exception:
        raise InputError(f"The file '{path}' is corrupt or not a NumPy file.") from None
    if not isinstance(arr, np.ndarray):  # a .npz archive named .npy
        raise InputError(f"The file '{path}' is an archive of arrays, not one array: name it "
                         f".npz.")
    return arr


def _checked_values(arr: np.ndarray, path: Path) -> np.ndarray:
    """``arr`` itself when uint8 or finite numbers in [0, 1]; InputError otherwise."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "biuf":
        raise InputError(f"The clip '{path}' must hold numbers, not {arr.dtype}.")
    if arr.size and not np.isfinite(arr).all():
        raise InputError(f"The clip '{path}' contains NaN or infinite values.")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise InputError(f"The clip '{path}' has values from {float(arr.min()):g} to "
                         f"{float(arr.max()):g}, but values must be in [0, 1] or uint8 0..255.")
    return arr


def _load_cv2_clip(path: Path, size, color: bool, max_frames: int | None,
                   cancel=None, max_side: int = MAX_SIDE) -> tuple[list[np.ndarray], tuple]:
    """Frames of a video file, each fitted (:func:`fit_frame`) as soon as it is decoded, and
    the decoded frame shape (H, W)."""
    from engine._cv2 import cv2

    cap = cv2.VideoCapture(str(path))
    frames, shape = [], (0, 0)
    try:
        if not cap.isOpened():
            raise InputError(f"The video '{path}' could not be opened: it is corrupt or not a "
                             f"video file.")
        while max_frames is None or len(frames) < max_frames:
            if cancel is not None:
                cancel.check()
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            rgb = bgr[..., ::-1] if bgr.ndim == 3 else bgr  # uint8
            shape = rgb.shape[:2]
            frames.append(fit_frame(rgb, size, color, max_side))
    finally:
        cap.release()
    if not frames:
        raise InputError(f"The video '{path}' has no readable frames: it is corrupt or not a "
                         f"video file.")
    return frames, shape


def to_channels(frames: np.ndarray) -> np.ndarray:
    """(..., H, W) or (..., H, W, 3) -> (..., C, H, W) float32, for the model."""
    return (np.moveaxis(frames, -1, -3) if frames.ndim >= 4 and frames.shape[-1] == 3
            else frames[..., None, :, :]).astype(np.float32)


def from_channels(x: np.ndarray) -> np.ndarray:
    """(..., C, H, W) -> (..., H, W) for C = 1 or (..., H, W, 3) for C = 3."""
    return x[..., 0, :, :] if x.shape[-3] == 1 else np.moveaxis(x, -3, -1)


def windows(frames: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """All windows of ``length`` consecutive frames: (T, ...) -> (n, length, ...)."""
    n = (len(frames) - length) // stride + 1
    if n <= 0:
        return np.zeros((0, length) + frames.shape[1:], frames.dtype)
    return np.stack([frames[i * stride:i * stride + length] for i in range(n)])


# --- metrics --------------------------------------------------------------------------------
def psnr(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR in dB of frames in [0, 1], one value per leading index: (T, H, W[, C]) -> (T,)."""
    err = ((np.asarray(pred, np.float64) - truth) ** 2).reshape(len(truth), -1).mean(1)
    return 10.0 * np.log10(1.0 / np.maximum(err, 1e-10))


def ssim(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean SSIM (Wang et al. 2004: 11 x 11 Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03,
    data range 1) of frames in [0, 1], one value per leading index: (T, H, W[, C]) -> (T,);
    colour frames: the mean over channels."""
    from engine._cv2 import cv2

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for a, b in zip(np.asarray(pred, np.float64), np.asarray(truth, np.float64)):
        blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5)  # noqa: E731
        ma, mb = blur(a), blur(b)
        va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
        out.append(s.mean())
    return np.array(out)
