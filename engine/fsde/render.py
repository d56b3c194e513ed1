"""The one renderer of video forecasts: what the Video workbench shows and what ``fsde
predict`` and the workbench's Export write are the same RGB images (no Qt here).

A composed frame is a row of titled panels -- ground truth | sample mean | one sample |
per-pixel std (the std through the inferno colour map over :data:`STD_RANGE`) -- above a
status strip and a time bar. Predicted frames get an orange border around every panel and
the label "PREDICTED t+k"; context frames a grey border and "context i/N". Panels are scaled
by ``scale`` (any float > 0) with nearest-neighbour pixels or smooth (bilinear) interpolation;
the titles are drawn at the output resolution (OpenCV's Hershey font), so they stay sharp.

Images are uint8 RGB (H, W, 3) with even H and W (what video codecs want).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

STD_RANGE = (0.0, 0.5)  # per-pixel std mapped to the colour map's ends
PREDICTED_RGB = (255, 140, 20)  # orange: predicted frames (border, label, time bar)
CONTEXT_RGB = (110, 110, 110)  # grey: context frames
BACKGROUND_RGB = (16, 16, 16)
TEXT_RGB = (225, 225, 225)
MAX_FPS = 240.0

# matplotlib's "inferno" sampled at 17 evenly spaced points (linear in between)
_INFERNO_17 = np.array([
    [0, 0, 4], [10, 7, 35], [32, 12, 73], [60, 9, 100], [86, 15, 109], [112, 25, 110],
    [137, 34, 106], [162, 43, 97], [187, 54, 84], [208, 69, 68], [227, 89, 50],
    [241, 113, 30], [249, 140, 9], [252, 170, 15], [249, 201, 50], [242, 232, 101],
    [252, 255, 164]], np.float64)
INFERNO = np.stack([np.interp(np.linspace(0, 16, 256), np.arange(17), _INFERNO_17[:, c])
                    for c in range(3)], axis=1).round().astype(np.uint8)  # (256, 3)


def colorize(values: np.ndarray, lo: float, hi: float, lut: np.ndarray = INFERNO) -> np.ndarray:
    """Map values (...) linearly from [lo, hi] onto ``lut`` (256, 3): -> float32 RGB (..., 3)
    in [0, 1] (values outside the range take the end colours)."""
    x = np.clip((np.asarray(values, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return lut[np.rint(x * 255).astype(np.intp)].astype(np.float32) / 255.0


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """A frame (H, W) grey or (H, W, 3) in [0, 1] -> float32 RGB (H, W, 3) clipped to [0, 1]."""
    f = np.clip(np.asarray(frame, np.float32), 0.0, 1.0)
    return np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f


def std_rgb(std: np.ndarray) -> np.ndarray:
    """Per-pixel std (H, W) or (H, W, 3) (channel mean) -> inferno RGB (H, W, 3)."""
    s = np.asarray(std, np.float32)
    return colorize(s.mean(-1) if s.ndim == 3 else s, *STD_RANGE)


def prediction_panels(pred, t: int, sample: int = 0) -> list[tuple[str, np.ndarray]]:
    """The four (title, RGB (H, W, 3)) panels of frame ``t`` of a
    :class:`engine.fsde.prediction.Prediction`."""
    k = int(np.clip(sample, 0, len(pred.samples) - 1))
    one = pred.sample_clip(k)[t]
    return [("ground truth", as_rgb(pred.frames[t])), ("sample mean", as_rgb(pred.mean[t])),
            (f"sample {k}", as_rgb(one)),
            (f"per-pixel std (0-{STD_RANGE[1]:g})", std_rgb(pred.std[t]))]


# ------------------------------------------------------------------ layout
def _layout(h: int, w: int, n: int, scale: float) -> dict:
    ph, pw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    b = max(2, int(round(min(ph, pw) / 40)))  # marker border
    g = max(4, int(round(min(ph, pw) / 16)))  # gap between panels
    head = max(14, int(round(min(ph, pw) / 9)))  # title strip, status strip
    bar = max(4, head // 3)
    width = n * (pw + 2 * b) + (n + 1) * g
    height = head + ph + 2 * b + head + bar + g
    return {"ph": ph, "pw": pw, "b": b, "g": g, "head": head, "bar": bar,
            "width": width + width % 2, "height": height + height % 2}


def frame_size(h: int, w: int, n: int = 4, scale: float = 4.0) -> tuple[int, int]:
    """(height, width) of a composed frame of ``n`` panels of (h, w) pixels at ``scale``."""
    lay = _layout(h, w, n, scale)
    return lay["height"], lay["width"]


def fit_scale(h: int, w: int, box_h: int, box_w: int, n: int = 4) -> float:
    """The largest scale whose composed frame fits in (box_h, box_w) pixels (>= 0.25)."""
    lo, hi = 0.25, 64.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        fh, fw = frame_size(h, w, n, mid)
        lo, hi = (mid, hi) if fh <= box_h and fw <= box_w else (lo, mid)
    return lo


def export_scale(h: int, w: int, min_panel: int = 256) -> int:
    """Integer scale making each exported panel at least ``min_panel`` pixels on its short side."""
    return max(1, math.ceil(min_panel / max(1, min(h, w))))


def _resize(img: np.ndarray, ph: int, pw: int, smooth: bool) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (ph, pw):
        return img
    if smooth:
        from engine._cv2 import cv2

        return np.clip(cv2.resize(img, (pw, ph), interpolation=cv2.INTER_LINEAR), 0, 1)
    rows = np.minimum((np.arange(ph) * h / ph).astype(np.intp), h - 1)
    cols = np.minimum((np.arange(pw) * w / pw).astype(np.intp), w - 1)
    return img[rows][:, cols]


def _text(canvas: np.ndarray, text: str, x: int, y_mid: int, height: int, rgb,
          center_w: int | None = None) -> None:
    """Draw ``text`` (cap height ~ 0.55 * height) left-aligned at x, or centred in
    [x, x + center_w), vertically centred on y_mid, onto uint8 ``canvas``."""
    from engine._cv2 import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    size = max(0.3, 0.55 * height / 22.0)
    thick = 1 if height < 30 else 2
    (tw, th), _ = cv2.getTextSize(text, font, size, thick)
    if center_w is not None:
        while tw > center_w and size > 0.3:  # shrink long titles to their panel
            size *= 0.9
            (tw, th), _ = cv2.getTextSize(text, font, size, thick)
        x = x + max(0, (center_w - tw) // 2)
    cv2.putText(canvas, text, (int(x), int(y_mid + th // 2)), font, size,
                tuple(int(c) for c in rgb), thick, cv2.LINE_AA)


def compose(panels: list[tuple[str, np.ndarray]], t: int, n_frames: int, context: int,
            scale: float = 4.0, smooth: bool = False) -> np.ndarray:
    """Compose titled panels (title, RGB (H, W, 3) in [0, 1]) of frame ``t`` of ``n_frames``
    (the first ``context`` are context frames) -> uint8 RGB (height, width, 3)."""
    h, w = panels[0][1].shape[:2]
    lay = _layout(h, w, len(panels), scale)
    ph, pw, b, g, head, bar = (lay[k] for k in ("ph", "pw", "b", "g", "head", "bar"))
    canvas = np.empty((lay["height"], lay["width"], 3), np.uint8)
    canvas[:] = BACKGROUND_RGB
    predicted = t >= context
    mark = PREDICTED_RGB if predicted else CONTEXT_RGB
    top = head
    for i, (title, img) in enumerate(panels):
        x = g + i * (pw + 2 * b + g)
        canvas[top:top + ph + 2 * b, x:x + pw + 2 * b] = mark
        tile = _resize(np.asarray(img, np.float32), ph, pw, smooth)
        canvas[top + b:top + b + ph, x + b:x + b + pw] = (tile * 255 + 0.5).astype(np.uint8)
        _text(canvas, title, x, head // 2, head, TEXT_RGB, center_w=pw + 2 * b)
    y = top + ph + 2 * b
    status = (f"PREDICTED t+{t - context + 1}  (frame {t + 1}/{n_frames})" if predicted else
              f"context {t + 1}/{context}  (frame {t + 1}/{n_frames})")
    _text(canvas, status, g, y + head // 2, head, mark)
    # time bar: context part grey, predicted part orange, the current frame bright
    y0, x0, x1 = y + head, g, lay["width"] - g
    edges = np.linspace(x0, x1, n_frames + 1).round().astype(int)
    for j in range(n_frames):
        col = np.array(PREDICTED_RGB if j >= context else CONTEXT_RGB, np.float32)
        col = col if j == t else col * 0.45
        canvas[y0:y0 + bar, edges[j]:max(edges[j] + 1, edges[j + 1] - 1)] = col.astype(np.uint8)
    return canvas


def render_frame(pred, t: int, sample: int = 0, scale: float = 4.0,
                 smooth: bool = False) -> np.ndarray:
    """Frame ``t`` of a prediction, composed: uint8 RGB (height, width, 3)."""
    return compose(prediction_panels(pred, t, sample), t, pred.n_frames, pred.context,
                   scale, smooth)


def render_clip_frame(frames: np.ndarray, t: int, scale: float = 4.0,
                      smooth: bool = False, title: str = "video") -> np.ndarray:
    """Frame ``t`` of a clip (T, H, W[, 3]) with no forecast yet: one panel, all context."""
    return compose([(title, as_rgb(frames[t]))], t, len(frames), len(frames), scale, smooth)


def render_prediction(pred, sample: int = 0, scale: float | None = None,
                      smooth: bool = False) -> np.ndarray:
    """Every frame composed (the export): uint8 RGB (N+M, height, width, 3); ``scale``
    defaults to :func:`export_scale`."""
    h, w = pred.frames.shape[1:3]
    s = export_scale(h, w) if scale is None else scale
    return np.stack([render_frame(pred, t, sample, s, smooth) for t in range(pred.n_frames)])


# ------------------------------------------------------------------ writing
def check_fps(fps: float) -> float:
    """``fps`` as a float if finite and in (0, MAX_FPS], else ValueError."""
    fps = float(fps)
    if not (math.isfinite(fps) and 0.0 < fps <= MAX_FPS):
        raise ValueError(f"frames per second must be a finite number in (0, {MAX_FPS:g}], "
                         f"not {fps}")
    return fps


def encode_mp4(path: str | Path, frames_rgb: np.ndarray, fps: float) -> None:
    """Encode uint8 RGB frames (T, H, W, 3) as MP4 (mp4v) straight into ``path`` (not atomic:
    use :func:`write_mp4`, or give a temporary path). OSError if OpenCV cannot write it."""
    from engine._cv2 import cv2

    fps = check_fps(fps)
    T, H, W = frames_rgb.shape[:3]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H), True)
    if not vw.isOpened():
        raise OSError(f"OpenCV could not open an MP4 writer for '{path}'")
    try:
        for f in frames_rgb:
            vw.write(np.ascontiguousarray(f[..., ::-1]))
    finally:
        vw.release()
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        raise OSError(f"OpenCV wrote no MP4 data to '{path}'")


def write_mp4(path: str | Path, frames_rgb: np.ndarray, fps: float = 5.0) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as an MP4, atomically."""
    from db.atomic import write_with

    check_fps(fps)
    write_with(path, lambda tmp: encode_mp4(tmp, frames_rgb, fps))


def png_bytes(image_rgb: np.ndarray) -> bytes:
    """PNG encoding of a uint8 RGB (H, W, 3) image."""
    from engine._cv2 import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise OSError("could not encode a PNG image")
    return buf.tobytes()


def write_pngs(folder: str | Path, frames_rgb: np.ndarray,
               name: str = "frame_{:03d}.png") -> list[Path]:
    """Write each frame as ``folder/frame_000.png`` ... (each atomically): -> the paths."""
    from db.atomic import write_bytes

    folder = Path(folder)
    paths = []
    for t, img in enumerate(frames_rgb):
        p = folder / name.format(t)
        write_bytes(p, png_bytes(img))
        paths.append(p)
    return paths
