"""fsde predict / train on the command line and the engine pieces they share: the Prediction
result type (metrics and baselines, save/load), the one renderer, checkpoint identity,
outputs written together or not at all, one-sentence errors."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from conftest import run_main

from engine.cli import CliContext, is_progress_line
from engine.fsde import render
from engine.fsde.prediction import METHODS, Prediction
from engine.jobs import CancelToken, InputError, Progress

TINY_TOML = """
[model]
size = 32
slots = 1
K = 3
context = 4
horizon = 3
substeps = 1
[train]
steps = 2
batch_size = 2
seed = {seed}
"""


def messages(proc) -> list[str]:
    """stderr without progress-bar lines."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from engine.fsde.video_train import read_config, train_video

    d = tmp_path_factory.mktemp("model")
    cfg = d / "tiny.toml"
    cfg.write_text(TINY_TOML.format(seed=0))
    model_cfg, train_cfg = read_config(cfg)
    train_video("moving-digits", d / "m.pt", model_cfg, train_cfg, progress=Progress(),
                cancel=CancelToken())
    return d / "m.pt"


@pytest.fixture
def clip(tmp_path):
    from engine.fsde.video_data import moving_digits

    path = tmp_path / "clip.npz"
    np.savez(path, frames=moving_digits(1, 9, 32, 1, seed=5, split="test").frames[0])
    return path


# ------------------------------------------------------------------ Prediction
def random_prediction(rng, n=4, m=3, s=2, shape=(16, 16), recon=True):
    frames = rng.random((n + m, *shape)).astype(np.float32)
    samples = rng.random((s, m, *shape)).astype(np.float32)
    rec = rng.random((s, n, *shape)).astype(np.float32) if recon else None
    return Prediction.from_samples(frames, samples, n, rec, settings={"seed": 3})


def test_prediction_metrics_and_baselines_against_hand_formulas():
    rng = np.random.default_rng(0)
    p = random_prediction(rng)
    truth = p.frames[4:].astype(np.float64)

    def psnr(a):
        return np.array([10 * math.log10(1 / np.mean((x - t) ** 2)) for x, t in zip(a, truth)])

    assert np.allclose(p.metrics["psnr"]["black"], psnr(np.zeros_like(truth)))
    assert np.allclose(p.metrics["psnr"]["copy_last"], psnr([p.frames[3]] * 3))
    assert np.allclose(p.metrics["psnr"]["context_mean"], psnr([p.frames[:4].mean(0)] * 3))
    assert np.allclose(p.metrics["psnr"]["model"], psnr(p.samples.mean(0)))
    assert np.allclose(p.best_sample_psnr, np.max([psnr(s) for s in p.samples], axis=0))
    # mean / std over the samples; in the context over the reconstructions
    assert np.allclose(p.mean[4:], p.samples.mean(0)) and np.allclose(p.std[:4], p.recon.std(0))
    assert set(p.metrics["ssim"]) == set(METHODS)
    assert p.metrics["ssim"]["black"].shape == (3,)


def test_prediction_save_load_round_trip_and_legacy_files(tmp_path):
    rng = np.random.default_rng(1)
    p = random_prediction(rng)
    p.resized, p.resize_reason, p.source_size = True, "the video is 480 x 640 pixels", (480, 640)
    p.save(tmp_path / "p.npz")
    q = Prediction.load(tmp_path / "p.npz")
    assert q.context == 4 and q.settings == {"seed": 3} and q.source_size == (480, 640)
    assert q.resized and q.resize_reason == p.resize_reason and q.summary() == p.summary()
    assert np.array_equal(q.std, p.std)
    # an old fsde predict file (frames, samples, recon only): metrics computed on load
    np.savez(tmp_path / "old.npz", frames=p.frames, samples=p.samples, recon=p.recon)
    old = Prediction.load(tmp_path / "old.npz").summary()
    assert old["psnr"] == pytest.approx(p.summary()["psnr"])
    assert old["ssim"] == pytest.approx(p.summary()["ssim"])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        Prediction.load(tmp_path / "bad.npz")


