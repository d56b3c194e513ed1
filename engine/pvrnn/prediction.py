"""The result of online error regression, as one small type used by `pvrnn predict`, the
Sequence workbench and the demo resources: :class:`Prediction` (arrays + settings) with
atomic ``save`` / validating ``load`` of the PRED.npz layout, and :func:`predict`, the job
that makes one from a trained checkpoint.

PRED.npz arrays (data units): ``observed`` (N, T, D), NaN after each sequence's end;
``predictions`` (N, T, H, D), ``predictions[n, t, h]`` made after steps 0..t for step
t + h + 1 (NaN where t + h + 1 >= the length); ``kl`` (N, T, L) KL(q || p) summed over each
layer's z units; ``latency_ms`` (N, T) wall time of the step for its chunk; optional
``reconstruction`` (N, T, W, D) the window's posterior reconstruction (row W-1 is step t);
``lengths`` (N,); scalars ``window``, ``iterations``, ``lr``, ``horizon`` and, when set,
``meta_prior`` and ``chunk``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress
from engine.pvrnn.config import ERSettings, out_of_range

ARRAYS = ("observed", "predictions", "kl", "latency_ms")
SETTINGS = ("window", "iterations", "lr", "horizon")


@dataclass
class Prediction:
    observed: np.ndarray      # (N, T, D) data units
    predictions: np.ndarray   # (N, T, H, D) data units
    kl: np.ndarray            # (N, T, L) nats
    latency_ms: np.ndarray    # (N, T) milliseconds
    lengths: np.ndarray       # (N,) steps per sequence
    settings: ERSettings
    reconstruction: np.ndarray | None = None  # (N, T, W, D) data units
    chunk: int | None = None  # sequences run together (None: all)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(N sequences, T steps, H horizon, D channels, L layers)."""
        N, T, H, D = self.predictions.shape
        return N, T, H, D, self.kl.shape[2]

    def expected_finite(self) -> np.ndarray:
        """(N, T, H) bool: where a prediction must exist (its target step t + h + 1 is
        inside the sequence)."""
        N, T, H, _, _ = self.shape
        target = np.arange(T)[:, None] + np.arange(H)[None, :] + 1          # (T, H)
        return target[None] < np.asarray(self.lengths)[:, None, None]

    def check_finite(self) -> None:
        """Raise InputError (one sentence) if any prediction that should exist, any KL or any
        reconstruction inside a sequence is NaN or infinite (error regression diverged)."""
        bad = self.expected_finite() & ~np.isfinite(self.predictions).all(-1)   # (N, T, H)
        steps = np.arange(self.shape[1])[None] < np.asarray(self.lengths)[:, None]  # (N, T)
        bad_t = bad.any(-1) | (steps & ~np.isfinite(self.kl).all(-1))
        if bad_t.any():
            n, t = np.argwhere(bad_t)[0]
            raise InputError(f"Error regression diverged (non-finite values from sequence {n} "
                           f"at step {t}); try a smaller learning rate (now "
                           f"{self.settings.lr:g}) or fewer iterations.")

    def horizon_rmse(self) -> np.ndarray:
        """(H,) RMSE per horizon in data units (see engine.pvrnn.er.horizon_rmse)."""
        from engine.pvrnn.er import horizon_rmse

        return horizon_rmse(self.observed, self.predictions)

    def persistence_rmse(self) -> np.ndarray:
        """(H,) RMSE of repeating the last observation, the baseline."""
        from engine.pvrnn.er import horizon_rmse, persistence

        return horizon_rmse(self.observed, persistence(self.observed, self.lengths,
                                                       self.shape[2]))

    def summary(self) -> str:
        """One line: sequences, RMSE at h = 1 and h = H against persistence, latency."""
        err, pers = self.horizon_rmse(), self.persistence_rmse()
        lat = self.latency_ms
        return (f"{self.shape[0]} sequences; RMSE h=1: {err[0]:.3g} (persistence "
                f"{pers[0]:.3g}), h={len(err)}: {err[-1]:.3g} ({pers[-1]:.3g}); latency median "
                f"{np.nanmedian(lat):.1f} ms, p95 {np.nanpercentile(lat, 95):.1f} ms per step")

    def arrays(self) -> dict[str, np.ndarray]:
        """The PRED.npz content."""
        out = {k: np.asarray(getattr(self, k)) for k in ARRAYS}
        out["lengths"] = np.asarray(self.lengths, dtype=np.int64)
        if self.reconstruction is not None:
            out["reconstruction"] = np.asarray(self.reconstruction)
        s = self.settings
        out.update(window=np.int64(s.window), iterations=np.int64(s.iterations),
                   lr=np.float64(s.lr), horizon=np.int64(s.horizon))
        if s.meta_prior is not None:
            out["meta_prior"] = np.float64(s.meta_prior)
        if self.chunk is not None:
            out["chunk"] = np.int64(self.chunk)
        return out

    def save(self, path: str | Path) -> None:
        """Write PRED.npz atomically (temp file + rename)."""
        from db.atomic import write_npz

        write_npz(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> "Prediction":
        """Read and check a PRED.npz; bad files raise one InputError naming the file."""
        path = Path(path)
        what = f"Prediction file '{path}'"
        if not path.is_file():
            raise InputError(f"{what} does not exist." if not path.exists()
                             else f"{what} is not a file.")
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except Exception:
            raise InputError(f"{what} is not a readable .npz file.") from None
        missing = [k for k in ARRAYS + SETTINGS if k not in d]
        if missing:
            raise InputError(f"{what} lacks the arrays written by 'pvrnn predict' "
                             f"(missing: {', '.join(missing)}).")
        try:
            return cls._from_arrays(d, what)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{what} holds arrays of the wrong type or shape.") from None

    @classmethod
    def _from_arrays(cls, d: dict, what: str) -> "Prediction":
        obs, pred, kl, lat = (np.asarray(d[k], dtype=np.float32) for k in ARRAYS)
        if obs.ndim != 3 or pred.ndim != 4 or kl.ndim != 3 or lat.ndim != 2:
            raise InputError(f"{what} has arrays of the wrong rank (observed {obs.shape}, "
                             f"predictions {pred.shape}, kl {kl.shape}, latency_ms "
                             f"{lat.shape}).")
        N, T, D = obs.shape
        if pred.shape[:2] + pred.shape[3:] != (N, T, D) or kl.shape[:2] != (N, T) or \
                lat.shape != (N, T) or min(N, T, D, pred.shape[2], kl.shape[2]) < 1:
            raise InputError(f"{what} has arrays whose shapes disagree (observed {obs.shape}, "
                             f"predictions {pred.shape}, kl {kl.shape}, latency_ms "
                             f"{lat.shape}).")
        scalar = {k: d[k].item() for k in SETTINGS + ("meta_prior", "chunk") if k in d}
        settings = ERSettings(window=int(scalar["window"]),
                              iterations=int(scalar["iterations"]),
                              lr=float(scalar["lr"]), horizon=int(scalar["horizon"]),
                              meta_prior=(float(scalar["meta_prior"]) if "meta_prior" in scalar
                                          else None))
        problems = settings.problems()
        if problems or settings.horizon != pred.shape[2]:
            raise InputError(f"{what} has invalid settings: "
                             f"{'; '.join(problems) or 'horizon differs from the predictions'}.")
        if "lengths" in d:
            lengths = np.asarray(d["lengths"]).astype(np.int64)
        else:  # observed steps up to the first all-NaN row
            lengths = np.isfinite(obs).all(-1).sum(1).astype(np.int64)
        if lengths.shape != (N,) or (lengths < 1).any() or (lengths > T).any():
            raise InputError(f"{what} has sequence lengths that do not fit its {T} steps.")
        rec = d.get("reconstruction")
        if rec is not None:
            rec = np.asarray(rec, dtype=np.float32)
            if rec.ndim != 4 or rec.shape[:2] + rec.shape[3:] != (N, T, D):
                raise InputError(f"{what} has a reconstruction of shape {rec.shape}, which "
                                 f"does not fit observed {obs.shape}.")
        return cls(obs, pred, kl, lat, lengths, settings, rec,
                   int(scalar["chunk"]) if "chunk" in scalar else None)

    def __eq__(self, other) -> bool:  # arrays compare by content (NaN equal to NaN)
        if not isinstance(other, Prediction):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True


def predict(checkpoint: dict, X: np.ndarray, lengths: np.ndarray,
            settings: ERSettings | None = None, *, chunk: int | None = None,
            data_name="the data", model_name="the model", progress: Progress | None = None,
            cancel: CancelToken | None = None) -> Prediction:
    """Job: error regression of every sequence of X (N, T, D) in data units (NaN-padded after
    ``lengths`` (N,)) with a trained checkpoint (engine.pvrnn.train). ``settings`` None takes
    the model's configured [er]. Raises InputError on a dimension mismatch or bad settings,
    InputError if the regression diverged (non-finite predictions)."""
    from engine.pvrnn.data import check_dim
    from engine.pvrnn.er import error_regression
    from engine.pvrnn.train import model_from_checkpoint

    model, cfg, lo, hi = model_from_checkpoint(checkpoint, model_name)
    settings = settings or cfg.er
    problems = settings.problems()
    if chunk is not None and out_of_range("chunk", chunk):
        problems.append(out_of_range("chunk", chunk))
    if problems:
        raise InputError(f"Error regression settings: {'; '.join(problems)}.")
    check_dim(X, model.dim, data_name, model_name)
    with np.errstate(all="ignore"):  # divergence is checked below
        res = error_regression(model, lo, hi, X, lengths, window=settings.window,
                               iterations=settings.iterations, lr=settings.lr,
                               horizon=settings.horizon, meta_prior=settings.meta_prior,
                               chunk=chunk, progress=progress, cancel=cancel)
    out = Prediction(res["observed"], res["predictions"], res["kl"], res["latency_ms"],
                     np.asarray(lengths, dtype=np.int64), settings, res["reconstruction"],
                     chunk)
    out.check_finite()
    return out

