"""`main.py fsde train` and `main.py fsde predict`: the latent fractional-SDE video model.

Training onto an existing MODEL.pt resumes only when the model settings, the training
settings (seed included) and the data (by content hash) are those of the checkpoint; anything
else is refused with one sentence unless ``--force``. ``predict`` computes the forecast
(engine/fsde/prediction.py), renders every frame (engine/fsde/render.py), then writes
PRED.npz and PRED.mp4 together or not at all.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli import finite_float, int_range, seed_int

DATA_KEY = "data_sha256"  # the training data's identity, kept in the checkpoint's "train" dict
MAX_FRAMES_TOTAL = 2000  # context + horizon


def add_parser(actions) -> None:
    """Add the ``train`` and ``predict`` actions to the ``fsde`` group."""
    q = actions.add_parser(
        "train", help="train the latent fractional-SDE video model",
        description="Train the video model on Stochastic Moving Digits or a video file; writes "
                    "an atomic, resumable checkpoint (rerun the same command to resume). An "
                    "existing MODEL.pt trained with other settings, seed or data is refused "
                    "unless --force.")
    q.add_argument("--data", required=True, metavar="moving-digits|VIDEO",
                   help="'moving-digits' or a video file (mp4, avi, ... or .npz with 'frames')")
    q.add_argument("--out", required=True, type=Path, metavar="MODEL.pt")
    q.add_argument("--config", type=Path, metavar="CFG.toml",
                   help="TOML with [model] (size, latent_dim, K, kind, brownian, context, "
                        "horizon, ...) and [train] (steps, batch_size, lr, seed, n_digits, ...)")
    q.add_argument("--force", action="store_true",
                   help="replace an existing MODEL.pt trained with other settings or data")
    q.set_defaults(func=train_cmd, command="fsde train")

    p = actions.add_parser(
        "predict", help="forecast a video with a trained model",
        description="Condition on the first N frames of a video and sample M more frames; "
                    "writes PRED.mp4 (ground truth | sample mean | one sample | per-pixel std) "
                    "and PRED.npz (frames, samples, mean, std, PSNR and SSIM of the sample "
                    "mean and of the copy-last, black-frame and context-mean baselines).")
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.pt")
    p.add_argument("--video", required=True, type=Path, metavar="FILE")
    p.add_argument("--context", type=int_range(3, MAX_FRAMES_TOTAL), default=10, metavar="N")
    p.add_argument("--horizon", type=int_range(1, MAX_FRAMES_TOTAL), default=10, metavar="M")
    p.add_argument("--samples", type=int_range(1, 256), default=8, metavar="S")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--fps", type=finite_float(0, 240, min_exclusive=True), default=5.0,
                   help="frames per second of PRED.mp4, in (0, 240] (default 5)")
    p.add_argument("--out", required=True, type=Path, metavar="PRED.mp4")
    p.set_defaults(func=predict_cmd, command="fsde predict")


# ------------------------------------------------------------------ training
def data_identity(data: str) -> str:
    """The training data's identity: "moving-digits:<sha256 of the digit file>" or the
    sha256 of the video file's bytes."""
    from db.hashing import file_sha256
    from engine.fsde.video_data import MNIST_PATH
    from engine.fsde.video_train import MOVING_DIGITS
    from engine.jobs import InputError

    if data == MOVING_DIGITS:
        return f"{MOVING_DIGITS}:{file_sha256(MNIST_PATH)}"
    path = Path(data)
    if not path.is_file():
        raise InputError(f"The video '{path}' does not exist.")
    return file_sha256(path)


def checkpoint_differences(blob: dict, config: dict, train: dict) -> list[str]:
    """What differs between a checkpoint and the requested run (empty: the same run, it may
    resume): "model settings", "seed", "data", "training settings (lr, ...)"."""
    diffs = []
    if blob.get("config") != config:
        diffs.append("model settings")
    old = dict(blob.get("train", {}))
    if old.get("seed") != train.get("seed"):
        diffs.append(f"seed ({old.get('seed')} in the checkpoint, {train.get('seed')} "
                     f"requested)")
    if old.get(DATA_KEY) != train.get(DATA_KEY):
        diffs.append("data" if DATA_KEY in old else "data of unrecorded content")
    other = sorted(k for k in set(old) | set(train) if k not in ("steps", "seed", DATA_KEY)
                   and old.get(k) != train.get(k))
    if other:
        diffs.append(f"training settings ({', '.join(other)})")
    return diffs


