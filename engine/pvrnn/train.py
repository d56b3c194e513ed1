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


def _same_setup(cfg_a: dict, cfg_b: dict) -> bool:
    skip = ("epochs", "checkpoint_every", "er")
    return ({k: v for k, v in cfg_a.items() if k not in skip}
            == {k: v for k, v in cfg_b.items() if k not in skip})


def train(*args, **kwargs) -> dict:
    """See _train; runs with single-threaded BLAS (faster for these small matrices)."""
    with single_thread_blas():
        return _train(*args, **kwargs)


def _train(X: np.ndarray, lengths: np.ndarray, cfg: Config, out: str | Path | None = None, *,
          progress: Progress | None = None, cancel: CancelToken | None = None,
          on_epoch: Callable[[int, float, float, list[float]], None] | None = None,
          resume: bool = True) -> dict:
    """Train on X (N, T, D) in data units (NaN-padded; lengths (N,)). Writes the model /
    checkpoint to ``out`` if given and returns the checkpoint dict (see save format).
    ``on_epoch(epoch, loss, rec, kl_per_layer)`` is called after every epoch."""
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
        if resume and old["data_sha"] == sha and _same_setup(old["config"], cfg.to_dict()):
            state = old
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
            c = model.forward(Amu, Asig, eps=eps)
            loss, rec, kls = model.loss(c, Xs, mask, norm)
            gmu, gsig, g = model.backward(c, Xs, mask, norm)
            grads = [g[k] for k in names] + gmu + gsig
            gnorm = np.sqrt(sum(float((x * x).sum()) for x in grads))
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
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputError(f"Model file '{path}' is not a PV-RNN model saved by this program.")
    return ck


def load_model(path: str | Path):
    """Returns (PVRNN, Config, lo (D,), hi (D,), checkpoint dict)."""
    ck = load_checkpoint(path)
    cfg = Config.from_dict(ck["config"], source=f"Model file '{path}'")
    params = {k: v.numpy().astype(np.float64) for k, v in ck["params"].items()}
    model = PVRNN(cfg.layers, params, cfg.beta)
    return model, cfg, ck["scale_lo"].numpy(), ck["scale_hi"].numpy(), ck
