"""Training job for the video model: progress with the ELBO terms and the current Hurst index,
cancellation, atomic resumable checkpoints (plain dicts, ``torch.load(weights_only=True)``).

Data: ``"moving-digits"`` (a fresh batch of Stochastic Moving Digits every step, seeded by the
step number, so a resumed run sees the same batches) or a video file (random windows of
context + horizon frames).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine.jobs import CancelToken, InputError, Progress
from engine.tomlconf import read_toml

DEFAULT_TRAIN = {
    "steps": 400,
    "batch_size": 8,
    "lr": 0.02,
    "seed": 0,
    "n_digits": 0,  # moving digits: 1, 2, or 0 = half the batch with one digit, half with two
    "checkpoint_every": 200,  # steps
    "grad_clip": 10.0,
}
MOVING_DIGITS = "moving-digits"
# per-step training curves; "forecast" is the term that fits H and the noise scales (NaN when
# the config turns it off). The ELBO falls while the forecast term tightens the noise: the
# posterior pays more path KL to follow the tracks (docs/fsde_video.md, *Objective*)
HISTORY = ("elbo", "loglik", "kl", "kl_path", "forecast", "hurst")


# allowed values per setting: (type, check, what the check means)
_INT, _FLOAT, _BOOL, _STR = "an integer", "a number", "true or false", "a string"
MODEL_RULES = {
    "size": (_INT, lambda v: v in (32, 64), "32 or 64 (the moving-digit frame side)"),
    "channels": (_INT, lambda v: v in (1, 3), "1 (grey) or 3 (colour)"),
    "slots": (_INT, lambda v: v in (1, 2), "1 or 2"),
    "glimpse": (_FLOAT, lambda v: 0.05 <= v <= 1, "between 0.05 and 1"),
    "residual": (_INT, lambda v: v >= 0, "at least 0"),
    "K": (_INT, lambda v: v >= 2, "at least 2 (use brownian = true for Brownian motion)"),
    "kind": (_STR, lambda v: v in ("I", "II"), '"I" or "II"'),
    "hurst": (_FLOAT, lambda v: 0 < v < 1, "strictly between 0 and 1"),
    "learn_hurst": (_BOOL, None, ""),
    "gamma_max": (_FLOAT, lambda v: 1 < v < float("inf"), "a finite number above 1"),
    "brownian": (_BOOL, None, ""),
    "T": (_FLOAT, lambda v: 0 < v < float("inf"), "a positive finite number"),
    "context": (_INT, lambda v: v >= 3, "at least 3"),
    "horizon": (_INT, lambda v: v >= 1, "at least 1"),
    "substeps": (_INT, lambda v: v >= 1, "at least 1"),
    "forecast_weight": (_FLOAT, lambda v: 0 <= v < float("inf"), "a finite number, at least 0"),
    "forecast_ssim": (_FLOAT, lambda v: 0 <= v < float("inf"), "a finite number, at least 0"),
}
TRAIN_RULES = {
    "steps": (_INT, lambda v: v >= 1, "at least 1"),
    "batch_size": (_INT, lambda v: v >= 1, "at least 1"),
    "lr": (_FLOAT, lambda v: 0 < v < float("inf"), "a positive finite number"),
    "seed": (_INT, lambda v: v >= 0, "at least 0"),
    "n_digits": (_INT, lambda v: v in (0, 1, 2), "1, 2 or 0 (a mix)"),
    "checkpoint_every": (_INT, lambda v: v >= 1, "at least 1"),
    "grad_clip": (_FLOAT, lambda v: 0 < v < float("inf"), "a positive finite number"),
}


def _check(path: Path, table: str, values: dict, rules: dict) -> dict:
    """``values`` with each setting checked against ``rules`` (floats converted to float)."""
    out = {}
    for key, value in values.items():
        kind, ok, meaning = rules[key]
        typed = {_INT: isinstance(value, int) and not isinstance(value, bool),
                 _FLOAT: isinstance(value, (int, float)) and not isinstance(value, bool),
                 _BOOL: isinstance(value, bool), _STR: isinstance(value, str)}[kind]
        if not typed or (ok is not None and not ok(float(value) if kind == _FLOAT else value)):
            need = kind + (f", {meaning}" if meaning else "")
            raise InputError(f"The config '{path}' sets [{table}] {key} = {value!r}, but it must "
                             f"be {need}.")
        out[key] = float(value) if kind == _FLOAT else value
    return out


def read_config(path: str | Path | None) -> tuple[dict, dict]:
    """(model overrides, training settings) from a TOML file with tables [model] and [train].

    Unknown settings, wrong types and out-of-range values raise :class:`InputError` (one
    sentence naming the file); so does any setting the model itself rejects."""
    from engine.fsde.video_model import DEFAULT_CONFIG, VideoSDE, make_config

    if path is None:
        return {}, dict(DEFAULT_TRAIN)
    path = Path(path)
    raw = read_toml(path)
    for table in ("model", "train"):
        if not isinstance(raw.get(table, {}), dict):
            raise InputError(f"The config '{path}' must have [{table}] as a table.")
    model, train = dict(raw.get("model", {})), dict(raw.get("train", {}))
    bad = (set(model) - set(DEFAULT_CONFIG)) | (set(train) - set(DEFAULT_TRAIN))
    bad |= set(raw) - {"model", "train"}
    if bad:
        raise InputError(f"The config '{path}' has unknown settings: {', '.join(sorted(bad))}.")
    model = _check(path, "model", model, MODEL_RULES)
    train = {**DEFAULT_TRAIN, **_check(path, "train", train, TRAIN_RULES)}
    try:  # whatever the model still rejects (a tiny network, built once on the CPU)
        VideoSDE(make_config(**model))
    except ValueError as err:
        raise InputError(f"The config '{path}' has invalid model settings ({err}).") from None
    return model, train


class ClipSource:
    """Batches (B, L, C, H, W) float32 for step ``i``: deterministic in (seed, i)."""

    def __init__(self, data: str | Path, cfg: dict, train: dict):
        from engine.fsde.video_data import load_video_info, to_channels, windows

        self.cfg, self.train = cfg, train
        self.length = cfg["context"] + cfg["horizon"]
        self.video = None
        self.resize_reason = ""
        if str(data) != MOVING_DIGITS:  # the video's own resolution (at most MAX_SIDE)
            frames, _, self.resize_reason = load_video_info(
                data, color=cfg["channels"] == 3, min_frames=self.length)
            if min(frames.shape[1:3]) < 16:
                raise InputError(f"The video '{data}' is {frames.shape[1]} x "
                                 f"{frames.shape[2]} pixels; at least 16 x 16 are needed.")
            self.video = to_channels(windows(frames, self.length))  # (n, L, C, H, W)
        elif cfg["channels"] != 1:
            raise InputError("Moving digits are grayscale: set channels = 1 in the config.")

    def batch(self, step: int) -> np.ndarray:
        from engine.fsde.video_data import moving_digits, to_channels

        seed = self.train["seed"] * 1_000_003 + step
        B = self.train["batch_size"]
        if self.video is None:
            n, size = self.train["n_digits"], self.cfg["size"]
            if n:
                clips = moving_digits(B, self.length, size, n, seed=seed, split="train").frames
            else:  # a mix: the first half one digit, the rest two
                clips = np.concatenate([
                    moving_digits((B + 1) // 2, self.length, size, 1, seed=seed).frames,
                    moving_digits(B // 2, self.length, size, 2, seed=seed).frames])
            return to_channels(clips)
        idx = np.random.default_rng(seed).integers(0, len(self.video), B)
        return self.video[idx]


def save_checkpoint(path: Path, model, opt, step: int, train: dict, history: dict,
                    done: bool) -> None:
    """Atomically write config, weights, optimiser state, step and history (plain types)."""
    from db.atomic import atomic_write
    from engine._torch import torch
    from engine.fsde.video_model import KIND

    blob = {"config": dict(model.config), "train": dict(train), "state_dict": model.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else {}, "step": int(step),
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            "done": bool(done), "kind": KIND}
    with atomic_write(path, "wb") as f:
        torch.save(blob, f)


def _load_resume(path: Path, cfg: dict, train: dict) -> dict | None:
    """A checkpoint at ``path`` with the same model config and training settings, or None."""
    from engine._torch import torch
    from engine.fsde.video_model import KIND, OLD_KINDS

    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise InputError(f"The output '{path}' exists but is not a readable checkpoint; "
                         f"remove it or choose another --out.") from None
    if isinstance(blob, dict) and blob.get("kind") in OLD_KINDS:
        raise InputError(f"The output '{path}' holds a model of an older format; remove it or "
                         f"choose another --out.")
    if not isinstance(blob, dict) or blob.get("kind") != KIND or blob.get("config") != cfg:
        raise InputError(f"The output '{path}' holds a different model; remove it or choose "
                         f"another --out.")
    same = {k: v for k, v in blob.get("train", {}).items() if k != "steps"} == \
        {k: v for k, v in train.items() if k != "steps"}
    return blob if same else None


def train_video(data: str | Path, out: str | Path, model_config: dict | None = None,
                train_config: dict | None = None, *, progress: Progress,
                cancel: CancelToken, monitor: list | None = None) -> dict:
    """Train (or resume) the video model on ``data`` and write the checkpoint ``out``.

    ``monitor``, if given, receives one dict per step (``step``, the :data:`HISTORY` curves,
    ``frames_per_s``) appended from this thread (the GUI polls it).
    Returns the training history (lists per key). Cancelling saves a checkpoint first; rerunning
    the same command resumes from it.
    """
    from engine._torch import torch
    from engine.fsde.video_model import VideoSDE, make_config

    out = Path(out)
    cfg = make_config(**(model_config or {}))
    train = {**DEFAULT_TRAIN, **(train_config or {})}
    source = ClipSource(data, cfg, train)
    torch.manual_seed(train["seed"])
    model = VideoSDE(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=train["lr"])
    history: dict[str, list] = {k: [] for k in HISTORY}
    start = 0
    blob = _load_resume(out, cfg, train)
    if blob is not None:
        model.load_state_dict(blob["state_dict"])
        if blob["optimizer"]:
            opt.load_state_dict(blob["optimizer"])
        start = int(blob["step"])  # a checkpoint of an older version may lack a curve
        history = {k: list(blob["history"].get(k, [float("nan")] * start)) for k in HISTORY}
    steps = int(train["steps"])
    model.train()
    t0, frames_done = time.monotonic(), 0
    progress.update(start / max(steps, 1), f"step {start}/{steps}")
    try:
        for step in range(start, steps):
            cancel.check()
            torch.manual_seed(train["seed"] * 7919 + step)  # noise per step: resumable
            x = torch.from_numpy(source.batch(step))
            terms = model.elbo(x)
            opt.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
            opt.step()
            frames_done += x.shape[0] * x.shape[1]
            rec = {k: float(terms.get(k, float("nan"))) for k in HISTORY if k != "hurst"}
            rec["hurst"] = model.hurst  # from the model, not a loss term
            for k in history:
                history[k].append(rec[k])
            fps = frames_done / max(time.monotonic() - t0, 1e-9)
            if monitor is not None:
                monitor.append({"step": step + 1, **rec, "frames_per_s": fps})
            progress.update((step + 1) / steps,
                            f"step {step + 1}/{steps} forecast loss {rec['forecast']:.3f} "
                            f"ELBO {rec['elbo']:.0f} H {rec['hurst']:.3f}")
            if (step + 1) % train["checkpoint_every"] == 0 and step + 1 < steps:
                save_checkpoint(out, model, opt, step + 1, train, history, done=False)
    except BaseException:
        n = len(history["elbo"])
        if n > start:  # keep the work done so far (up to the last completed step)
            save_checkpoint(out, model, opt, n, train, history, done=False)
        raise
    save_checkpoint(out, model, opt, steps, train, history, done=True)
    progress.done(f"trained {steps} steps, H = {model.hurst:.3f}")
    return history
