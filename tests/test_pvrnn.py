"""PV-RNN engine: KL, wiring, gradients, fitting, error regression, checkpoints, data."""
import math

import numpy as np
import pytest

from engine.jobs import CancelToken, Cancelled, InputError
from engine.pvrnn.config import Config, LayerConfig, load_config
from engine.pvrnn.data import load_sequences, synthetic
from engine.pvrnn.er import error_regression, horizon_rmse, persistence, prior_alone
from engine.pvrnn.model import PVRNN, init_params, kl_gauss
from engine.pvrnn.train import load_checkpoint, load_model, model_from_checkpoint, train


def tiny_cfg(**kw) -> Config:
    cfg = Config(layers=[LayerConfig(d=8, z=2, tau=2.0, w=1e-3),
                         LayerConfig(d=4, z=1, tau=4.0, w=1e-3)], epochs=20, lr=1e-2, seed=3)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_kl_of_two_gaussians_matches_closed_form():
    # KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2
    assert kl_gauss(1.0, math.log(2.0), 0.0, 0.0) == pytest.approx(math.log(0.5) + 2.0)
    rng = np.random.default_rng(0)
    mq, mp = rng.normal(size=50), rng.normal(size=50)
    sq, sp = np.exp(rng.normal(size=50) * 0.5), np.exp(rng.normal(size=50) * 0.5)
    closed = np.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5
    np.testing.assert_allclose(kl_gauss(mq, np.log(sq), mp, np.log(sp)), closed, rtol=1e-12)
    from engine.pvrnn.reference import kl_gauss_torch

    np.testing.assert_allclose(kl_gauss(mq, np.log(sq), mp, np.log(sp)),
                               kl_gauss_torch(mq, sq, mp, sp).numpy(), rtol=1e-10)
    assert kl_gauss(0.3, -0.2, 0.3, -0.2) == pytest.approx(0.0, abs=1e-15)


def test_posterior_prior_wiring_by_hand():
    """Two layers with one unit each, two steps, computed with scalar arithmetic."""
    layers = [LayerConfig(d=1, z=1, tau=2.0, w=0.5), LayerConfig(d=1, z=1, tau=4.0, w=0.25)]
    P = {"Wdd0": 0.5, "Wzd0": 0.8, "b0": 0.1, "Wmu0": 0.7, "bmu0": -0.2, "Wsig0": 0.3,
         "bsig0": 0.05, "Wtop0": -0.6, "Wdd1": 0.9, "Wzd1": -0.4, "b1": 0.2, "Wmu1": -0.5,
         "bmu1": 0.1, "Wsig1": 0.2, "bsig1": -0.1, "Wo": 1.5, "bo": -0.05}
    params = {k: np.array(v).reshape((1, 1) if k.startswith("W") else (1,)) for k, v in P.items()}
    m = PVRNN(layers, params, beta=2.0)
    A = {(0, 0): (0.3, -0.1), (0, 1): (-0.2, 0.2), (1, 0): (0.6, 0.1), (1, 1): (0.4, -0.3)}
    Amu = [np.array([[[A[(l, t)][0]]] for t in range(2)]) for l in range(2)]
    Asig = [np.array([[[A[(l, t)][1]]] for t in range(2)]) for l in range(2)]
    c = m.forward(Amu, Asig)
    th = math.tanh
    z = {(l, t): th(A[(l, t)][0]) for l in range(2) for t in range(2)}
    # step 1: zero initial states; top layer first, then layer 1 with the top's new d
    h1_1 = 0.25 * (0.9 * 0 + -0.4 * z[(1, 0)] + 0.2)
    h0_1 = 0.5 * (0.5 * 0 + 0.8 * z[(0, 0)] + 0.1 + -0.6 * th(h1_1))
    # step 2
    h1_2 = 0.75 * h1_1 + 0.25 * (0.9 * th(h1_1) + -0.4 * z[(1, 1)] + 0.2)
    h0_2 = 0.5 * h0_1 + 0.5 * (0.5 * th(h0_1) + 0.8 * z[(0, 1)] + 0.1 + -0.6 * th(h1_2))
    np.testing.assert_allclose(c["x_hat"][:, 0, 0], [th(1.5 * th(h0_1) - 0.05),
                                                     th(1.5 * th(h0_2) - 0.05)], rtol=1e-12)
    # prior: N(0, 1) at the first step, from d_{t-1} afterwards
    assert c["mu_p"][0][0, 0, 0] == 0.0 and c["lsig_p"][1][0, 0, 0] == 0.0
    assert c["mu_p"][0][1, 0, 0] == pytest.approx(th(0.7 * th(h0_1) - 0.2))
    assert c["lsig_p"][1][1, 0, 0] == pytest.approx(0.2 * th(h1_1) - 0.1)
    # posterior from the adaptive vectors
    assert c["sig_q"][1][1, 0, 0] == pytest.approx(math.exp(-0.3))
    # loss: beta weights the first step's KL, w_l the others
    X = np.array([[[0.2]], [[-0.1]]])
    total, rec, _ = m.loss(c, X, np.ones((2, 1)), norm=2.0)
    kl = lambda l, t: kl_gauss(z[(l, t)], A[(l, t)][1], c["mu_p"][l][t, 0, 0],  # noqa: E731
                               c["lsig_p"][l][t, 0, 0])
    expect_rec = 0.5 * ((c["x_hat"][0, 0, 0] - 0.2) ** 2 + (c["x_hat"][1, 0, 0] + 0.1) ** 2) / 2
    expect = expect_rec + (2.0 * kl(0, 0) + 0.5 * kl(0, 1) + 2.0 * kl(1, 0) + 0.25 * kl(1, 1)) / 2
    assert rec == pytest.approx(expect_rec)
    assert total == pytest.approx(expect)


