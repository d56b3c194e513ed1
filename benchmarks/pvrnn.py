#!/usr/bin/env python3
"""PV-RNN benchmark: error-regression latency, training time, prediction error vs horizon,
and the effect of the meta-prior. Prints tables; takes a few minutes on 2 cores.

    .venv/bin/python benchmarks/pvrnn.py [--quick]

1. ER latency per step at the C++ NRL library's configuration (2 layers, d 40/10, z 4/1,
   tau 2/10, 3-D data, window 15, 15 iterations; their figure: 43 ms per step on a desktop
   CPU) and at window 25 / 100 iterations: this program's numpy ER with one sequence at a
   time (true latency), all sequences batched (cost per sequence-step), and a plain torch
   autograd ER (engine/pvrnn/reference.py, same equations, torch Adam) as the baseline
   measured in the same run.
2. Training time of the default configuration on the synthetic set.
3. RMSE (data units) vs horizon 1..10 on the synthetic set and on BasicMotions (test
   splits) for persistence, the prior alone (no ER) and PV-RNN with ER.
4. Meta-prior w in 1e-4 .. 1e-1 on the synthetic set (trained with that w).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.pvrnn.config import Config, ERSettings, LayerConfig  # noqa: E402
from engine.pvrnn.er import (error_regression, horizon_rmse, persistence,  # noqa: E402
                             prior_alone)
from engine.pvrnn.model import PVRNN, single_thread_blas  # noqa: E402
from engine.pvrnn.train import model_from_checkpoint, train  # noqa: E402

RES = ROOT / "resources"
NRL_MS = 43.0


def model_of(ck) -> tuple[PVRNN, np.ndarray, np.ndarray]:
    """(model, lo, hi) of a checkpoint, by the engine's loader."""
    model, _, lo, hi = model_from_checkpoint(ck)
    return model, lo, hi


def full(X):
    return np.full(len(X), X.shape[1])


def torch_er_latency(model, lo, hi, X, window, iterations, steps, lr=0.1) -> np.ndarray:
    """Per-step latency (ms) of a straightforward torch-autograd ER on one sequence: the
    window's A are leaf tensors, loss_torch (weights frozen) + backward + torch.optim.Adam."""
    from engine._torch import torch
    from engine.pvrnn.data import to_scaled
    from engine.pvrnn.reference import loss_torch

    Xs = to_scaled(X[:1], lo, hi).transpose(1, 0, 2)  # (T, 1, D)
    h_init = model.zeros_state(1)
    h_last = model.zeros_state(1)
    Amu = [np.zeros((0, 1, lay.z)) for lay in model.layers]
    Asig = [np.zeros((0, 1, lay.z)) for lay in model.layers]
    lat = []
    for t in range(steps):
        t0 = time.perf_counter()
        s = max(0, t - window + 1)
        if t >= window:
            h_init = model.advance(h_init, [a[0] for a in Amu])
            Amu, Asig = [a[1:] for a in Amu], [a[1:] for a in Asig]
        nm, ns = model.prior_init(h_last, first=(t == 0))
        Amu = [np.concatenate([a, n[None]]) for a, n in zip(Amu, nm)]
        Asig = [np.concatenate([a, n[None]]) for a, n in zip(Asig, ns)]
        tA = [torch.tensor(a, requires_grad=True) for a in Amu]
        tS = [torch.tensor(a, requires_grad=True) for a in Asig]
        opt = torch.optim.Adam(tA + tS, lr=lr)
        obs, mask = Xs[s:t + 1], np.ones((t - s + 1, 1))
        for _ in range(iterations):
            opt.zero_grad()
            loss, _ = loss_torch(model, tA, tS, obs, mask, float(t - s + 1), h0=h_init,
                                 first=(s == 0), weights_grad=False)
            loss.backward()
            opt.step()
        Amu = [a.detach().numpy() for a in tA]
        Asig = [a.detach().numpy() for a in tS]
        c = model.forward(Amu, Asig, h0=h_init, first=(s == 0))
        h_last = [c[f"h_last{l}"] for l in range(model.L)]
        model.generate(h_last, 10)
        lat.append((time.perf_counter() - t0) * 1000)
    return np.array(lat)


