"""Training: weights and every training sequence's adaptive vectors A, full batch, Adam.

The model file is also the checkpoint: it is rewritten atomically every
``checkpoint_every`` epochs and on cancel (``finished`` False), and at the end
(``finished`` True). Rerunning with the same data and configuration resumes from it;
the noise of epoch e is drawn from ``default_rng([seed, e])``, so a resumed run is
identical to an uninterrupted one. Files hold plain tensors, numbers, strings, lists
and dicts only, and load with ``torch.load(..., weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

from db.atomic import atomic_write
from engine.jobs import CancelToken, Cancelled, InputError, Progress
from engine.pvrnn.config import Config
from engine.pvrnn.data import fit_scaling, to_scaled
from engine.pvrnn.model import PVRNN, Adam, init_params, param_names, single_thread_blas

FORMAT = "pvrnn/1"
REQUIRED = {"config", "epoch", "finished", "params", "scale_lo", "scale_hi", "A_mu", "A_sig",
            "adam_m", "adam_v", "adam_step", "history", "data_sha", "lengths"}


def prepare(X: np.ndarray, lengths: np.ndarray, lo, hi):
    """Data units (N, T, D) NaN-padded -> time-major scaled (T, N, D) with zeros in the
    padding, and the mask (T, N)."""
    Xs = np.transpose(to_scaled(X, lo, hi), (1, 0, 2))
    mask = (np.arange(X.shape[1])[:, None] < lengths[None, :]).astype(np.float64)
    return np.where(mask[..., None] > 0, Xs, 0.0), mask


def data_fingerprint(X: np.ndarray, lengths: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(np.nan_to_num(X, nan=1e300)).tobytes())
    h.update(np.asarray(lengths, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


SETUP_SKIP = ("epochs", "checkpoint_every", "er")  # may change between runs of one model


def setup_difference(old: dict, sha_old: str, cfg: dict, sha: str) -> str | None:
    """How a checkpoint's training (config dict, data hash) differs from a new one, as a
    phrase ("seed 1 (now 2)", "other data (...)"), or None when it may resume."""
    diffs = []
    for k in sorted(set(old) | set(cfg)):
        if k not in SETUP_SKIP and old.get(k) != cfg.get(k):
            diffs.append(f"{k} {_shown(old.get(k))} (now {_shown(cfg.get(k))})")
    if sha_old != sha:
        diffs.append(f"other data (content hash {sha_old[:12]}, this data {sha[:12]})")
    return ", ".join(diffs) or None


def _shown(v) -> str:
    if isinstance(v, list):  # layers
        return " / ".join(f"d{x['d']} z{x['z']} tau{x['tau']:g} w{x['w']:g}" for x in v)
    return repr(v)


def train(*args, **kwargs) -> dict:
    """See _train; runs with single-threaded BLAS (faster for these small matrices)."""
    with single_thread_blas():
        return _train(*args, **kwargs)


def _train(X: np.ndarray, lengths: np.ndarray, cfg: Config, out: str | Path | None = None, *,
          progress: Progress | None = None, cancel: CancelToken | None = None,
          on_epoch: Callable[[int, float, float, list[float]], None] | None = None,
          resume: bool = True, force: bool = False) -> dict:
    """Train on X (N, T, D) in data units (NaN-padded; lengths (N,)). Writes the model /
    checkpoint to ``out`` if given and returns the checkpoint dict (see save format).
    ``on_epoch(epoch, loss, rec, kl_per_layer)`` is called after every epoch.

    An existing checkpoint at ``out`` is resumed when its setup (configuration apart from
    epochs, checkpoint_every, [er]) and data (content hash) match; otherwise InputError
    names the difference, unless ``force`` (then it is replaced by a new training).
    ``resume=False`` always starts afresh. A non-finite loss raises InputError (diverged)."""
    progress = progress or Progress()
    cancel = cancel or CancelToken()

    N, T, D = X.shape
    sha = data_fingerprint(X, lengths)
    state = None
    if out is not None and Path(out).exists():
        try:
            old = load_checkpoint(out)
        except InputError:
            raise InputError(f"Output file '{out}' already exists and is not a PV-RNN "
                             "checkpoint; refusing to overwrite it.") from None
        diff = setup_difference(old["config"], old.get("data_sha", ""), cfg.to_dict(), sha)
        if resume and diff is None:
            state = old
        elif resume and not force:
            raise InputError(f"Model file '{out}' already holds a PV-RNN trained with {diff}; "
                             "refusing to replace it (use --force to train a new model there, "
                             "or choose another output file).")
    if state is not None:
        lo, hi = state["scale_lo"].numpy(), state["scale_hi"].numpy()
        params = {k: v.numpy().copy() for k, v in state["params"].items()}
        Amu = [a.numpy().copy() for a in state["A_mu"]]
        Asig = [a.numpy().copy() for a in state["A_sig"]]
        start = int(state["epoch"])
        hist = {k: list(v.tolist()) for k, v in state["history"].items()}
    else:
        lo, hi = fit_scaling(X)
        params = init_params(cfg.layers, D, cfg.seed)
        Amu = [np.zeros((T, N, lay.z)) for lay in cfg.layers]
        Asig = [np.zeros((T, N, lay.z)) for lay in cfg.layers]
        start = 0
        hist = {"loss": [], "rec": [], "kl": []}
    model = PVRNN(cfg.layers, params, cfg.beta)
    names = param_names(model.L)
    arrays = [params[k] for k in names] + Amu + Asig
    adam = Adam(arrays, cfg.lr)
    if state is not None:
        adam.m = [m.numpy().copy() for m in state["adam_m"]]
        adam.v = [v.numpy().copy() for v in state["adam_v"]]
        adam.step_count = int(state["adam_step"])
    Xs, mask = prepare(X, lengths, lo, hi)
    norm = float(mask.sum())

    def snapshot(epoch: int, finished: bool) -> dict:
        return make_checkpoint(cfg, model.params, lo, hi, Amu, Asig, adam, epoch, finished,
                               hist, sha, lengths)

    def save(epoch: int, finished: bool) -> dict:
        ck = snapshot(epoch, finished)
        if out is not None:
            save_checkpoint(ck, out)
        return ck

    if start >= cfg.epochs and state is not None and state.get("finished"):
        progress.done(f"already trained ({start} epochs)")
        return state
    last_report, t_start = 0.0, time.monotonic()
    epoch = start
    try:
        for epoch in range(start, cfg.epochs):
            cancel.check()
            rng = np.random.default_rng([cfg.seed, epoch])
            eps = [rng.standard_normal((T, N, lay.z)) for lay in cfg.layers]
            with np.errstate(all="ignore"):  # divergence checked below
                c = model.forward(Amu, Asig, eps=eps)
                loss, rec, kls = model.loss(c, Xs, mask, norm)
                gmu, gsig, g = model.backward(c, Xs, mask, norm)
                grads = [g[k] for k in names] + gmu + gsig
                gnorm = np.sqrt(sum(float((x * x).sum()) for x in grads))
            if not (np.isfinite(loss) and np.isfinite(gnorm)):
                raise InputError(f"Training diverged at epoch {epoch + 1} (loss {loss:.4g}, "
                               f"gradient norm {gnorm:.4g}); lower lr (now {cfg.lr:g}) or "
                               "clip in the configuration.")
            if cfg.clip > 0 and gnorm > cfg.clip:
                grads = [x * (cfg.clip / gnorm) for x in grads]
            adam.step(arrays, grads)
            model.refresh()
            hist["loss"].append(loss)
            hist["rec"].append(rec)
            hist["kl"].append(kls)
            if on_epoch is not None:
                on_epoch(epoch + 1, loss, rec, kls)
            if out is not None and (epoch + 1) % cfg.checkpoint_every == 0 and \
                    epoch + 1 < cfg.epochs:
                save(epoch + 1, False)
            now = time.monotonic()
            if now - last_report > 0.2:
                last_report = now
                progress.update((epoch + 1) / cfg.epochs, _message(epoch + 1, cfg.epochs, loss,
                                                                   rec, kls))
    except Cancelled:
        done = len(hist["loss"])
        if out is not None and done > 0:
            save(done, False)
        raise
    ck = save(max(start, cfg.epochs), True)
    ck["train_s"] = time.monotonic() - t_start
    if hist["loss"]:
        n = len(hist["loss"])
        progress.done(_message(n, n, hist["loss"][-1], hist["rec"][-1], hist["kl"][-1]))
    return ck


def _message(epoch, epochs, loss, rec, kls) -> str:
    return (f"epoch {epoch}/{epochs} loss {loss:.5f} rec {rec:.5f} KL "
            + "/".join(f"{k:.4f}" for k in kls))


def make_checkpoint(cfg: Config, params, lo, hi, Amu, Asig, adam, epoch, finished, hist, sha,
                    lengths) -> dict:
    from engine._torch import torch

    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float64))  # noqa: E731
    return {
        "format": FORMAT, "config": cfg.to_dict(), "epoch": int(epoch), "finished": bool(finished),
        "params": {k: t(v) for k, v in params.items()},
        "scale_lo": t(lo), "scale_hi": t(hi),
        "A_mu": [t(a) for a in Amu], "A_sig": [t(a) for a in Asig],
        "adam_m": [t(m) for m in adam.m], "adam_v": [t(v) for v in adam.v],
        "adam_step": int(adam.step_count),
        "history": {"loss": t(hist["loss"]), "rec": t(hist["rec"]),
                    "kl": t(np.reshape(hist["kl"], (-1, len(cfg.layers))))},
        "data_sha": sha, "lengths": torch.from_numpy(np.asarray(lengths, dtype=np.int64)),
    }


def save_checkpoint(ck: dict, path: str | Path) -> None:
    from engine._torch import torch

    ck = {k: v for k, v in ck.items() if k != "train_s"}
    with atomic_write(path, "wb") as f:
        torch.save(ck, f)


def load_checkpoint(path: str | Path) -> dict:
    from engine._torch import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"Model file '{path}' does not exist.")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise InputError(f"Model file '{path}' is not a PV-RNN model saved by this "
                         "program.") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or not REQUIRED <= set(ck):
        raise InputError(f"Model file '{path}' is not a PV-RNN model saved by this program.")
    if not all(torch.isfinite(v).all() for v in ck["params"].values()):
        raise InputError(f"Model file '{path}' holds non-finite (NaN or infinite) weights.")
    return ck


def model_from_checkpoint(ck: dict, name="the model"):
    """Checkpoint dict -> (PVRNN, Config, lo (D,), hi (D,)) (scaling in data units)."""
    cfg = Config.from_dict(ck["config"], source=f"Model file '{name}'")
    params = {k: v.numpy().astype(np.float64) for k, v in ck["params"].items()}
    return PVRNN(cfg.layers, params, cfg.beta), cfg, ck["scale_lo"].numpy(), \
        ck["scale_hi"].numpy()


def load_model(path: str | Path):
    """Returns (PVRNN, Config, lo (D,), hi (D,), checkpoint dict)."""
    ck = load_checkpoint(path)
    return (*model_from_checkpoint(ck, path), ck)
