#!/usr/bin/env python3
"""Video benchmark of the latent fractional-SDE "what/where" model on held-out moving digits
at 64 x 64 (one digit and two digits; held-out MNIST digits, the last fifth of each class; at
a wall a digit draws a new random velocity as in training ("random bounce") or keeps its
mirrored velocity as in the original Moving MNIST ("reflect bounce"); slow digits move
1.3-3.8 px per frame, fast ones 3.2-6.4 px, training draws from 1.3-6.4; "svg" clips follow
the generator of Denton & Fergus's Stochastic Moving MNIST (SVG, 2018) instead: 32 px digits
summed, integer positions and velocities of -4..4 px per axis, both redrawn at a wall; see
svg_clips); "srivastava" clips follow Srivastava et al.'s Moving MNIST generator (28 px
digits at whole pixels, 3.6 px per frame, put on the wall at a bounce; see srivastava_clips),
"lee" clips Tencia Lee's Moving MNIST script, the one most Moving MNIST code copies (28 px
digits at the nearest whole pixel, 2-6 px per frame, turned short of the edge; see
lee_clips), conditioning on N = 10 frames and predicting M = 10, 8 samples.

Per predicted frame, averaged over clips: PSNR and SSIM of the sample mean and the
best-of-samples PSNR for the fractional model (MA-fBM, learned H), the Brownian model (same
architecture, same training budget and batches), copy-last-frame, an all-black frame and the
mean of the context frames; the learned H; training wall and CPU time. ``--seeds 3`` trains
three seeds of both models; the spread (mean +- std) is reported over the models named
"fractional seed ..." and over those named "Brownian seed ..." (trained here, or given as
``--model "fractional seed 1=PATH"``).
A bound is scored beside them: the *ideal* forecaster's 8 futures, drawn by the clip
generator itself from each digit's true position and velocity at the last context frame (no
model can know more, except that it also knows a velocity redrawn at a wall in the last
context step, which the frames do not show yet): after a random bounce even its sample mean
spreads.

    .venv/bin/python benchmarks/fsde_video.py [--steps 300] [--seeds 1] [--clips 50]
        [--demo] [--model NAME=PATH ...] [--bounce random|reflect|both]
        [--sets slow,fast,svg,srivastava,lee] [--data CLIPS.npy [--time-first] ...]
        [--workdir DIR] [--json OUT.json]

``--seeds 0 --demo --model "Brownian=B.pt"`` scores trained models only (no training).
``--data CLIPS.npy`` (repeatable) scores your own clips instead of the generated sets: greyscale
(B, T, H, W), T >= 20, uint8 or [0, 1] (a .npz with a ``clips`` array too; ``--time-first``
for (T, B, H, W), the layout of Moving MNIST's ``mnist_test_seq.npy``); all its clips unless
``--clips`` is given; no ideal row (there is no generator to ask).

Checkpoints go to --workdir (default: a temp folder), so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WORKBENCH_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

N_CONTEXT, HORIZON, SAMPLES, SIZE = 10, 10, 8, 64
BASELINES = ("copy-last-frame", "black frame", "context mean")
IDEAL = "ideal (true state, generator's futures)"  # a bound, not a baseline: see run()
SPEEDS = {"slow": (0.02, 0.06), "fast": (0.05, 0.10)}  # frame widths per frame
DEMO = Path(__file__).resolve().parents[1] / "resources" / "fsde" / "demo_model.pt"


def svg_clips(n: int, n_digits: int, seed: int, bounce: str = "random", futures: int = 0):
    """Held-out clips (n, N+M, 64, 64) made the way Denton & Fergus's Stochastic Moving MNIST
    generator (SVG, 2018) makes them, written from its description: each digit resized to
    32 x 32 at an integer top-left corner in [0, 32), integer velocity in -4..4 px per axis; a
    digit that left the frame is put back on the edge and, with random bounces, draws a new
    velocity (1..4 px away from the wall, -4..4 along it; reflect: mirrored); digits summed,
    clipped at 1. With ``futures`` > 0 also returns that many futures (futures, n, M, 64, 64)
    drawn by the same generator from each digit's true state after the context frames."""
    from engine._cv2 import cv2
    from engine.fsde.video_data import digit_pool

    pool = digit_pool("test")
    size, ds = SIZE, 32

    def run(digit, p, v, frames, r):  # draw into frames (T, H, W), moving p, v in place
        for t in range(len(frames)):
            for ax in (0, 1):
                if p[ax] < 0 or p[ax] >= size - ds:
                    inward = 1 if p[ax] < 0 else -1
                    p[ax] = 0 if p[ax] < 0 else size - ds - 1
                    if bounce == "random":
                        v[ax], v[1 - ax] = inward * r.integers(1, 5), r.integers(-4, 5)
                    else:
                        v[ax] = -v[ax]
            frames[t, p[0]:p[0] + ds, p[1]:p[1] + ds] += digit
            p += v

    def start(r):  # a digit, its top-left corner (row, col) and velocity
        digit = cv2.resize(pool[r.integers(len(pool))], (ds, ds)).astype(np.float32) / 255
        return digit, r.integers(0, size - ds, 2), r.integers(-4, 5, 2)

    out, fut = _run_clips(n, n_digits, seed, futures, start, run)
    out = np.minimum(out, 1.0)
    return (out, np.minimum(fut, 1.0)) if futures else out