# ------------------------------------------------------------------ renderer
def test_std_colour_map_is_inferno_and_one_render_path():
    assert tuple(render.INFERNO[0]) == (0, 0, 4) and tuple(render.INFERNO[-1]) == (252, 255, 164)
    rng = np.random.default_rng(2)
    p = random_prediction(rng, shape=(8, 12))
    img = render.render_frame(p, 5, sample=1, scale=3)           # a predicted frame
    lay = render._layout(8, 12, 4, 3)
    x0 = lay["g"] + 3 * (lay["pw"] + 2 * lay["b"] + lay["g"]) + lay["b"]
    y0 = lay["head"] + lay["b"]
    std_panel = img[y0:y0 + 24, x0:x0 + 36]
    expect = (render.std_rgb(p.std[5]) * 255 + 0.5).astype(np.uint8).repeat(3, 0).repeat(3, 1)
    assert np.array_equal(std_panel, expect)                    # nearest pixels, inferno
    # predicted frames: orange border; context frames: grey
    assert tuple(img[lay["head"], x0 - lay["b"]]) == render.PREDICTED_RGB
    ctx = render.render_frame(p, 1, scale=3)
    assert tuple(ctx[lay["head"], x0 - lay["b"]]) == render.CONTEXT_RGB
    assert img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0


def test_fit_scale_fills_the_box():
    for box in ((300, 1200), (600, 700), (150, 2000)):
        s = render.fit_scale(32, 32, *box)
        h, w = render.frame_size(32, 32, 4, s)
        assert h <= box[0] and w <= box[1] and (h > 0.95 * box[0] or w > 0.95 * box[1])


# ------------------------------------------------------------------ fsde predict
@pytest.mark.parametrize("fps", ["0", "-5", "nan", "inf", "241"])
def test_predict_rejects_bad_fps_and_writes_nothing(tmp_path, clip, fps):
    out = tmp_path / "pred.mp4"
    out.write_bytes(b"old video")
    proc = run_main("fsde", "predict", "--model", tmp_path / "none.pt", "--video", clip,
                    "--fps", fps, "--out", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = messages(proc)
    assert len(lines) == 1 and "--fps" in lines[0]
    assert out.read_bytes() == b"old video" and not (tmp_path / "pred.npz").exists()


@pytest.mark.parametrize("option,value", [("--context", "2"), ("--horizon", "0"),
                                          ("--samples", "0"), ("--seed", "-1"),
                                          ("--samples", "nan")])
def test_predict_rejects_bad_numbers(tmp_path, clip, option, value):
    proc = run_main("fsde", "predict", "--model", tmp_path / "m.pt", "--video", clip, option,
                    value, "--out", tmp_path / "p.mp4")
    assert proc.returncode == 2 and len(messages(proc)) == 1 and option in messages(proc)[0]


def predict_args(model, video, out, **kw):
    return argparse.Namespace(model=model, video=video, out=out, context=kw.get("context", 4),
                              horizon=kw.get("horizon", 3), samples=2, seed=0, fps=5.0)


def test_predict_writes_npz_and_mp4_together_or_not_at_all(tmp_path, clip, tiny_model,
                                                           monkeypatch):
    from engine.fsde import render as render_mod
    from engine.fsde import video_cli

    out = tmp_path / "pred.mp4"
    out.write_bytes(b"old video")

    def broken(path, frames, fps):
        raise OSError("the encoder failed")

    monkeypatch.setattr(render_mod, "encode_mp4", broken)
    ctx = CliContext(Progress(), CancelToken())
    with pytest.raises(OSError):
        video_cli.predict_cmd(predict_args(tiny_model, clip, out), ctx)
    assert out.read_bytes() == b"old video" and not (tmp_path / "pred.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npz", "pred.mp4"]
    monkeypatch.undo()
    video_cli.predict_cmd(predict_args(tiny_model, clip, out), ctx)
    pred = Prediction.load(tmp_path / "pred.npz")
    assert pred.samples.shape[:2] == (2, 3) and pred.context == 4
    from engine._cv2 import cv2

    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7


def test_corrupt_video_is_exactly_one_line(tmp_path, tiny_model):
    good, bad = tmp_path / "good.mp4", tmp_path / "bad.mp4"
    rng = np.random.default_rng(0)
    render.write_mp4(good, (rng.random((30, 32, 32, 3)) * 255).astype(np.uint8), 10)
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])                      # no moov atom: ffmpeg speaks
    proc = run_main("fsde", "predict", "--model", tiny_model, "--video", bad, "--context", "4",
                    "--horizon", "3", "--out", tmp_path / "p.mp4")
    assert proc.returncode == 2
    assert messages(proc) == [messages(proc)[0]] and "bad.mp4" in messages(proc)[0]