@pytest.mark.parametrize("first,sample", [(True, False), (False, True)])
def test_hand_written_gradients_match_autograd(first, sample):
    from engine._torch import torch
    from engine.pvrnn.reference import loss_torch

    layers = [LayerConfig(5, 3, 2.0, 0.3), LayerConfig(4, 2, 4.0, 0.7)]
    m = PVRNN(layers, init_params(layers, 3, 0), beta=0.5)
    rng = np.random.default_rng(1)
    T, B = 6, 2
    Amu = [rng.normal(size=(T, B, lay.z)) for lay in layers]
    Asig = [0.3 * rng.normal(size=(T, B, lay.z)) for lay in layers]
    eps = [rng.normal(size=(T, B, lay.z)) for lay in layers] if sample else None
    h0 = [rng.normal(size=(B, lay.d)) for lay in layers]
    X = rng.uniform(-1, 1, size=(T, B, 3))
    mask = np.ones((T, B))
    mask[4:, 1] = 0
    c = m.forward(Amu, Asig, h0=h0, first=first, eps=eps)
    gmu, gsig, g = m.backward(c, X, mask, 7.0)
    tA = [torch.tensor(a, requires_grad=True) for a in Amu]
    tS = [torch.tensor(a, requires_grad=True) for a in Asig]
    loss, P = loss_torch(m, tA, tS, X, mask, 7.0, h0=h0, first=first, eps=eps)
    loss.backward()
    assert m.loss(c, X, mask, 7.0)[0] == pytest.approx(loss.item(), rel=1e-12)
    for a, b in zip(tA + tS, gmu + gsig):
        np.testing.assert_allclose(b, a.grad.numpy(), atol=1e-12)
    for k in P:
        np.testing.assert_allclose(g[k], P[k].grad.numpy(), atol=1e-12, err_msg=k)


def test_w0_model_fits_a_training_sequence_closely():
    t = np.arange(40)
    X = np.stack([np.sin(2 * np.pi * t / 13), np.cos(2 * np.pi * t / 7) * np.sin(t / 5)], -1)
    cfg = Config(layers=[LayerConfig(d=24, z=3, tau=2.0, w=0.0)], beta=0.0, epochs=600,
                 lr=2e-2, seed=0)
    ck = train(X[None], np.array([40]), cfg)
    assert ck["history"]["rec"][-1].item() < 2e-3 < ck["history"]["rec"][0].item()
    m = PVRNN(cfg.layers, {k: v.numpy() for k, v in ck["params"].items()}, cfg.beta)
    c = m.forward([a.numpy() for a in ck["A_mu"]], [a.numpy() for a in ck["A_sig"]])
    from engine.pvrnn.data import from_scaled

    fit = from_scaled(c["x_hat"][:, 0], ck["scale_lo"].numpy(), ck["scale_hi"].numpy())
    assert np.sqrt(np.mean((fit - X) ** 2)) < 0.08  # data range is [-1, 1]


