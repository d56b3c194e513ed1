#!/usr/bin/env python3
"""Speed of the video model's renderer: `video_render.scale_shift_grid` (the sampling grid of
an axis-aligned map built by broadcasting) against `F.affine_grid` (the baseline: the same grid
from a batched matrix product), both feeding the same `grid_sample`. Rows: drawing 640 glimpses
at 64 x 64 with the gradient to their positions, encoding a batch of 8 two-digit clips (the
glimpse and position fits draw every frame about 150 times), one training step (batch 8,
context 10 + horizon 10) and one forecast (a clip, 10 -> 10 frames, 8 samples). Median of
--runs runs; the ratio is affine_grid / broadcast, measured in the same run. Threads:
WORKBENCH_THREADS (default all cores).

    .venv/bin/python benchmarks/fsde_video_speed.py [--runs 5]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def affine_grid(scale, shift, height, width):
    """The baseline: the same map as a (B, 2, 3) matrix for F.affine_grid."""
    import torch.nn.functional as F

    from engine._torch import torch

    B = shift.shape[0]
    theta = torch.zeros(B, 2, 3, dtype=shift.dtype, device=shift.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale[..., 1], scale[..., 0]
    theta[:, 0, 2], theta[:, 1, 2] = shift[:, 1], shift[:, 0]
    return F.affine_grid(theta, (B, 1, height, width), align_corners=False)


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from engine._torch import torch
    from engine.fsde import video_render as vr
    from engine.fsde.video_data import moving_digits
    from engine.fsde.video_model import load_model

    root = Path(__file__).resolve().parents[1]
    model = load_model(root / "resources" / "fsde" / "demo_model.pt")
    clips = torch.tensor(moving_digits(8, 20, 64, 2, seed=5).frames)[:, :, None]
    gen = torch.Generator().manual_seed(0)
    glimpses = torch.rand(320, 2, 1, 28, 28, generator=gen)
    centres = torch.rand(320, 2, 2, generator=gen).requires_grad_(True)
    presence = torch.ones(320, 2)

    def draw():
        vr.render(glimpses, centres, presence, 64, 64).sum().backward()

    def step():
        model.zero_grad()
        model.elbo(clips)["loss"].backward()

    rows = [("draw 640 glimpses + gradient", draw),
            ("encode 8 two-digit clips", lambda: model.encode(clips, 10)),
            ("training step (batch 8)", step),
            ("forecast 1 clip, 8 samples", lambda: model.forecast(clips[:1, :10], 10, 8))]
    fast = vr.scale_shift_grid
    print(f"{'step':32s} {'affine_grid (s)':>16s} {'broadcast (s)':>14s} {'ratio':>7s}")
    for name, fn in rows:
        vr.scale_shift_grid = affine_grid
        torch.manual_seed(0)
        base = median_time(fn, args.runs)
        vr.scale_shift_grid = fast
        torch.manual_seed(0)
        new = median_time(fn, args.runs)
        print(f"{name:32s} {base:16.3f} {new:14.3f} {base / new:6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
