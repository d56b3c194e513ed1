"""The result of a video forecast, computed once in the engine and shared by ``fsde predict``,
the Video workbench and the exporters (engine/fsde/render.py).

:class:`Prediction` holds (all float32 in [0, 1]; grey frames (.., H, W), colour (.., H, W, 3)):

* ``frames``  (N+M, H, W[, 3])  ground truth: N context frames then M frames to predict
* ``samples`` (S, M, H, W[, 3]) S sampled forecasts of the M future frames
* ``recon``   (S, N, H, W[, 3]) the model's reconstructions of the context (or None)
* ``mean`` / ``std`` (N+M, H, W[, 3]) over the samples (context part: over ``recon``, or the
  ground truth with std 0 when there are no reconstructions)
* ``metrics``: ``metrics["psnr"][name]`` (dB) and ``metrics["ssim"][name]``, each (M,), for
  ``name`` in :data:`METHODS`: the sample mean ("model") and the trivial baselines copy the
  last context frame, an all-black frame and the mean of the context frames;
  ``best_sample_psnr`` (M,): per frame the best PSNR over the samples.
* ``context`` N; ``resized`` / ``resize_reason`` (was the video scaled to the model's size,
  and why; ``source_size`` (H0, W0) of the video); ``settings`` (JSON-able dict: model,
  seed, samples, ...); ``history`` (training curves, optional: name -> (steps,)).

``Prediction.from_samples(...)`` computes mean, std and every metric; ``save`` / ``load``
round-trip through one .npz (older files with only frames/samples/recon load too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.jobs import InputError

METHODS = ("model", "copy_last", "black", "context_mean")
LABELS = {"model": "sample mean", "copy_last": "copy last frame", "black": "black frame",
          "context_mean": "context mean"}


def baseline_frames(frames: np.ndarray, context: int) -> dict[str, np.ndarray]:
    """The trivial forecasts of frames[context:]: name -> (M, H, W[, 3])."""
    m = len(frames) - context
    ctx = frames[:context]
    return {"copy_last": np.repeat(ctx[-1:], m, axis=0),
            "black": np.zeros_like(frames[context:]),
            "context_mean": np.repeat(ctx.mean(0, keepdims=True), m, axis=0)}


def compute_metrics(frames: np.ndarray, samples: np.ndarray, mean_future: np.ndarray,
                    context: int) -> tuple[dict, np.ndarray]:
    """PSNR and SSIM per predicted frame for the sample mean and each baseline, and the
    best-of-samples PSNR: -> ({"psnr": {name: (M,)}, "ssim": {...}}, (M,))."""
    from engine.fsde.video_data import psnr, ssim

    truth = frames[context:]
    preds = {"model": mean_future, **baseline_frames(frames, context)}
    metrics = {"psnr": {k: psnr(v, truth).astype(np.float64) for k, v in preds.items()},
               "ssim": {k: ssim(v, truth).astype(np.float64) for k, v in preds.items()}}
    best = np.max([psnr(s, truth) for s in samples], axis=0).astype(np.float64)
    return metrics, best


@dataclass
class Prediction:
    frames: np.ndarray
    samples: np.ndarray
    recon: np.ndarray | None
    context: int
    mean: np.ndarray
    std: np.ndarray
    metrics: dict
    best_sample_psnr: np.ndarray
    resized: bool = False
    resize_reason: str = ""
    source_size: tuple[int, int] | None = None
    settings: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_samples(cls, frames, samples, context: int, recon=None, *, resized: bool = False,
                     resize_reason: str = "", source_size=None, settings: dict | None = None,
                     history: dict | None = None) -> "Prediction":
        """Build a prediction from ground truth ``frames`` (N+M, ...) and ``samples``
        (S, M, ...) [and ``recon`` (S, N, ...)]; computes mean, std and the metrics."""
        frames = np.asarray(frames, np.float32)
        samples = np.asarray(samples, np.float32)
        context = int(context)
        m = len(frames) - context
        if samples.ndim != frames.ndim + 1 or samples.shape[1] != m or \
                samples.shape[2:] != frames.shape[1:] or context < 1 or m < 1:
            raise ValueError(f"samples {samples.shape} do not match frames {frames.shape} "
                             f"with context {context}")
        if recon is not None:
            recon = np.asarray(recon, np.float32)
            if recon.shape != (len(samples), context) + frames.shape[1:]:
                recon = None
        full = np.concatenate([recon if recon is not None else
                               np.repeat(frames[None, :context], len(samples), axis=0),
                               samples], axis=1)
        mean, std = full.mean(0), full.std(0)
        metrics, best = compute_metrics(frames, samples, mean[context:], context)
        return cls(frames, samples, recon, context, mean.astype(np.float32),
                   std.astype(np.float32), metrics, best, bool(resized), str(resize_reason),
                   None if source_size is None else tuple(int(v) for v in source_size),
                   dict(settings or {}),
                   {k: np.asarray(v, np.float32) for k, v in (history or {}).items()})

    # ------------------------------------------------------------------ views
    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def horizon(self) -> int:
        return len(self.frames) - self.context

    @property
    def psnr(self) -> np.ndarray:
        """PSNR (M,) of the sample mean, dB."""
        return self.metrics["psnr"]["model"]

    @property
    def ssim(self) -> np.ndarray:
        return self.metrics["ssim"]["model"]

    def sample_clip(self, k: int) -> np.ndarray:
        """Sample ``k`` over all N+M frames (its reconstruction, or the truth, in the context)."""
        head = self.recon[k] if self.recon is not None else self.frames[:self.context]
        return np.concatenate([head, self.samples[k]])

    def summary(self) -> dict:
        """Mean metrics per method (JSON-able): {"psnr": {name: dB}, "ssim": {...}}."""
        out = {kind: {k: float(np.mean(v)) for k, v in table.items()}
               for kind, table in self.metrics.items()}
        out["best_sample_psnr"] = float(np.mean(self.best_sample_psnr))
        return out

    # ------------------------------------------------------------------ files
    def arrays(self) -> dict:
        """Everything as named numpy arrays (what :meth:`save` writes)."""
        out = {"frames": self.frames, "samples": self.samples, "mean": self.mean,
               "std": self.std, "context": np.int64(self.context),
               "best_sample_psnr": np.asarray(self.best_sample_psnr, np.float64),
               "psnr": np.asarray(self.psnr, np.float64),
               "ssim": np.asarray(self.ssim, np.float64),
               "resized": np.bool_(self.resized), "resize_reason": np.str_(self.resize_reason),
               "settings_json": np.str_(json.dumps(self.settings, allow_nan=False))}
        if self.recon is not None:
            out["recon"] = self.recon
        if self.source_size is not None:
            out["source_size"] = np.asarray(self.source_size, np.int64)
        for kind, table in self.metrics.items():
            for name, v in table.items():
                out[f"{kind}_{name}"] = np.asarray(v, np.float64)
        for k, v in self.history.items():
            out[f"history_{k}"] = np.asarray(v, np.float32)
        return out

    def save(self, path: str | Path) -> None:
        """Write the prediction as one .npz, atomically."""
        from db.atomic import write_npz

        write_npz(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> "Prediction":
        """Read a .npz written by :meth:`save` (or an older ``fsde predict`` file with
        ``frames``, ``samples`` [, ``recon``, ``context``]); InputError naming the file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: np.asarray(z[k]) for k in z.files}
        except FileNotFoundError:
            raise InputError(f"The prediction '{path}' does not exist.") from None
        except Exception:
            raise InputError(f"The prediction '{path}' is not a readable .npz file.") from None
        if "frames" not in a or "samples" not in a:
            raise InputError(f"The prediction '{path}' has no 'frames' and 'samples' arrays.")
        frames, samples = a["frames"], a["samples"]
        context = int(a["context"]) if "context" in a else len(frames) - samples.shape[1]
        try:
            settings = json.loads(str(a["settings_json"])) if "settings_json" in a else {}
            history = {k[8:]: v for k, v in a.items() if k.startswith("history_")}
            extra = dict(resized=bool(a.get("resized", False)),
                         resize_reason=str(a.get("resize_reason", "")),
                         source_size=a.get("source_size"), settings=settings, history=history)
            pred = cls._stored(a, context, extra) or cls.from_samples(
                frames, samples, context, a.get("recon"), **extra)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise InputError(f"The prediction '{path}' holds arrays of inconsistent shapes "
                             f"({frames.shape} frames, {samples.shape} samples).") from None
        if not (np.isfinite(pred.frames).all() and np.isfinite(pred.samples).all()):
            raise InputError(f"The prediction '{path}' contains NaN or infinite values.")
        return pred


    @classmethod
    def _stored(cls, a: dict, context: int, extra: dict) -> "Prediction | None":
        """The prediction exactly as saved, when every computed array is in ``a``."""
        keys = [f"{kind}_{name}" for kind in ("psnr", "ssim") for name in METHODS]
        if not all(k in a for k in ("mean", "std", "best_sample_psnr", *keys)):
            return None
        frames, samples = a["frames"].astype(np.float32), a["samples"].astype(np.float32)
        m = len(frames) - context
        if a["mean"].shape != frames.shape or a["std"].shape != frames.shape or \
                samples.shape[1:] != (m,) + frames.shape[1:] or \
                any(a[k].shape != (m,) for k in keys):
            raise ValueError("inconsistent shapes")
        metrics = {kind: {name: a[f"{kind}_{name}"].astype(np.float64) for name in METHODS}
                   for kind in ("psnr", "ssim")}
        recon = a.get("recon")
        src = extra["source_size"]
        return cls(frames, samples, None if recon is None else recon.astype(np.float32),
                   context, a["mean"].astype(np.float32), a["std"].astype(np.float32), metrics,
                   a["best_sample_psnr"].astype(np.float64), extra["resized"],
                   extra["resize_reason"], None if src is None else tuple(int(v) for v in src),
                   extra["settings"], extra["history"])


