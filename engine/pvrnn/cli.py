"""`main.py pvrnn train|predict`: training and online error regression from the shell."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("pvrnn", help="PV-RNN: train on sequences, predict online by "
                                          "error regression")
    actions = parser.add_subparsers(dest="action", required=True)
    q = actions.add_parser(
        "train", help="train a PV-RNN (resumes from --out if it is an unfinished checkpoint)",
        description="Train a PV-RNN on DATA (.npy (N, T, D) or .csv, one row per step). The "
                    "model file doubles as a checkpoint: rerun the same command to resume.")
    q.add_argument("--data", required=True, type=Path, help="training data .npy or .csv")
    q.add_argument("--out", required=True, type=Path, help="model file to write (MODEL.pt)")
    q.add_argument("--config", type=Path, default=None,
                   help="TOML configuration (default: resources/pvrnn/default.toml values)")
    q.add_argument("--epochs", type=int, default=None, help="override the configured epochs")
    q.add_argument("--seed", type=int, default=None, help="override the configured seed")
    q.set_defaults(func=train_cmd, command="pvrnn train")

    p = actions.add_parser(
        "predict", help="online error regression over every sequence, step by step",
        description="Run error regression over every sequence of DATA with a trained model "
                    "and write observed values, H-step predictions, KL per layer and the "
                    "latency of every step to PRED.npz (data units).")
    p.add_argument("--model", required=True, type=Path, help="trained model (MODEL.pt)")
    p.add_argument("--data", required=True, type=Path, help="sequences .npy or .csv")
    p.add_argument("--out", required=True, type=Path, help="output PRED.npz")
    p.add_argument("--window", type=int, default=None, help="ER window in steps (default 15)")
    p.add_argument("--iterations", type=int, default=None,
                   help="Adam iterations per step (default 15)")
    p.add_argument("--lr", type=float, default=None, help="ER learning rate (default 0.1)")
    p.add_argument("--horizon", type=int, default=None, help="steps predicted ahead (default 10)")
    p.add_argument("--meta-prior", dest="meta_prior", type=float, default=None,
                   help="meta-prior w used during ER for every layer (default: the trained w)")
    p.add_argument("--chunk", type=int, default=None,
                   help="sequences processed together (default: all; 1 = one at a time)")
    p.set_defaults(func=predict_cmd, command="pvrnn predict")


def train_cmd(args, ctx) -> None:
    from engine.jobs import InputError
    from engine.pvrnn.config import load_config
    from engine.pvrnn.data import load_sequences
    from engine.pvrnn.train import train

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    cfg.validate("the command line")
    if args.config is not None:
        ctx.inputs.append(args.config)
    X, lengths = load_sequences(args.data)
    ctx.inputs.append(args.data)
    if args.out.suffix == "" or args.out.is_dir():
        raise InputError(f"Output '{args.out}' must be a file name such as MODEL.pt.")
    ck = train(X, lengths, cfg, args.out, progress=ctx.progress, cancel=ctx.cancel)
    ctx.outputs.append(args.out)
    ctx.timings["train"] = ck.get("train_s", 0.0)
    h = ck["history"]
    if len(h["loss"]):
        kl = "/".join(f"{v:.4f}" for v in h["kl"][-1].tolist())
        print(f"trained {len(h['loss'])} epochs on {X.shape[0]} sequences: loss "
              f"{h['loss'][-1].item():.5f} reconstruction {h['rec'][-1].item():.5f} "
              f"KL per layer {kl}; wrote {args.out}")


def predict_cmd(args, ctx) -> None:
    import numpy as np

    from db.atomic import write_npz
    from engine.jobs import InputError
    from engine.pvrnn.data import check_dim, load_sequences
    from engine.pvrnn.er import error_regression
    from engine.pvrnn.train import load_model

    model, cfg, lo, hi, _ = load_model(args.model)
    ctx.inputs.append(args.model)
    X, lengths = load_sequences(args.data)
    ctx.inputs.append(args.data)
    check_dim(X, model.dim, args.data, args.model)
    e = cfg.er
    window = args.window if args.window is not None else e.window
    iterations = args.iterations if args.iterations is not None else e.iterations
    lr = args.lr if args.lr is not None else e.lr
    horizon = args.horizon if args.horizon is not None else e.horizon
    if window < 1 or iterations < 0 or lr <= 0 or horizon < 1 or (
            args.meta_prior is not None and args.meta_prior < 0) or (
            args.chunk is not None and args.chunk < 1):
        raise InputError("--window, --horizon and --chunk must be >= 1, --iterations >= 0, "
                         "--lr > 0 and --meta-prior >= 0.")
    res = error_regression(model, lo, hi, X, lengths, window=window, iterations=iterations,
                           lr=lr, horizon=horizon, meta_prior=args.meta_prior,
                           chunk=args.chunk, progress=ctx.progress, cancel=ctx.cancel)
    write_npz(args.out, lengths=lengths, window=np.int64(window),
              iterations=np.int64(iterations), lr=np.float64(lr), horizon=np.int64(horizon),
              **res)
    ctx.outputs.append(args.out)
    lat = res["latency_ms"]
    ctx.timings["er_median_ms"] = float(np.nanmedian(lat))
    print(f"predicted {X.shape[0]} sequences ({int(lengths.sum())} steps): latency per step "
          f"median {np.nanmedian(lat):.1f} ms, p95 {np.nanpercentile(lat, 95):.1f} ms "
          f"(chunk of {args.chunk or X.shape[0]} sequences); wrote {args.out}")