def stats(lat, skip=0) -> tuple[float, float]:
    lat = np.asarray(lat)
    lat = lat[..., skip:] if lat.ndim > 1 else lat[skip:]
    lat = lat[np.isfinite(lat)]
    return float(np.median(lat)), float(np.percentile(lat, 95))


def table(title, header, rows) -> None:
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def latency_section(quick: bool) -> None:
    from engine._torch import torch

    torch.set_num_threads(1)  # tiny ops: one thread is the faster setting for torch too
    bm = np.load(RES / "basicmotions" / "train.npy").astype(np.float64)[:, :, :3]  # 3-D
    test = np.load(RES / "basicmotions" / "test.npy").astype(np.float64)[:, :, :3]
    cfg = Config(layers=[LayerConfig(40, 4, 2.0, 1e-2), LayerConfig(10, 1, 10.0, 1e-2)],
                 epochs=200 if quick else 500)
    ck = train(bm, full(bm), cfg)
    model, lo, hi = model_of(ck)
    rows = []
    for window, iters in ((15, 15), (25, 100)):
        n_seq = 2 if quick or iters > 50 else 4
        one = error_regression(model, lo, hi, test[:n_seq], full(test[:n_seq]), window=window,
                               iterations=iters, chunk=1)["latency_ms"]
        med, p95 = stats(one, skip=window)
        med_all, p95_all = stats(one)
        rows.append(["numpy ER, 1 sequence (steady state, window full)", f"{window}/{iters}",
                     f"{med:.2f}", f"{p95:.2f}", f"{NRL_MS / med:.1f}x"])
        rows.append(["numpy ER, 1 sequence (all steps incl. growing window)", f"{window}/{iters}",
                     f"{med_all:.2f}", f"{p95_all:.2f}", f"{NRL_MS / med_all:.1f}x"])
        nb = 40 if iters <= 50 else 10
        t0 = time.perf_counter()
        batch = error_regression(model, lo, hi, test[:nb], full(test[:nb]), window=window,
                                 iterations=iters)["latency_ms"]
        wall = time.perf_counter() - t0
        per = wall * 1000 / (nb * test.shape[1])
        bmed, bp95 = stats(batch[0], skip=window)
        rows.append([f"numpy ER, {nb} sequences batched: latency of a step", f"{window}/{iters}",
                     f"{bmed:.2f}", f"{bp95:.2f}", f"{NRL_MS / bmed:.1f}x"])
        rows.append([f"numpy ER, {nb} sequences batched: wall time per sequence-step",
                     f"{window}/{iters}", f"{per:.2f}", "", f"{NRL_MS / per:.1f}x"])
        steps = window + (5 if quick else 10)
        tl = torch_er_latency(model, lo, hi, test, window, iters, steps)
        tmed, tp95 = stats(tl, skip=window)
        rows.append(["torch autograd ER, 1 sequence (baseline)", f"{window}/{iters}",
                     f"{tmed:.2f}", f"{tp95:.2f}",
                     f"{NRL_MS / tmed:.1f}x (numpy {tmed / med:.0f}x faster)"])
    table("ER latency per step (2 layers d 40/10 z 4/1 tau 2/10, 3-D BasicMotions accelerometer)",
          ["method", "window/iters", "median ms", "p95 ms", "vs NRL 43 ms"], rows)