def test_error_regression_never_reads_the_future():
    cfg = tiny_cfg()
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(3, 25, 2))
    lengths = np.array([25, 25, 25])
    model = PVRNN(cfg.layers, init_params(cfg.layers, 2, 1), cfg.beta)
    lo, hi = np.full(2, -1.0), np.full(2, 1.0)
    kw = dict(window=5, iterations=4, lr=0.1, horizon=3)
    clean = error_regression(model, lo, hi, X, lengths, **kw)
    t0 = 12
    poisoned = X.copy()
    poisoned[:, t0 + 1:] = np.nan
    dirty = error_regression(model, lo, hi, poisoned, lengths, **kw)
    for key in ("predictions", "reconstruction", "kl"):
        np.testing.assert_array_equal(clean[key][:, :t0 + 1], dirty[key][:, :t0 + 1], err_msg=key)
    # the poison does propagate once it is inside the window (so the check above has teeth)
    assert np.isnan(dirty["reconstruction"][:, t0 + 1, -1]).all()
    assert np.isfinite(clean["predictions"][:, t0, 0]).all()
    # layout: predictions[n, t, h] is NaN where t + h + 1 >= T
    assert np.isnan(clean["predictions"][:, -1]).all()
    assert np.isfinite(clean["predictions"][:, -3, 1]).all()
    assert np.isnan(clean["predictions"][:, -3, 2]).all()


def test_trained_model_beats_persistence_on_a_noiseless_sine():
    period = 16
    t = np.arange(64)
    X = np.stack([np.sin(2 * np.pi * (t + ph) / period)[:, None] for ph in (0, 5, 11)])
    cfg = Config(layers=[LayerConfig(d=16, z=1, tau=2.0, w=1e-2)], beta=1e-2, epochs=400,
                 lr=1e-2, seed=0)
    ck = train(X, np.full(3, 64), cfg)
    model = PVRNN(cfg.layers, {k: v.numpy() for k, v in ck["params"].items()}, cfg.beta)
    lo, hi = ck["scale_lo"].numpy(), ck["scale_hi"].numpy()
    test = np.sin(2 * np.pi * (t[:48] + 3) / period)[None, :, None]
    lengths = np.array([48])
    res = error_regression(model, lo, hi, test, lengths, window=8, iterations=10, lr=0.1,
                           horizon=5)
    er = horizon_rmse(test, res["predictions"])
    pers = horizon_rmse(test, persistence(test, lengths, 5))
    assert (er < pers).all(), (er, pers)
    assert (er < horizon_rmse(test, prior_alone(model, lo, hi, test, lengths, 5))).all()


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    X, _ = synthetic(3, 30, seed=0)
    lengths = np.array([30, 22, 30])
    X[1, 22:] = np.nan
    cfg = tiny_cfg(epochs=12, checkpoint_every=5)
    full = train(X, lengths, cfg, tmp_path / "a.pt")
    token = CancelToken()

    def stop_after_7(epoch, *_):
        if epoch == 7:
            token.cancel()

    with pytest.raises(Cancelled):
        train(X, lengths, cfg, tmp_path / "b.pt", cancel=token, on_epoch=stop_after_7)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 7
    assert not load_checkpoint(tmp_path / "b.pt")["finished"]
    resumed = train(X, lengths, cfg, tmp_path / "b.pt")
    assert resumed["epoch"] == 12 and resumed["finished"]
    for k in full["params"]:
        np.testing.assert_array_equal(full["params"][k].numpy(), resumed["params"][k].numpy())
    np.testing.assert_array_equal(full["history"]["loss"].numpy(),
                                  resumed["history"]["loss"].numpy())
    # different seed -> different weights (the comparison above is not vacuous)
    other = train(X, lengths, tiny_cfg(epochs=12, seed=4))
    assert not np.array_equal(other["params"]["Wo"].numpy(), full["params"]["Wo"].numpy())
    model, cfg2, lo, hi, _ = load_model(tmp_path / "b.pt")
    assert cfg2 == cfg and model.dim == 2 and lo.shape == (2,)


