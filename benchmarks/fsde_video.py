#!/usr/bin/env python3
"""Video benchmark for the latent fractional SDE: held-out Stochastic Moving Digits (32 x 32,
one digit), condition on N = 10 frames, predict M = 10.

Per predicted frame: PSNR and SSIM of copy-last-frame, an all-black frame, the mean of the
context frames, the Brownian-driven model and the fractional (MA-fBM) model (same architecture,
same training budget, same batches); the held-out ELBO of both models; training throughput in
frames per second (WORKBENCH_THREADS threads, default 2).

    .venv/bin/python benchmarks/fsde_video.py [--quick] [--steps N] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

N_CONTEXT, HORIZON = 10, 10


def baselines(clips: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions (B, M, H, W) of the three model-free baselines from clips (B, N+M, H, W)."""
    ctx = clips[:, :N_CONTEXT]
    rep = lambda f: np.repeat(f[:, None], HORIZON, axis=1)  # noqa: E731
    return {"copy-last-frame": rep(ctx[:, -1]), "black frame": np.zeros_like(clips[:, N_CONTEXT:]),
            "mean of context": rep(ctx.mean(1))}


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean PSNR and SSIM per predicted frame over clips: (B, M, H, W) -> (M,), (M,)."""
    from engine.fsde.video_data import psnr, ssim

    p = np.mean([psnr(a, b) for a, b in zip(pred, truth)], axis=0)
    s = np.mean([ssim(a, b) for a, b in zip(pred, truth)], axis=0)
    return p, s


def train_model(brownian: bool, steps: int, seed: int, out: Path, batch: int = 16):
    from engine.fsde.video_model import load_model
    from engine.fsde.video_train import train_video
    from engine.jobs import CancelToken, Progress, TextProgressBar

    monitor: list = []
    t0 = time.perf_counter()
    train_video("moving-digits", out, {"brownian": brownian},
                {"steps": steps, "seed": seed, "batch_size": batch, "checkpoint_every": 10 ** 9},
                progress=Progress(TextProgressBar(min_interval_s=10.0)), cancel=CancelToken(),
                monitor=monitor)
    wall = time.perf_counter() - t0
    model = load_model(out)
    fps = monitor[-1]["frames_per_s"]
    return model, fps, wall


def evaluate(model, clips: np.ndarray, samples: int, seed: int = 0):
    """Sample-mean predictions (B, M, H, W) and the held-out ELBO per clip (nats)."""
    from engine._torch import torch

    x = torch.from_numpy(clips[:, :, None])
    torch.manual_seed(seed)
    preds, elbos = [], []
    with torch.no_grad():
        for i in range(0, len(clips), 25):
            xb = x[i:i + 25]
            preds.append(model.forecast(xb[:, :N_CONTEXT], HORIZON, samples)
                         .mean(0)[:, N_CONTEXT:, 0].numpy())
            elbos.append(float(model.elbo(xb)["elbo"]) * len(xb))
    return np.concatenate(preds), sum(elbos) / len(clips)


def run(quick: bool = False, steps: int | None = None, n_test: int | None = None,
        seeds: int | None = None, batch: int = 16) -> dict:
    """Train both models, score everything; returns a dict of per-frame tables and numbers."""
    import tempfile

    from engine.fsde.video_data import moving_digits

    steps = steps or (60 if quick else 2000)
    n_test = n_test or (20 if quick else 100)
    seeds = seeds or 1
    clips = moving_digits(n_test, N_CONTEXT + HORIZON, 32, 1, seed=12345, split="test").frames
    truth = clips[:, N_CONTEXT:]
    table: dict[str, dict] = {}
    for name, pred in baselines(clips).items():
        p, s = scores(pred, truth)
        table[name] = {"psnr": p, "ssim": s, "elbo": None, "fps": None}
    with tempfile.TemporaryDirectory() as tmp:
        for name, brownian in (("Brownian SDE", True), ("fractional SDE", False)):
            runs = []
            for seed in range(seeds):
                model, fps, wall = train_model(brownian, steps, seed,
                                               Path(tmp) / f"{name}{seed}.pt", batch)
                pred, elbo = evaluate(model, clips, samples=4 if quick else 8, seed=seed)
                p, s = scores(pred, truth)
                runs.append({"psnr": p, "ssim": s, "elbo": elbo, "fps": fps, "wall": wall,
                             "hurst": model.hurst})
            table[name] = {k: (np.median([r[k] for r in runs], axis=0)) for k in runs[0]}
    demo = Path(__file__).resolve().parents[1] / "resources" / "fsde" / "demo_model.pt"
    if demo.is_file() and not quick:  # the bundled model: longer training, same architecture
        from engine._torch import torch
        from engine.fsde.video_model import load_model

        model = load_model(demo)
        info = torch.load(demo, map_location="cpu", weights_only=True)
        pred, elbo = evaluate(model, clips, samples=8)
        p, s = scores(pred, truth)
        name = f"fractional demo ({info['step']} x {info['train']['batch_size']})"
        table[name] = {"psnr": p, "ssim": s, "elbo": elbo, "fps": None, "wall": None,
                       "hurst": model.hurst}
    return {"steps": steps, "batch": batch, "n_test": n_test, "seeds": seeds, "table": table,
            "threads": int(os.environ["WORKBENCH_THREADS"])}


def print_report(res: dict) -> None:
    t = res["table"]
    names = list(t)
    print(f"\nHeld-out Stochastic Moving Digits 32x32, 1 digit, {res['n_test']} clips, "
          f"context {N_CONTEXT}, horizon {HORIZON}; models trained {res['steps']} steps "
          f"(batch {res['batch']} x 20 frames), {res['threads']} threads, median over "
          f"{res['seeds']} seed(s)")
    for metric in ("psnr", "ssim"):
        print(f"\n{metric.upper()} per predicted frame" + (" (dB)" if metric == "psnr" else ""))
        print(f"{'method':<28}" + "".join(f"{k + 1:>7}" for k in range(HORIZON)) + f"{'mean':>8}")
        for n in names:
            v = t[n][metric]
            print(f"{n:<28}" + "".join(f"{x:7.2f}" if metric == "psnr" else f"{x:7.3f}"
                                       for x in v) + f"{np.mean(v):8.3f}")
    base = t["copy-last-frame"]["psnr"]
    print("\nPSNR gain over copy-last-frame (dB), min over frames:")
    for n in names[1:]:
        print(f"  {n:<28} {np.min(t[n]['psnr'] - base):+.2f}")
    print("\nModel                      held-out ELBO (nats/clip)  train frames/s  train wall (s)"
          "      H")
    for n in names:
        r = t[n]
        if r["elbo"] is None:
            continue
        fps = f"{r['fps']:14.0f}" if r["fps"] is not None else f"{'-':>14}"
        wall = f"{r['wall']:15.1f}" if r["wall"] is not None else f"{'-':>15}"
        print(f"  {n:<26} {r['elbo']:14.1f} {fps} {wall}   {r['hurst']:.3f}")
    for n in names:
        if n.startswith("fractional"):
            ok = bool(np.all(t[n]["psnr"] > base))
            print(f"{n} beats copy-last-frame on PSNR at every predicted frame: {ok}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = run(quick=a.quick, steps=a.steps, seeds=a.seeds, batch=a.batch)
    print_report(res)
    if a.json:
        from db.atomic import write_json

        write_json(a.json, {**res, "table": {n: {k: (np.asarray(v).tolist() if v is not None
                                                     else None) for k, v in r.items()}
                                             for n, r in res["table"].items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