def horizon_section(quick: bool) -> dict:
    out = {}
    sets = {"synthetic": (np.load(RES / "pvrnn" / "synthetic_train.npy"),
                          np.load(RES / "pvrnn" / "synthetic_test.npy")),
            "BasicMotions": (np.load(RES / "basicmotions" / "train.npy"),
                             np.load(RES / "basicmotions" / "test.npy"))}
    train_rows = []
    for name, (Xtr, Xte) in sets.items():
        Xtr, Xte = Xtr.astype(np.float64), Xte.astype(np.float64)
        cfg = Config()
        if quick:
            cfg.epochs = 1000
        t0 = time.perf_counter()
        ck = train(Xtr, full(Xtr), cfg)
        train_s = time.perf_counter() - t0
        train_rows.append([name, f"{Xtr.shape}", str(cfg.epochs), f"{train_s:.1f}",
                           f"{ck['history']['rec'][-1]:.5f}"])
        model, lo, hi = model_of(ck)
        H = 10
        res = error_regression(model, lo, hi, Xte, full(Xte), window=cfg.er.window,
                               iterations=cfg.er.iterations, lr=cfg.er.lr, horizon=H)
        rm = {"persistence": horizon_rmse(Xte, persistence(Xte, full(Xte), H)),
              "prior alone": horizon_rmse(Xte, prior_alone(model, lo, hi, Xte, full(Xte), H)),
              "PV-RNN + ER": horizon_rmse(Xte, res["predictions"])}
        out[name] = (rm, ck, cfg)
        rows = [[str(h + 1)] + [f"{rm[k][h]:.4f}" for k in rm]
                + [f"{rm['PV-RNN + ER'][h] / rm['persistence'][h]:.2f}"] for h in range(H)]
        table(f"RMSE vs horizon, {name} test split ({Xte.shape[0]} sequences; ER window "
              f"{cfg.er.window}, {cfg.er.iterations} iterations, lr {cfg.er.lr})",
              ["h", *rm, "ER / persistence"], rows)
        wins = all(rm["PV-RNN + ER"][h] < min(rm["persistence"][h], rm["prior alone"][h])
                   for h in range(5))
        print(f"\nER beats both baselines at horizons 1-5 on {name}: {wins}")
    table("Training the default configuration (single run, 2 shared cores)",
          ["data", "shape", "epochs", "wall s", "final reconstruction"], train_rows)
    return out


def meta_prior_section(quick: bool, done: dict) -> None:
    Xtr = np.load(RES / "pvrnn" / "synthetic_train.npy").astype(np.float64)
    Xte = np.load(RES / "pvrnn" / "synthetic_test.npy").astype(np.float64)
    rows = []
    base = done.get("synthetic")
    for w in (1e-4, 1e-3, 1e-2, 1e-1):
        er_only = ["", "", ""]
        if base is not None:  # the default model (trained with w = 1e-2), ER with --meta-prior w
            model, lo, hi = model_of(base[1])
            er = ERSettings()  # the defaults, with the ER meta-prior set to w
            res = error_regression(model, lo, hi, Xte, full(Xte), window=er.window,
                                   iterations=er.iterations, lr=er.lr, horizon=10,
                                   meta_prior=w)
            rm = horizon_rmse(Xte, res["predictions"])
            er_only = [f"{rm[0]:.4f}", f"{rm[4]:.4f}", f"{rm[9]:.4f}"]
        cfg = Config()
        if quick:
            cfg.epochs = 1000
        for lay in cfg.layers:
            lay.w = w
        ck = train(Xtr, full(Xtr), cfg)
        model, lo, hi = model_of(ck)
        res = error_regression(model, lo, hi, Xte, full(Xte), window=cfg.er.window,
                               iterations=cfg.er.iterations, lr=cfg.er.lr, horizon=10)
        rm = horizon_rmse(Xte, res["predictions"])
        kl = ck["history"]["kl"][-1].tolist()
        rows.append([f"{w:g}", f"{ck['history']['rec'][-1]:.5f}",
                     " / ".join(f"{k:.3f}" for k in kl),
                     f"{rm[0]:.4f}", f"{rm[4]:.4f}", f"{rm[9]:.4f}", *er_only])
    table("Meta-prior w, synthetic set: a model trained with w (both layers, training and "
          "ER), and the default model (w = 1e-2) with only the ER meta-prior set to w",
          ["w", "train reconstruction", "train KL per unit (l1 / l2)", "ER RMSE h=1", "h=5",
           "h=10", "default model, ER w: h=1", "h=5", "h=10"], rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and steps (smoke run)")
    ap.add_argument("--only", choices=("latency", "horizon", "metaprior"), default=None)
    args = ap.parse_args()
    import os

    print(f"# PV-RNN benchmark ({os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f} at start)")
    with single_thread_blas():
        if args.only in (None, "latency"):
            latency_section(args.quick)
        done = horizon_section(args.quick) if args.only in (None, "horizon") else {}
        if args.only in (None, "metaprior"):
            meta_prior_section(args.quick, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
