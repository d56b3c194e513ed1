"""`main.py fsde train` and `main.py fsde predict`: the latent fractional-SDE video model."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(actions) -> None:
    """Add the ``train`` and ``predict`` actions to the ``fsde`` group."""
    q = actions.add_parser(
        "train", help="train the latent fractional-SDE video model",
        description="Train the video model on Stochastic Moving Digits or a video file; writes "
                    "an atomic, resumable checkpoint (rerun the same command to resume).")
    q.add_argument("--data", required=True, metavar="moving-digits|VIDEO",
                   help="'moving-digits' or a video file (mp4, avi, ... or .npz with 'frames')")
    q.add_argument("--out", required=True, type=Path, metavar="MODEL.pt")
    q.add_argument("--config", type=Path, metavar="CFG.toml",
                   help="TOML with [model] (size, latent_dim, K, kind, brownian, context, "
                        "horizon, ...) and [train] (steps, batch_size, lr, seed, n_digits, ...)")
    q.set_defaults(func=train_cmd, command="fsde train")

    p = actions.add_parser(
        "predict", help="forecast a video with a trained model",
        description="Condition on the first N frames of a video and sample M more frames; "
                    "writes PRED.mp4 (ground truth | sample mean | one sample | per-pixel std) "
                    "and PRED.npz (frames, samples, psnr).")
    p.add_argument("--model", required=True, type=Path, metavar="MODEL.pt")
    p.add_argument("--video", required=True, type=Path, metavar="FILE")
    p.add_argument("--context", type=int, default=10, metavar="N")
    p.add_argument("--horizon", type=int, default=10, metavar="M")
    p.add_argument("--samples", type=int, default=8, metavar="S")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--out", required=True, type=Path, metavar="PRED.mp4")
    p.set_defaults(func=predict_cmd, command="fsde predict")


def train_cmd(args: argparse.Namespace, ctx) -> None:
    from engine.fsde.video_train import MOVING_DIGITS, read_config, train_video

    if args.config is not None:
        ctx.inputs.append(args.config)
    model_cfg, train_cfg = read_config(args.config)
    if args.data != MOVING_DIGITS:
        ctx.inputs.append(Path(args.data))
    train_video(args.data, args.out, model_cfg, train_cfg, progress=ctx.progress,
                cancel=ctx.cancel)
    ctx.outputs.append(args.out)


def predict_cmd(args: argparse.Namespace, ctx) -> None:
    import numpy as np

    from db.atomic import write_npz
    from engine.fsde.video_data import load_video, panel_frames, write_mp4
    from engine.fsde.video_model import load_model, predict_clip
    from engine.jobs import InputError

    if args.context < 3 or args.horizon < 1 or args.samples < 1:
        raise InputError("--context must be at least 3, --horizon and --samples at least 1.")
    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"The output '{args.out}' must end in .mp4.")
    ctx.inputs += [args.model, args.video]
    model = load_model(args.model)
    cfg = model.config
    ctx.progress.update(0.05, "reading the video")
    frames = load_video(args.video, size=cfg["size"], color=cfg["channels"] == 3,
                        min_frames=args.context + args.horizon,
                        max_frames=args.context + args.horizon)
    ctx.cancel.check()
    ctx.progress.update(0.2, f"sampling {args.samples} forecasts")
    res = predict_clip(model, frames, args.context, args.horizon, args.samples, args.seed)
    ctx.cancel.check()
    ctx.progress.update(0.8, "writing")
    npz = args.out.with_suffix(".npz")
    write_npz(npz, frames=res["frames"].astype(np.float32),
              samples=res["samples"].astype(np.float32), recon=res["recon"].astype(np.float32),
              psnr=res["psnr"].astype(np.float32),
              ssim=res["ssim"].astype(np.float32), context=np.int64(args.context))
    sample = np.concatenate([res["recon"][0], res["samples"][0]])
    write_mp4(args.out, panel_frames(res["frames"], res["mean"], sample, res["std"],
                                     args.context), fps=args.fps)
    ctx.outputs += [args.out, npz]
    ctx.progress.done("PSNR of the sample mean: " +
                      " ".join(f"{v:.1f}" for v in res["psnr"]) + " dB")