def _run_clips(n: int, n_digits: int, seed: int, futures: int, start, run):
    """The clip generators' common part: ``n`` clips of N+M frames (n, N+M, 64, 64) with
    ``n_digits`` digits each, ``start(rng)`` -> (digit, position, velocity) and ``run(digit,
    p, v, frames, rng)`` drawing them; and ``futures`` futures (futures, n, M, 64, 64) run
    from each digit's state after the context frames with a second generator."""
    rng, fut_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    out = np.zeros((n, N_CONTEXT + HORIZON, SIZE, SIZE), np.float32)
    fut = np.zeros((futures, n, HORIZON, SIZE, SIZE), np.float32)
    for b in range(n):
        for _ in range(n_digits):
            digit, p, v = start(rng)
            run(digit, p, v, out[b, :N_CONTEXT], rng)
            state = p.copy(), v.copy()
            run(digit, p, v, out[b, N_CONTEXT:], rng)
            for f in range(futures):
                run(digit, state[0].copy(), state[1].copy(), fut[f, b], fut_rng)
    return out, fut


def srivastava_clips(n: int, n_digits: int, seed: int, bounce: str = "reflect",
                     futures: int = 0):
    """Held-out clips (n, N+M, 64, 64) made the way Srivastava et al.'s Moving MNIST generator
    (2015) makes them, written from its description: a digit's 28 px box has its corner at a
    position in the unit square, scaled by the 36 px it can travel and truncated to whole
    pixels; it starts uniform in the square with a uniform direction and moves 0.1 of the
    square (3.6 px) per frame, each frame drawn after the step; a step that leaves the square
    puts the digit on the wall and mirrors that velocity component (random bounce: draws a
    new direction pointing away from the wall, same speed); digits composited by maximum.
    With ``futures`` > 0 also returns that many futures (futures, n, M, 64, 64) drawn by the
    same generator from each digit's true state after the context frames."""
    from engine.fsde.video_data import digit_pool

    pool = digit_pool("test").astype(np.float32) / 255
    ds = pool.shape[-1]
    travel = SIZE - ds

    def run(digit, p, v, frames, r):  # draw into frames (T, H, W), moving p, v in place
        for t in range(len(frames)):
            p += 0.1 * v
            hit = (p <= 0) | (p >= 1)
            if hit.any():
                p[:] = p.clip(0, 1)
                if bounce == "random":
                    a = r.uniform(0, 2 * np.pi)
                    new = np.array([np.sin(a), np.cos(a)])
                    v[:] = np.where(hit, np.where(p > 0.5, -1.0, 1.0) * np.abs(new), new)
                else:
                    v[hit] = -v[hit]
            r0, c0 = (p * travel).astype(int)
            np.maximum(frames[t, r0:r0 + ds, c0:c0 + ds], digit,
                       out=frames[t, r0:r0 + ds, c0:c0 + ds])

    def start(r):  # a digit, its position in the unit square (row, col) and direction
        digit, p, a = pool[r.integers(len(pool))], r.uniform(0, 1, 2), r.uniform(0, 2 * np.pi)
        return digit, p, np.array([np.sin(a), np.cos(a)])

    out, fut = _run_clips(n, n_digits, seed, futures, start, run)
    return (out, fut) if futures else out