# ------------------------------------------------------------------ fsde train
def test_checkpoint_differences_name_what_changed():
    from engine.fsde.video_cli import checkpoint_differences

    blob = {"config": {"K": 3}, "train": {"seed": 0, "lr": 0.1, "steps": 5, "data_sha256": "a"}}
    same = {"seed": 0, "lr": 0.1, "steps": 50, "data_sha256": "a"}
    assert checkpoint_differences(blob, {"K": 3}, same) == []            # more steps: resume
    assert checkpoint_differences(blob, {"K": 3}, {**same, "data_sha256": "b"}) == ["data"]
    diffs = checkpoint_differences(blob, {"K": 4}, {**same, "seed": 1, "lr": 0.2})
    assert diffs[0] == "model settings" and "seed" in diffs[1] and "lr" in diffs[2]
    old = {"config": {"K": 3}, "train": {"seed": 0, "lr": 0.1}}          # no data recorded
    assert checkpoint_differences(old, {"K": 3}, same) == ["data of unrecorded content"]


def test_train_refuses_another_seed_or_data_unless_force(tmp_path, clip, tiny_model):
    import shutil

    from engine._torch import torch

    out = tmp_path / "m.pt"
    shutil.copy(tiny_model, out)
    before = out.read_bytes()
    cfg1 = tmp_path / "seed1.toml"
    cfg1.write_text(TINY_TOML.format(seed=1))
    cfg0 = tmp_path / "seed0.toml"
    cfg0.write_text(TINY_TOML.format(seed=0))
    for data, cfg, what in (("moving-digits", cfg1, "seed"), (str(clip), cfg0, "data")):
        proc = run_main("fsde", "train", "--data", data, "--out", out, "--config", cfg)
        assert proc.returncode == 2, proc.stderr
        lines = messages(proc)
        assert len(lines) == 1 and what in lines[0] and "--force" in lines[0]
        assert out.read_bytes() == before                        # the old model is untouched
    proc = run_main("fsde", "train", "--data", "moving-digits", "--out", out, "--config", cfg1,
                    "--force")
    assert proc.returncode == 0, proc.stderr
    blob = torch.load(out, weights_only=True)
    assert blob["train"]["seed"] == 1 and blob["train"]["data_sha256"].startswith("moving-digits")


def test_predict_says_when_and_why_the_video_was_resized(tmp_path, tiny_model, capsys):
    from engine.fsde import video_cli

    big = tmp_path / "big.npz"
    rng = np.random.default_rng(0)
    np.savez(big, frames=(rng.random((7, 150, 200)) * 255).astype(np.uint8))
    out = tmp_path / "p.mp4"
    video_cli.predict_cmd(predict_args(tiny_model, big, out), CliContext(Progress(),
                                                                         CancelToken()))
    pred = Prediction.load(tmp_path / "p.npz")
    assert pred.resized and "150 x 200" in pred.resize_reason and pred.source_size == (150, 200)
    assert max(pred.frames.shape[1:3]) == 128
    assert "note:" in capsys.readouterr().out


def test_force_with_a_bad_video_keeps_the_old_model(tmp_path, tiny_model):
    import shutil

    out = tmp_path / "m.pt"
    shutil.copy(tiny_model, out)
    before = out.read_bytes()
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00garbage" * 100)
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML.format(seed=0))
    proc = run_main("fsde", "train", "--data", bad, "--out", out, "--config", cfg, "--force")
    assert proc.returncode == 2 and len(messages(proc)) == 1 and "bad.avi" in messages(proc)[0]
    assert out.read_bytes() == before
