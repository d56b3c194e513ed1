"""`main.py pvrnn train|predict`: training and online error regression from the shell.

Every numeric option is checked by argparse against engine.pvrnn.config.LIMITS (finite, in
range; engine.cli's shared types) before any work starts: one line, exit 2.
"""
from __future__ import annotations

from pathlib import Path

from engine.cli import finite_float, int_range
from engine.pvrnn.config import LIMITS, ERSettings

_ER = ERSettings()  # defaults shown in --help come from the one definition


def _type(key: str):
    """argparse type for setting ``key`` of LIMITS (integers or finite floats in range)."""
    lo, hi, open_lo = LIMITS[key]
    return int_range(lo, hi) if isinstance(lo, int) else finite_float(lo, hi,
                                                                      min_exclusive=open_lo)


def register(sub) -> None:
    parser = sub.add_parser("pvrnn", help="PV-RNN: train on sequences, predict online by "
                                          "error regression")
    actions = parser.add_subparsers(dest="action", required=True)
    q = actions.add_parser(
        "train", help="train a PV-RNN (resumes from --out if it is an unfinished checkpoint)",
        description="Train a PV-RNN on DATA (.npy (N, T, D) or .csv, one row per step). The "
                    "model file doubles as a checkpoint: rerun the same command to resume. "
                    "An existing model trained with other settings or data is never "
                    "replaced unless --force is given.")
    q.add_argument("--data", required=True, type=Path, help="training data .npy or .csv")
    q.add_argument("--out", required=True, type=Path, help="model file to write (MODEL.pt)")
    q.add_argument("--config", type=Path, default=None,
                   help="TOML configuration (default: resources/pvrnn/default.toml values)")
    q.add_argument("--epochs", type=_type("epochs"), default=None,
                   help="override the configured epochs")
    q.add_argument("--seed", type=_type("seed"), default=None,
                   help="override the configured seed (0 .. 2**32-1)")
    q.add_argument("--force", action="store_true",
                   help="replace an existing model in --out that was trained with other "
                        "settings or data (default: refuse)")
    q.set_defaults(func=train_cmd, command="pvrnn train")

    p = actions.add_parser(
        "predict", help="online error regression over every sequence, step by step",
        description="Run error regression over every sequence of DATA with a trained model "
                    "and write observed values, H-step predictions, KL per layer and the "
                    "latency of every step to PRED.npz (data units). Defaults: the model's "
                    "configured [er] settings.")
    p.add_argument("--model", required=True, type=Path, help="trained model (MODEL.pt)")
    p.add_argument("--data", required=True, type=Path, help="sequences .npy or .csv")
    p.add_argument("--out", required=True, type=Path, help="output PRED.npz")
    p.add_argument("--window", type=_type("window"), default=None,
                   help=f"ER window in steps (default {_ER.window})")
    p.add_argument("--iterations", type=_type("iterations"), default=None,
                   help=f"Adam iterations per step (default {_ER.iterations})")
    p.add_argument("--lr", type=_type("er_lr"), default=None,
                   help=f"ER learning rate (default {_ER.lr})")
    p.add_argument("--horizon", type=_type("horizon"), default=None,
                   help=f"steps predicted ahead (default {_ER.horizon})")
    p.add_argument("--meta-prior", dest="meta_prior", type=_type("meta_prior"), default=None,
                   help="meta-prior w used during ER for every layer (default: the trained w)")
    p.add_argument("--chunk", type=_type("chunk"), default=None,
                   help="sequences processed together (default: all; 1 = one at a time)")
    p.set_defaults(func=predict_cmd, command="pvrnn predict")


def train_cmd(args, ctx) -> None:
    from engine.jobs import InputError
    from engine.pvrnn.config import load_config
    from engine.pvrnn.data import load_sequences
    from engine.pvrnn.train import train

    if args.out.suffix == "" or args.out.is_dir():
        raise InputError(f"Output '{args.out}' must be a file name such as MODEL.pt.")
    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    if args.config is not None:
        ctx.inputs.append(args.config)
    X, lengths = load_sequences(args.data)
    ctx.inputs.append(args.data)
    ck = train(X, lengths, cfg, args.out, force=args.force, progress=ctx.progress,
               cancel=ctx.cancel)
    ctx.outputs.append(args.out)
    ctx.timings["train"] = ck.get("train_s", 0.0)
    h = ck["history"]
    if len(h["loss"]):
        kl = "/".join(f"{v:.4f}" for v in h["kl"][-1].tolist())
        print(f"trained {len(h['loss'])} epochs on {X.shape[0]} sequences: loss "
              f"{h['loss'][-1].item():.5f} reconstruction {h['rec'][-1].item():.5f} "
              f"KL per layer {kl}; wrote {args.out}")


def predict_cmd(args, ctx) -> None:
    from dataclasses import replace

    import numpy as np

    from engine.jobs import InputError
    from engine.pvrnn.data import load_sequences
    from engine.pvrnn.prediction import predict
    from engine.pvrnn.train import load_checkpoint, model_from_checkpoint

    if args.out.is_dir():  # before the work, not after it
        raise InputError(f"Output '{args.out}' is a folder; give a file name such as "
                         "PRED.npz.")
    ck = load_checkpoint(args.model)
    cfg = model_from_checkpoint(ck, args.model)[1]
    ctx.inputs.append(args.model)
    X, lengths = load_sequences(args.data)
    ctx.inputs.append(args.data)
    given = {k: getattr(args, k) for k in ("window", "iterations", "lr", "horizon",
                                           "meta_prior") if getattr(args, k) is not None}
    settings = replace(cfg.er, **given)
    pred = predict(ck, X, lengths, settings, chunk=args.chunk, data_name=args.data,
                   model_name=args.model, progress=ctx.progress, cancel=ctx.cancel)
    pred.save(args.out)
    ctx.outputs.append(args.out)
    lat = pred.latency_ms
    median, p95 = float(np.nanmedian(lat)), float(np.nanpercentile(lat, 95))
    ctx.timings["er_median_ms"] = median
    print(f"predicted {X.shape[0]} sequences ({int(lengths.sum())} steps): latency per step "
          f"median {median:.1f} ms, p95 {p95:.1f} ms "
          f"(chunk of {args.chunk or X.shape[0]} sequences); wrote {args.out}")
