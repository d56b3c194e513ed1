"""Video half of the fractional-SDE issue: moving digits, the model, training, the CLI."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import run_main

from engine.fsde.video_data import (digit_size, load_video, moving_digits, panel_frames, psnr,
                                    ssim, write_mp4)
from engine.jobs import CancelToken, Cancelled, InputError, Progress

TINY = {"size": 32, "latent_dim": 4, "content_dim": 4, "feat_dim": 16, "hidden": 16, "K": 3,
        "context": 4, "horizon": 3, "substeps": 1}
TINY_TOML = """[model]
latent_dim = 4
content_dim = 4
feat_dim = 16
hidden = 16
K = 3
context = 4
horizon = 3
substeps = 1
[train]
steps = 4
batch_size = 2
checkpoint_every = 2
"""


# --- Stochastic Moving Digits ------------------------------------------------------------------
@pytest.mark.parametrize("size,n_digits", [(32, 1), (32, 2), (64, 1), (64, 2)])
def test_moving_digits_stay_in_frame_and_bounce(size, n_digits):
    clips = moving_digits(6, 40, size=size, n_digits=n_digits, seed=3)
    f, pos = clips.frames, clips.positions
    assert f.shape == (6, 40, size, size) and f.dtype == np.float32
    assert 0.0 <= f.min() and f.max() <= 1.0
    d = digit_size(size)
    assert pos.min() >= 0.0 and pos.max() <= size - d  # the whole digit is always inside
    # every frame shows its digits: ink in every frame, ink near each digit's box
    assert (f.reshape(6, 40, -1).max(-1) > 0.5).all()
    # the digits bounce: at a wall hit the motion along some axis reverses and the speed is
    # redrawn (not a mirror reflection)
    assert clips.bounces.any()
    redrawn = reversed_ = 0
    for b, t, k in np.argwhere(clips.bounces):
        if t < 1 or t + 2 >= 40 or clips.bounces[b, t - 1, k] or clips.bounces[b, t + 1, k]:
            continue
        v_before = pos[b, t, k] - pos[b, t - 1, k]
        v_after = pos[b, t + 2, k] - pos[b, t + 1, k]
        reversed_ += bool((np.sign(v_before) != np.sign(v_after)).any())
        redrawn += abs(np.linalg.norm(v_before) - np.linalg.norm(v_after)) > 1e-3
    assert reversed_ >= 3 and redrawn >= 3
    # between walls a digit moves in a straight line at constant velocity
    free = ~clips.bounces[:, :-2, 0] & ~clips.bounces[:, 1:-1, 0]
    acc = np.diff(pos[:, :, 0], n=2, axis=1)
    assert np.abs(acc[free]).max() < 1e-4


def test_moving_digits_deterministic_from_seed():
    a = moving_digits(3, 12, seed=7).frames
    assert np.array_equal(a, moving_digits(3, 12, seed=7).frames)
    assert not np.array_equal(a, moving_digits(3, 12, seed=8).frames)
    # train and test pools use different digits
    assert not np.array_equal(a, moving_digits(3, 12, seed=7, split="test").frames)


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 32)).astype(np.float32)
    assert np.all(psnr(a, a) > 90) and np.allclose(ssim(a, a), 1.0)
    noisy = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    assert np.allclose(psnr(np.zeros_like(a), np.ones_like(a)), 0.0)
    assert np.all(ssim(noisy, a) < 0.99) and np.all(psnr(noisy, a) < 25)


# --- user video -------------------------------------------------------------------------------
def _write_video(path, n_frames, color=True, size=(48, 40)):
    rng = np.random.default_rng(1)
    frames = (rng.random((n_frames, size[1], size[0], 3)) * 255).astype(np.uint8)
    write_mp4(path, frames, fps=10)
    return frames


def test_load_video_grey_and_colour(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, 9)
    grey = load_video(path, size=32)
    colour = load_video(path, size=32, color=True, max_frames=5)
    assert grey.shape == (9, 32, 32) and colour.shape == (5, 32, 32, 3)
    assert 0 <= grey.min() and grey.max() <= 1 and colour.dtype == np.float32
    with pytest.raises(InputError, match="at least 20"):
        load_video(path, size=32, min_frames=20)


def test_corrupt_video_exit_2(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    model = tmp_path / "m.pt"
    _tiny_checkpoint(model)
    r = run_main("fsde", "predict", "--model", model, "--video", bad, "--context", "4",
                 "--horizon", "3", "--out", tmp_path / "p.mp4")
    assert r.returncode == 2, r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    assert "broken.mp4" in msg and msg.count(".") <= 3 and "Traceback" not in r.stderr
    assert not (tmp_path / "p.mp4").exists() and not (tmp_path / "p.npz").exists()
    r = run_main("fsde", "train", "--data", bad, "--out", tmp_path / "t.pt")
    assert r.returncode == 2 and "broken.mp4" in r.stderr and not (tmp_path / "t.pt").exists()


def test_too_few_frames_exit_2(tmp_path):
    short = tmp_path / "short.mp4"
    _write_video(short, 5)
    model = tmp_path / "m.pt"
    _tiny_checkpoint(model)
    r = run_main("fsde", "predict", "--model", model, "--video", short, "--context", "4",
                 "--horizon", "3", "--out", tmp_path / "p.mp4")
    assert r.returncode == 2, r.stderr
    msg = r.stderr.strip().splitlines()[-1]
    assert "short.mp4" in msg and "5 frames" in msg and "7" in msg
    assert not (tmp_path / "p.mp4").exists()


# --- model ---------------------------------------------------------------------------------
def _tiny_checkpoint(path):
    from engine._torch import torch
    from engine.fsde.video_model import VideoSDE, checkpoint_state

    torch.manual_seed(0)
    torch.save(checkpoint_state(VideoSDE(TINY)), path)


def test_forecast_shapes_and_elbo_terms():
    from engine._torch import torch
    from engine.fsde.video_model import VideoSDE

    torch.manual_seed(0)
    for brownian in (False, True):
        model = VideoSDE({**TINY, "brownian": brownian})
        x = torch.from_numpy(moving_digits(2, 7, seed=0).frames[:, :, None])
        terms = model.elbo(x)
        assert torch.isfinite(terms["loss"])
        assert float(terms["kl"]) >= 0 and float(terms["loglik"]) < 0
        assert torch.allclose(terms["elbo"], terms["loglik"] - terms["kl"])
        terms["loss"].backward()
        pred = model.forecast(x[:, :4], horizon=5, samples=3)
        assert pred.shape == (3, 2, 9, 1, 32, 32)
        assert 0 <= float(pred.min()) and float(pred.max()) <= 1
        # the samples differ (stochastic prior), the conditioning frames matter
        assert float((pred[0] - pred[1]).abs().max()) > 0
    assert VideoSDE(TINY).sde.hurst.requires_grad  # the Hurst index is learned


def test_train_resume_and_cancel(tmp_path):
    from engine.fsde.video_train import train_video

    out = tmp_path / "m.pt"
    train = {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "seed": 1}
    # a cancel after 2 steps leaves a checkpoint at step 2 ...
    token, seen = CancelToken(), []

    def cb(ev):
        seen.append(ev.fraction)
        if ev.fraction >= 0.5:
            token.cancel()

    with pytest.raises(Cancelled):
        train_video("moving-digits", out, TINY, train, progress=Progress(cb), cancel=token)
    from engine._torch import torch

    blob = torch.load(out, weights_only=True)
    assert blob["step"] == 2 and not blob["done"] and len(blob["history"]["elbo"]) == 2
    # ... from which a rerun resumes; the result equals an uninterrupted run
    monitor = []
    hist = train_video("moving-digits", out, TINY, train, progress=Progress(),
                       cancel=CancelToken(), monitor=monitor)
    assert [m["step"] for m in monitor] == [3, 4] and len(hist["elbo"]) == 4
    ref = tmp_path / "ref.pt"
    train_video("moving-digits", ref, TINY, train, progress=Progress(), cancel=CancelToken())
    a, b = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert a["done"] and a["step"] == 4
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-5), k
    assert np.allclose(a["history"]["elbo"], b["history"]["elbo"], rtol=1e-4)


def test_panels_layout():
    T, H, W = 5, 8, 8
    z = np.zeros((T, H, W), np.float32)
    out = panel_frames(z + 1, z, z, z + 0.5, n_context=2, scale=2)
    assert out.dtype == np.uint8 and out.shape[0] == T and out.shape[-1] == 3
    assert out[0, :2 * H, : 2 * W].min() == 255  # ground truth panel is white
    assert out[0, :2 * H, -2 * W:].min() == 255  # std 0.5 shown white


# --- CLI end to end ------------------------------------------------------------------------
def test_cli_train_then_predict(tmp_path):
    from engine._cv2 import cv2

    cfg = tmp_path / "cfg.toml"
    cfg.write_text(TINY_TOML)
    model = tmp_path / "model.pt"
    r = run_main("fsde", "train", "--data", "moving-digits", "--out", model, "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert "H 0." in r.stderr and "ELBO" in r.stderr
    clip = tmp_path / "clip.npz"
    np.savez(clip, frames=moving_digits(1, 9, seed=4, split="test").frames[0])
    out = tmp_path / "pred.mp4"
    r = run_main("fsde", "predict", "--model", model, "--video", clip, "--context", "4",
                 "--horizon", "3", "--samples", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / "pred.npz")
    assert z["frames"].shape == (7, 32, 32) and z["samples"].shape == (2, 3, 32, 32)
    assert z["psnr"].shape == (3,) and np.isfinite(z["psnr"]).all()
    for k in ("frames", "samples"):
        assert 0 <= z[k].min() and z[k].max() <= 1
    assert np.allclose(z["psnr"], psnr(z["samples"].mean(0), z["frames"][4:]), atol=1e-3)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7
    # a bad config is one sentence, exit 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nwarp = 9\n")
    r = run_main("fsde", "train", "--data", "moving-digits", "--out", tmp_path / "x.pt",
                 "--config", bad)
    assert r.returncode == 2 and "warp" in r.stderr


# --- review fixes: config validation, clip values, frame fitting ----------------------------
@pytest.mark.parametrize("toml,key", [
    ('[train]\nsteps = "x"\n', "steps"), ("[train]\nbatch_size = 0\n", "batch_size"),
    ("[model]\nsize = 7\n", "size"), ('[model]\nkind = "III"\n', "kind"),
    ("[model]\nK = 1\n", "K"), ("[model]\nhurst = 1.5\n", "hurst")])
def test_bad_config_value_exit_2(tmp_path, toml, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    out = tmp_path / "m.pt"
    r = run_main("fsde", "train", "--data", "moving-digits", "--out", out, "--config", cfg)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert str(cfg) in lines[0] and key in lines[0] and lines[0].endswith(".")
    assert not out.exists()


def test_read_config_types_and_model_errors(tmp_path):
    from engine.fsde.video_train import DEFAULT_TRAIN, read_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nT = 2\ncontext = 5\n[train]\nlr = 1\n")
    model, train = read_config(cfg)
    assert model == {"T": 2.0, "context": 5} and isinstance(model["T"], float)
    assert train == {**DEFAULT_TRAIN, "lr": 1.0}
    for text in ("[model]\nbrownian = 1\n", "[train]\nsteps = true\n", "[train]\nseed = 1.5\n",
                 "model = 3\n", "[model]\ngamma_max = 0.5\n"):
        cfg.write_text(text)
        with pytest.raises(InputError, match="c.toml"):
            read_config(cfg)


def test_float_clip_above_one_is_rejected(tmp_path):
    clip = tmp_path / "bright.npy"
    np.save(clip, np.full((4, 16, 16), 2.0, np.float32))
    with pytest.raises(InputError, match=r"bright\.npy.*\[0, 1\] or uint8 0\.\.255"):
        load_video(clip, size=16)
    # uint8 clips are scaled by 1/255, float clips in [0, 1] are kept
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (4, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", frames=u8)
    np.savez(tmp_path / "f.npz", frames=u8 / 255.0)
    a, b = load_video(tmp_path / "u8.npz", size=16), load_video(tmp_path / "f.npz", size=16)
    assert np.allclose(a, u8 / 255.0, atol=1e-6) and np.allclose(a, b, atol=1e-6)


def test_fit_frames_uint8_equals_float_and_converts_colour():
    from engine.fsde.video_data import fit_frames

    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    grey = fit_frames(u8, 16, color=False)
    assert grey.shape == (3, 16, 16) and grey.dtype == np.float32
    assert np.allclose(grey, fit_frames(u8 / 255.0, 16, color=False), atol=1e-5)
    # grey is the channel mean of the centre crop: a constant-colour frame stays constant
    const = np.zeros((1, 40, 60, 3), np.uint8) + np.array([30, 60, 90], np.uint8)
    assert np.allclose(fit_frames(const, 8, color=False), 60 / 255, atol=1e-5)
    colour = fit_frames(grey, 16, color=True)
    assert colour.shape == (3, 16, 16, 3) and np.allclose(colour[..., 1], grey, atol=1e-6)


def test_load_video_max_frames_and_cancel(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path, 12)
    assert load_video(path, size=16, max_frames=4).shape == (4, 16, 16)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        load_video(path, size=16, cancel=token)