def lee_clips(n: int, n_digits: int, seed: int, bounce: str = "reflect", futures: int = 0):
    """Held-out clips (n, N+M, 64, 64) made the way Tencia Lee's Moving MNIST script (the one
    most Moving MNIST code copies) makes them, written from its description: a 28 px digit's
    top-left corner starts uniform in [0, 36) per axis, moves at a whole number of 2..6 px per
    frame in a uniform direction and is drawn at the nearest whole pixel; when the next step
    would take the corner more than 2 px past [0, 36] that velocity component is reversed
    before stepping (the digit turns where it is, short of the wall, and may stand up to 2 px
    out of the frame); digits summed, clipped at 1 (random bounce: a new direction pointing
    back, same speed). With ``futures`` > 0 also returns that many futures (futures, n, M, 64,
    64) drawn by the same generator from each digit's true state after the context frames."""
    from engine.fsde.video_data import digit_pool

    pool = digit_pool("test").astype(np.float32) / 255
    ds = pool.shape[-1]
    lim = SIZE - ds

    def run(digit, p, v, frames, r):  # draw into frames (T, H, W), moving p, v in place
        for t in range(len(frames)):
            r0, c0 = np.rint(p).astype(int)
            a, b = max(0, -r0), max(0, -c0)
            frames[t, r0 + a:r0 + ds, c0 + b:c0 + ds] += digit[a:SIZE - r0, b:SIZE - c0]
            turn = (p + v < -2) | (p + v > lim + 2)
            if turn.any():
                if bounce == "random":
                    ang = r.uniform(0, 2 * np.pi)
                    new = np.hypot(*v) * np.array([np.sin(ang), np.cos(ang)])
                    v[:] = np.where(turn, -np.sign(v) * np.abs(new), new)
                else:
                    v[turn] = -v[turn]
            p += v

    def start(r):  # a digit, its top-left corner (row, col) and velocity
        a = r.uniform(-np.pi, np.pi)
        return (pool[r.integers(len(pool))], r.uniform(0, lim, 2),
                r.integers(2, 7) * np.array([np.sin(a), np.cos(a)]))

    out, fut = _run_clips(n, n_digits, seed, futures, start, run)
    out = np.minimum(out, 1.0)
    return (out, np.minimum(fut, 1.0)) if futures else out