def is_prediction_file(path: str | Path) -> bool:
    """True when ``path`` is an .npz holding ``frames`` and ``samples`` (a prediction)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return "samples" in z.files and "frames" in z.files
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a prediction
        return False


# ------------------------------------------------------------------ reading and forecasting
@dataclass
class Clip:
    """Frames as the model takes them (T, H, W[, 3]) float32 in [0, 1], and whether (and
    why) the video was resized to get them; ``source_size`` (H0, W0) of the file."""

    frames: np.ndarray
    resized: bool = False
    resize_reason: str = ""
    source_size: tuple[int, int] | None = None


def source_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) of a video file or .npz/.npy clip, or None when it cannot be told."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            return tuple(int(v) for v in np.load(path, mmap_mode="r").shape[1:3])
        if path.suffix.lower() == ".npz":
            with np.load(path) as z:
                return tuple(int(v) for v in z["frames"].shape[1:3])
        from engine._cv2 import cv2

        cap = cv2.VideoCapture(str(path))
        try:
            h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        finally:
            cap.release()
        return (h, w) if h > 0 and w > 0 else None
    except Exception:  # noqa: BLE001 - only a note for the user; reading reports real errors
        return None


def read_clip(path: str | Path, config: dict, min_frames: int = 1,
              max_frames: int | None = None, cancel=None) -> Clip:
    """Read a video for a model with ``config`` (see video_model) at its own resolution
    (scaled down only above video_data.MAX_SIDE, which the Clip records): -> :class:`Clip`.
    InputError (one sentence) for a missing, corrupt or too short video."""
    from engine.fsde import video_data

    frames, resized, why = video_data.load_video_info(
        path, color=config.get("channels", 1) == 3, min_frames=min_frames,
        max_frames=max_frames, cancel=cancel)
    return Clip(frames, bool(resized), str(why).rstrip("."), source_size(path))


def forecast(model, clip: Clip | np.ndarray, context: int, horizon: int, samples: int = 8,
             seed: int = 0, settings: dict | None = None) -> Prediction:
    """Condition ``model`` on the first ``context`` frames of ``clip`` and sample ``horizon``
    more, ``samples`` times -> :class:`Prediction` (metrics and all)."""
    from engine.fsde.video_model import predict_clip

    clip = clip if isinstance(clip, Clip) else Clip(np.asarray(clip, np.float32))
    res = predict_clip(model, clip.frames, context, horizon, samples, seed)
    resized = bool(res.get("resized", False)) or clip.resized
    why = "; ".join(r for r in (clip.resize_reason, str(res.get("resize_reason", ""))
                                .rstrip(".")) if r)
    info = {"context": context, "horizon": horizon, "samples": samples, "seed": seed,
            "hurst": float(model.hurst), "brownian": bool(model.config.get("brownian"))}
    return Prediction.from_samples(res["frames"], res["samples"], context, res.get("recon"),
                                   resized=resized, resize_reason=why,
                                   source_size=clip.source_size or res.get("source_size"),
                                   settings={**info, **(settings or {})})