def test_csv_sequences_split_by_blank_lines_and_sequence_column(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("x,y\n1,2\n3,4\n\n5,6\n")
    X, lengths = load_sequences(p)
    assert X.shape == (2, 2, 2) and list(lengths) == [2, 1]
    assert np.isnan(X[1, 1]).all() and X[1, 0, 1] == 6
    q = tmp_path / "b.csv"
    q.write_text("sequence,a\n0,1.5\n0,2\n0,3\n1,4\n")
    X, lengths = load_sequences(q)
    assert X.shape == (2, 3, 1) and list(lengths) == [3, 1] and X[1, 0, 0] == 4


@pytest.mark.parametrize("content,word", [("1,2\n3\n", "columns"), ("1,a\n", "not a number"),
                                          ("", "no data"), ("1,nan\n", "missing")])
def test_bad_csv_is_one_sentence(tmp_path, content, word):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as err:
        load_sequences(p)
    assert word in str(err.value) and "bad.csv" in str(err.value)


def test_npy_nan_padding_is_ragged_but_inner_nan_is_an_error(tmp_path):
    X = np.ones((2, 5, 3))
    X[1, 3:] = np.nan
    np.save(tmp_path / "ok.npy", X)
    _, lengths = load_sequences(tmp_path / "ok.npy")
    assert list(lengths) == [5, 3]
    X[0, 2, 1] = np.nan
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(InputError, match="sequence 0 at step 2"):
        load_sequences(tmp_path / "bad.npy")


def test_config_toml_round_trip_and_errors(tmp_path):
    cfg = Config()
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    assert load_config(p) == cfg
    p.write_text("epochs = 5\n[[layers]]\nd = 3\nz = 1\ntau = 0.5\nw = 0.1\n")
    with pytest.raises(InputError, match="tau"):
        load_config(p)
    p.write_text("epochs = [\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(p)


def test_synthetic_set_follows_the_state_machine():
    from engine.pvrnn.data import PERIOD, PFSM

    X, S = synthetic(6, 200, seed=2)
    assert X.shape == (6, 200, 2) and np.isfinite(X).all()
    for s in S:
        states = s[::PERIOD]
        for a, b in zip(states[:-1], states[1:]):
            assert PFSM[a, b] > 0


# --------------------------------------------------------------------------- issue 9 / 12
def _prediction(meta_prior=0.2, chunk=1):
    """A small Prediction: 2 sequences (lengths 6 and 4) of 6 steps, H 3, D 2, L 1."""
    from engine.pvrnn.config import ERSettings
    from engine.pvrnn.prediction import Prediction

    rng = np.random.default_rng(0)
    lengths = np.array([6, 4])
    obs = rng.normal(size=(2, 6, 2)).astype(np.float32)
    obs[1, 4:] = np.nan
    pred = rng.normal(size=(2, 6, 3, 2)).astype(np.float32)
    target = np.arange(6)[:, None] + np.arange(3)[None, :] + 1
    pred[target[None].repeat(2, 0) >= lengths[:, None, None]] = np.nan
    kl = rng.uniform(size=(2, 6, 1)).astype(np.float32)
    kl[1, 4:] = np.nan
    lat = rng.uniform(1, 2, size=(2, 6)).astype(np.float32)
    rec = rng.normal(size=(2, 6, 4, 2)).astype(np.float32)
    return Prediction(obs, pred, kl, lat, lengths,
                      ERSettings(window=4, iterations=3, lr=0.05, horizon=3,
                                 meta_prior=meta_prior), rec, chunk)


def test_prediction_save_load_round_trip(tmp_path):
    from dataclasses import replace

    from engine.pvrnn.prediction import Prediction

    p = _prediction()
    p.save(tmp_path / "p.npz")
    q = Prediction.load(tmp_path / "p.npz")
    assert q == p and q.settings.meta_prior == 0.2 and q.chunk == 1 and q.shape == (2, 6, 3, 2, 1)
    plain = replace(_prediction(meta_prior=None, chunk=None), reconstruction=None)
    plain.save(tmp_path / "plain.npz")
    back = Prediction.load(tmp_path / "plain.npz")
    assert back == plain and back.settings.meta_prior is None and back.reconstruction is None
    assert back != p  # the comparison looks at the content
    with np.load(tmp_path / "p.npz") as z:  # the PRED.npz layout documented in docs/pvrnn.md
        assert {"observed", "predictions", "kl", "latency_ms", "reconstruction", "lengths",
                "window", "iterations", "lr", "horizon", "meta_prior", "chunk"} == set(z.files)


def test_prediction_load_refuses_bad_files_with_one_sentence(tmp_path):
    from engine.pvrnn.prediction import Prediction

    good = _prediction().arrays()
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    np.savez(tmp_path / "nokl.npz", **{k: v for k, v in good.items() if k != "kl"})
    np.savez(tmp_path / "shape.npz", **dict(good, kl=np.zeros((2, 5, 1))))
    np.savez(tmp_path / "lr.npz", **dict(good, lr=np.float64("nan")))
    np.savez(tmp_path / "horizon.npz", **dict(good, horizon=np.int64(4)))
    np.savez(tmp_path / "lengths.npz", **dict(good, lengths=np.array([6, 9])))
    for name, words in (("missing.npz", ["does not exist"]), ("junk.npz", ["not a readable"]),
                        ("nokl.npz", ["missing: kl"]), ("shape.npz", ["disagree"]),
                        ("lr.npz", ["lr", "finite"]), ("horizon.npz", ["horizon"]),
                        ("lengths.npz", ["lengths"])):
        with pytest.raises(InputError) as err:
            Prediction.load(tmp_path / name)
        msg = str(err.value)
        assert name in msg and "\n" not in msg and all(w in msg for w in words), msg


def test_check_finite_flags_nan_predictions_but_not_the_padding():
    from engine.jobs import InputError

    p = _prediction()
    assert np.isnan(p.predictions).any()  # the padding is NaN and is allowed
    p.check_finite()
    p.predictions[1, 2, 0, 1] = np.nan  # target step 3 < length 4: must exist
    with pytest.raises(InputError, match="diverged.*sequence 1 at step 2"):
        p.check_finite()
    q = _prediction()
    q.kl[0, 5, 0] = np.inf
    with pytest.raises(InputError, match="sequence 0 at step 5"):
        q.check_finite()


def test_predict_uses_the_model_settings_and_refuses_a_diverging_run():
    from engine.jobs import InputError
    from engine.pvrnn.prediction import predict

    cfg = tiny_cfg(epochs=3)
    cfg.er.window, cfg.er.horizon, cfg.er.iterations = 4, 2, 2
    X, _ = synthetic(2, 12, seed=0)
    lengths = np.array([12, 12])
    ck = train(X, lengths, cfg)
    p = predict(ck, X, lengths)
    assert p.settings == cfg.er and p.predictions.shape == (2, 12, 2, 2)
    assert p.reconstruction.shape == (2, 12, 4, 2)
    model, _, lo, hi = model_from_checkpoint(ck)
    direct = error_regression(model, lo, hi, X, lengths, window=4, iterations=2, horizon=2)
    np.testing.assert_array_equal(p.predictions, direct["predictions"])
    with pytest.raises(InputError, match="3 dimensions"):
        predict(ck, np.zeros((1, 5, 3)), np.array([5]), data_name="three.npy")
    ck["params"]["bsig0"].fill_(-1000.0)  # finite weights whose prior sigma underflows
    with pytest.raises(InputError, match="diverged"):
        predict(ck, X, lengths)


def test_training_divergence_is_an_error_and_keeps_the_last_checkpoint(tmp_path):
    from engine.jobs import InputError
    from engine.pvrnn.train import save_checkpoint

    X, _ = synthetic(2, 12, seed=0)
    lengths = np.array([12, 12])
    out = tmp_path / "m.pt"
    train(X, lengths, tiny_cfg(epochs=2), out)
    ck = load_checkpoint(out)
    ck["params"]["bsig0"].fill_(-1000.0)
    save_checkpoint(ck, out)
    before = out.read_bytes()
    with pytest.raises(InputError, match="diverged at epoch 3"):
        train(X, lengths, tiny_cfg(epochs=4), out)
    assert out.read_bytes() == before


def test_train_onto_an_existing_model_resumes_only_with_the_same_setup_and_data(tmp_path):
    from engine.pvrnn.train import data_fingerprint

    X, _ = synthetic(2, 12, seed=0)
    lengths = np.array([12, 12])
    out = tmp_path / "m.pt"
    train(X, lengths, tiny_cfg(epochs=2), out)
    before = out.read_bytes()
    other_layers = tiny_cfg(epochs=2, layers=[LayerConfig(d=5, z=1, tau=2.0, w=1e-3)])
    for kw, data, words in ((dict(cfg=tiny_cfg(epochs=2, seed=9)), X, ["seed 3 (now 9)"]),
                            (dict(cfg=tiny_cfg(epochs=2, beta=0.5)), X, ["beta"]),
                            (dict(cfg=other_layers), X, ["layers", "d5"]),
                            (dict(cfg=tiny_cfg(epochs=2)), X + 0.5, ["other data"])):
        with pytest.raises(InputError) as err:
            train(data, lengths, kw["cfg"], out)
        assert "m.pt" in str(err.value) and "--force" in str(err.value)
        assert all(w in str(err.value) for w in words), str(err.value)
        assert out.read_bytes() == before
    # more epochs and other [er] settings: the same model, resumed
    more = tiny_cfg(epochs=3)
    more.er.window = 7
    assert train(X, lengths, more, out)["epoch"] == 3
    train(X + 0.5, lengths, tiny_cfg(epochs=2), out, force=True)
    assert load_checkpoint(out)["data_sha"] == data_fingerprint(X + 0.5, lengths)
    assert load_checkpoint(out)["epoch"] == 2


def test_model_file_with_non_finite_weights_is_refused(tmp_path):
    from engine.pvrnn.train import save_checkpoint

    X, _ = synthetic(1, 8, seed=0)
    ck = train(X, np.array([8]), tiny_cfg(epochs=1))
    ck["params"]["Wo"][0, 0] = float("nan")
    save_checkpoint(ck, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="nan.pt.*non-finite"):
        load_checkpoint(tmp_path / "nan.pt")


@pytest.mark.parametrize("body, words", [
    ("lr = nan\n", ["c.toml'", "lr must be a finite number"]),
    ("[er]\nlr = inf\n", ["lr in [er]", "finite"]),
    ("[er]\nmeta_prior = -1.0\n", ["meta_prior in [er]", ">= 0"]),
    ("[er]\nwindow = 0\n", ["window in [er]"]),
    ("seed = -1\n", ["seed must be >= 0"]),
    ("seed = 4294967296\n", ["seed"]),
    ("checkpoint_every = 0\n", ["checkpoint_every"]),
    ("clip = -inf\n", ["clip"]),
    ("[[layers]]\nd = 4\nz = 1\ntau = nan\n", ["tau of layer 1", "finite"]),
    ("[[layers]]\nd = 4\nz = 1\nw = inf\n", ["w of layer 1", "finite"]),
])
def test_config_values_must_be_finite_and_in_range(tmp_path, body, words):
    (tmp_path / "c.toml").write_text(body)
    with pytest.raises(InputError) as err:
        load_config(tmp_path / "c.toml")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_config_is_read_with_the_shared_toml_reader(tmp_path):
    from engine.pvrnn.config import ERSettings, parse_config

    with pytest.raises(InputError, match="is a folder"):  # engine.tomlconf.read_toml's check
        load_config(tmp_path)
    cfg = parse_config("[er]\nmeta_prior = 0.5\n")
    assert cfg.er == ERSettings(meta_prior=0.5)
    assert parse_config(cfg.to_toml()) == cfg  # meta_prior survives the round trip
    with pytest.raises(InputError, match="The configuration is not valid TOML"):
        parse_config("epochs = [")


def test_values_too_large_to_scale_are_refused(tmp_path):
    X = np.ones((2, 4, 2))
    X[1, 2, 0] = -1e200  # finite, but its range and squared errors overflow
    np.save(tmp_path / "huge.npy", X)
    with pytest.raises(InputError, match=r"huge.npy.*-1e\+200 in sequence 1 at step 2"):
        load_sequences(tmp_path / "huge.npy")
    (tmp_path / "huge.csv").write_text("1,2\n3,4e300\n")
    with pytest.raises(InputError, match="huge.csv.*sequence 0 at step 1"):
        load_sequences(tmp_path / "huge.csv")