def baselines(clips: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions (B, M, H, W) of the model-free baselines from clips (B, N+M, H, W)."""
    ctx = clips[:, :N_CONTEXT]
    rep = lambda f: np.repeat(f[:, None], HORIZON, axis=1)  # noqa: E731
    return {"copy-last-frame": rep(ctx[:, -1]), "black frame": np.zeros_like(clips[:, N_CONTEXT:]),
            "context mean": rep(ctx.mean(1))}


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over clips of PSNR and SSIM per predicted frame: (B, M, H, W) -> (M,) each."""
    from engine.fsde.video_data import psnr, ssim

    return {"psnr": np.mean([psnr(a, b) for a, b in zip(pred, truth)], axis=0),
            "ssim": np.mean([ssim(a, b) for a, b in zip(pred, truth)], axis=0)}


def evaluate(model, clips: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Sample-mean PSNR / SSIM and best-of-samples PSNR per predicted frame (M,), averaged
    over clips (scored 10 clips at a time: the samples of a large set never sit in memory)."""
    from engine._torch import torch

    torch.manual_seed(seed)
    total: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for i in range(0, len(clips), 10):
            x = torch.from_numpy(clips[i:i + 10, :N_CONTEXT, None])
            pred = model.forecast(x, HORIZON, SAMPLES)[:, :, N_CONTEXT:, 0].numpy()
            for k, v in score_samples(pred, clips[i:i + 10, N_CONTEXT:]).items():
                total[k] = total.get(k, 0.0) + v * len(x)
    return {k: v / len(clips) for k, v in total.items()}


def score_samples(samples: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Samples (S, B, M, H, W) against truth (B, M, H, W): sample-mean PSNR / SSIM and
    best-of-samples PSNR per predicted frame (M,)."""
    from engine.fsde.video_data import psnr

    out = scores(samples.mean(0), truth)
    best = np.max([[psnr(s[b], truth[b]) for b in range(len(truth))] for s in samples], axis=0)
    out["best"] = best.mean(0)
    return out


def train(brownian: bool, steps: int, seed: int, workdir: Path, batch: int, lr: float):
    """Train (or resume) one model on mixed one/two-digit clips: -> (model, wall s, CPU s)."""
    from engine.fsde.video_model import load_model
    from engine.fsde.video_train import train_video
    from engine.cli import TextProgressBar
    from engine.jobs import CancelToken, Progress

    out = workdir / f"{'brownian' if brownian else 'fractional'}_s{seed}_{steps}.pt"
    t0, c0 = time.perf_counter(), time.process_time()
    train_video("moving-digits", out, {"brownian": brownian, "size": SIZE},
                {"steps": steps, "seed": seed, "batch_size": batch, "lr": lr, "n_digits": 0,
                 "checkpoint_every": 50},
                progress=Progress(TextProgressBar(min_interval_s=30.0)), cancel=CancelToken())
    return load_model(out), time.perf_counter() - t0, time.process_time() - c0


def run(steps: int, seeds: int, n_clips: int | None, batch: int, lr: float, workdir: Path,
        demo: bool, extra: list[str] = (), bounces: tuple[str, ...] = ("random",),
        kinds: tuple[str, ...] = ("slow", "fast", "svg", "srivastava", "lee"),
        data: list[Path] = (), time_first: bool = False) -> dict:
    """Score the models on generated sets (``kinds`` x ``bounces`` x 1 and 2 digits, 50
    clips each unless ``n_clips``) or, with ``data``, on the clips of those files (all of
    them unless ``n_clips``)."""
    from engine.fsde.video_data import continue_digits, load_clip_set, moving_digits

    def clips(kind, bounce, d):  # -> clips (B, N+M, H, W), the ideal's futures (S, B, M, H, W)
        if kind == "svg":
            return svg_clips(n_clips, d, seed=7240 + d, bounce=bounce, futures=SAMPLES)
        if kind == "srivastava":
            return srivastava_clips(n_clips, d, seed=8240 + d, bounce=bounce, futures=SAMPLES)
        if kind == "lee":
            return lee_clips(n_clips, d, seed=9240 + d, bounce=bounce, futures=SAMPLES)
        made = moving_digits(n_clips, N_CONTEXT + HORIZON, SIZE, d, seed=4240 + d,
                             split="test", bounce=bounce, speed=SPEEDS[kind])
        return made.frames, continue_digits(made, N_CONTEXT - 1, HORIZON, SAMPLES, seed=d)

    if data:
        made, names = {}, set()
        for p in data:
            c = load_clip_set(p, time_first, N_CONTEXT + HORIZON, n_clips)
            name = str(p) if p.name in names else p.name
            names.add(p.name)
            made[f"{name} ({len(c)} clips of {c.shape[1]} frames, {c.shape[2]}x{c.shape[3]}; "
                 f"the first {N_CONTEXT + HORIZON} scored)"] = (c[:, :N_CONTEXT + HORIZON], None)
    else:
        n_clips = n_clips or 50
        made = {f"{d} digit{'s' if d > 1 else ''}, {k}, {b} bounce": clips(k, b, d)
                for k in kinds for b in bounces for d in (1, 2)}
    sets = {name: frames for name, (frames, _) in made.items()}
    res: dict = {"steps": steps, "batch": batch, "lr": lr,
                 "clips": None if data else n_clips, "seeds": seeds,
                 "threads": int(os.environ["WORKBENCH_THREADS"]), "rows": {d: {} for d in sets},
                 "models": {}}
    for d, (clips, futures) in made.items():
        for name, pred in baselines(clips).items():
            res["rows"][d][name] = scores(pred, clips[:, N_CONTEXT:])
        if futures is not None:
            res["rows"][d][IDEAL] = score_samples(futures, clips[:, N_CONTEXT:])
    models = []
    if demo and DEMO.is_file():
        from engine.fsde.video_model import load_model

        models.append(("fractional (bundled demo)", load_model(DEMO), None, None))
    for item in extra:  # NAME=PATH: an already trained model
        from engine.fsde.video_model import load_model

        name, _, path = item.partition("=")
        models.append((name, load_model(path), None, None))
    for seed in range(seeds):
        for brownian in (False, True):
            model, wall, cpu = train(brownian, steps, seed, workdir, batch, lr)
            models.append((f"{'Brownian' if brownian else 'fractional'} seed {seed}", model,
                           wall, cpu))
    for name, model, wall, cpu in models:
        res["models"][name] = {"hurst": model.hurst, "wall_s": wall, "cpu_s": cpu}
        for d, clips in sets.items():
            res["rows"][d][name] = evaluate(model, clips)
    return res


def _line(name: str, v: np.ndarray, fmt: str) -> str:
    return f"{name:<28}" + "".join(format(x, fmt) for x in v) + format(float(np.mean(v)), fmt)


def print_report(res: dict) -> None:
    trained = (f"; trained here: {res['seeds']} seed(s) x {res['steps']} steps x batch "
               f"{res['batch']} (mixed 1/2 digits), lr {res['lr']}") if res["seeds"] else ""
    where = (f"Held-out moving digits {SIZE}x{SIZE}, {res['clips']} clips per row set"
             if res["clips"] else "Your clips")
    print(f"\n{where}, "
          f"context {N_CONTEXT}, horizon {HORIZON}, {SAMPLES} samples{trained}; "
          f"{res['threads']} thread(s)")
    head = f"{'method':<28}" + "".join(f"{k + 1:>7}" for k in range(HORIZON)) + f"{'mean':>7}"
    for d, rows in res["rows"].items():
        for metric, fmt in (("psnr", "7.2f"), ("ssim", "7.3f"), ("best", "7.2f")):
            title = {"psnr": "PSNR of the sample mean (dB)", "ssim": "SSIM of the sample mean",
                     "best": "best-of-samples PSNR (dB)"}[metric]
            print(f"\n{d}: {title}\n{head}")
            for name, r in rows.items():
                if metric in r:
                    print(_line(name, r[metric], fmt))
        best = np.max([rows[b]["psnr"] for b in BASELINES], axis=0)
        print(f"\n{d}: checks against the best baseline per frame")
        for name, r in rows.items():
            if name in BASELINES:
                continue
            gain = r["psnr"] - best
            print(f"  {name:<28} beats every baseline at every frame: "
                  f"{bool(np.all(gain > 0))}; mean gain {gain.mean():+.2f} dB (min "
                  f"{gain.min():+.2f}); SSIM {r['ssim'].mean():.3f} vs black "
                  f"{rows['black frame']['ssim'].mean():.3f}")
    print(f"\n{'model':<28}{'H':>7}{'train wall s':>14}{'train CPU s':>13}")
    for name, m in res["models"].items():
        wall = f"{m['wall_s']:14.0f}" if m["wall_s"] is not None else f"{'-':>14}"
        cpu = f"{m['cpu_s']:13.0f}" if m["cpu_s"] is not None else f"{'-':>13}"
        print(f"{name:<28}{m['hurst']:7.3f}{wall}{cpu}")
    for kind in ("fractional", "Brownian"):
        names = [n for n in res["models"] if n.startswith(kind + " seed")]
        if len(names) < 2:
            continue
        print(f"\nSpread over the {len(names)} {kind} models (mean over frames; mean +- std)")
        for d, rows in res["rows"].items():
            p = [float(np.mean(rows[n]["psnr"])) for n in names]
            s = [float(np.mean(rows[n]["ssim"])) for n in names]
            print(f"  {d}: PSNR {np.mean(p):.2f} +- {np.std(p):.2f} dB, "
                  f"SSIM {np.mean(s):.3f} +- {np.std(s):.3f}")
        hs = [res["models"][n]["hurst"] for n in names]
        print(f"  H: {np.mean(hs):.3f} +- {np.std(hs):.3f}")


def main() -> int:
    from engine.jobs import InputError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=1, help="seeds to train (0: none)")
    ap.add_argument("--clips", type=int, help="clips per set (default: 50 generated, or all "
                                              "of a --data file)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--demo", action="store_true", help="also score the bundled demo model")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="also score this trained model (repeatable)")
    ap.add_argument("--bounce", choices=("random", "reflect", "both"), default="both",
                    help="held-out clips whose digits draw a new velocity at a wall (random, "
                         "as in training), keep it mirrored (reflect), or both row sets")
    ap.add_argument("--sets", default="slow,fast,svg,srivastava,lee",
                    help="comma-separated clip kinds: slow (digits at 1.3-3.8 px per frame), "
                         "fast (3.2-6.4 px), svg (Denton & Fergus's generator), srivastava "
                         "(Srivastava et al.'s Moving MNIST generator), lee (Tencia Lee's "
                         "Moving MNIST script)")
    ap.add_argument("--data", type=Path, action="append", default=[], metavar="CLIPS.npy",
                    help="score these clips instead of generated ones (repeatable): greyscale "
                         "(B, T, H, W), T >= 20, uint8 or [0, 1]; .npz: a 'clips' array")
    ap.add_argument("--time-first", action="store_true",
                    help="--data arrays are (T, B, H, W), as Moving MNIST's mnist_test_seq.npy")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="fsde_video_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    bounces = ("random", "reflect") if a.bounce == "both" else (a.bounce,)
    kinds = tuple(k.strip() for k in a.sets.split(","))
    if a.clips is not None and a.clips < 1:
        ap.error("--clips takes a positive number of clips")
    if set(kinds) - {"slow", "fast", "svg", "srivastava", "lee"}:
        ap.error(f"--sets takes slow, fast, svg, srivastava and lee, not {a.sets!r}")
    try:
        res = run(a.steps, a.seeds, a.clips, a.batch, a.lr, work, a.demo, a.model, bounces,
                  kinds, a.data, a.time_first)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(res)
    if a.json:
        from db.atomic import write_json

        rows = {str(d): {n: {k: np.asarray(v).tolist() for k, v in r.items()}
                         for n, r in rs.items()} for d, rs in res["rows"].items()}
        write_json(a.json, {**res, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