def check_existing(out: Path, config: dict, train: dict, force: bool) -> None:
    """Refuse (InputError) to train onto ``out`` when it holds another run, unless ``force``,
    which removes it. Nothing happens when ``out`` does not exist or is the same run."""
    from engine._torch import torch
    from engine.jobs import InputError

    if not out.exists():
        return
    try:
        blob = torch.load(out, map_location="cpu", weights_only=True)
        diffs = checkpoint_differences(blob, config, train) if isinstance(blob, dict) else \
            ["contents"]
    except Exception:  # noqa: BLE001 - anything unreadable is not a checkpoint we can resume
        diffs = ["contents (it is not a readable checkpoint)"]
    if not diffs:
        return
    if not force:
        raise InputError(f"The output '{out}' holds a model trained with other "
                         f"{', '.join(diffs)}; rerun with --force to replace it, or choose "
                         f"another --out.")
    out.unlink()


def train_checked(data: str, out: str | Path, model_config: dict | None = None,
                  train_config: dict | None = None, force: bool = False, *, progress, cancel,
                  monitor: list | None = None) -> dict:
    """Train the video model on ``data`` into ``out`` (a job: see video_train.train_video)
    with the data's content hash in the checkpoint identity: resume only the same run, refuse
    another one (InputError) unless ``force``. Returns the training history."""
    from engine.fsde.video_model import make_config
    from engine.fsde.video_train import DEFAULT_TRAIN, MOVING_DIGITS, train_video

    out = Path(out)
    progress.update(0.0, "hashing the training data")
    train = {**DEFAULT_TRAIN, **(train_config or {}), DATA_KEY: data_identity(str(data))}
    cfg = make_config(**(model_config or {}))
    if str(data) != MOVING_DIGITS:  # a bad video fails here, before --force removes anything
        from engine.fsde.video_data import load_video_info

        n = cfg["context"] + cfg["horizon"]
        load_video_info(data, color=cfg["channels"] == 3, min_frames=n, max_frames=n,
                        cancel=cancel)
    check_existing(out, cfg, train, force)
    return train_video(data, out, model_config, train, progress=progress, cancel=cancel,
                       monitor=monitor)


def train_cmd(args: argparse.Namespace, ctx) -> None:
    from engine.fsde.video_train import MOVING_DIGITS, read_config

    if args.config is not None:
        ctx.inputs.append(args.config)
    model_cfg, train_cfg = read_config(args.config)
    if args.data != MOVING_DIGITS:
        ctx.inputs.append(Path(args.data))
    train_checked(args.data, args.out, model_cfg, train_cfg, args.force,
                  progress=ctx.progress, cancel=ctx.cancel)
    ctx.outputs.append(args.out)


# ------------------------------------------------------------------ prediction
def write_together(npz: Path, mp4: Path, pred, images, fps: float) -> None:
    """Write PRED.npz and PRED.mp4 together or not at all: the MP4 is encoded into a
    temporary file first, then the npz is written (atomically), then the MP4 is renamed."""
    from db.atomic import write_with
    from engine.fsde.render import encode_mp4

    def both(tmp_mp4: str) -> None:
        encode_mp4(tmp_mp4, images, fps)
        pred.save(npz)

    write_with(mp4, both)


def predict_cmd(args: argparse.Namespace, ctx) -> None:
    from engine.fsde.prediction import forecast, read_clip
    from engine.fsde.render import render_prediction
    from engine.fsde.video_model import load_model
    from engine.jobs import InputError

    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"The output '{args.out}' must end in .mp4.")
    if args.context + args.horizon > MAX_FRAMES_TOTAL:
        raise InputError(f"--context + --horizon must be at most {MAX_FRAMES_TOTAL} frames.")
    ctx.inputs += [args.model, args.video]
    model = load_model(args.model)
    cfg = model.config
    ctx.progress.update(0.05, "reading the video")
    n = args.context + args.horizon
    clip = read_clip(args.video, cfg, min_frames=n, max_frames=n, cancel=ctx.cancel)
    ctx.progress.update(0.2, f"sampling {args.samples} forecasts")
    pred = forecast(model, clip, args.context, args.horizon, args.samples, args.seed,
                    settings={"model": str(args.model), "video": str(args.video)})
    ctx.cancel.check()
    ctx.progress.update(0.7, "rendering")
    images = render_prediction(pred)
    ctx.progress.update(0.85, "writing")
    npz = args.out.with_suffix(".npz")
    write_together(npz, args.out, pred, images, args.fps)
    ctx.outputs += [args.out, npz]
    ctx.progress.done("done")
    print(summary_text(pred))


def summary_text(pred) -> str:
    """Mean PSNR / SSIM over the predicted frames of the sample mean and each baseline."""
    from engine.fsde.prediction import LABELS, METHODS

    s = pred.summary()
    lines = [f"{'':18s} {'PSNR dB':>8s} {'SSIM':>6s}"]
    lines += [f"{LABELS[k]:18s} {s['psnr'][k]:8.2f} {s['ssim'][k]:6.3f}" for k in METHODS]
    lines.append(f"{'best sample':18s} {s['best_sample_psnr']:8.2f}")
    if pred.resized:
        lines.append(f"note: {pred.resize_reason}.")
    return "\n".join(lines)
