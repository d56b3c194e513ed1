"""`main.py pvrnn train|predict` end to end, and bad input -> one sentence, exit code 2."""
import numpy as np
import pytest
from conftest import run_main
from pvrnn_fixtures import TINY



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("pvrnn")
    (d / "tiny.toml").write_text(TINY)
    rows = ["x,y"] + [f"{np.sin(t / 3):.4f},{np.cos(t / 3):.4f}" for t in range(12)] + [""] + \
        [f"{np.sin(t / 2):.4f},{np.cos(t / 4):.4f}" for t in range(9)]
    (d / "data.csv").write_text("\n".join(rows) + "\n")
    r = run_main("pvrnn", "train", "--data", d / "data.csv", "--out", d / "m.pt",
                 "--config", d / "tiny.toml")
    assert r.returncode == 0, r.stderr
    assert "epoch 15/15" in r.stderr and "KL" in r.stderr
    return d


def test_train_writes_a_weights_only_model_and_predict_writes_npz(trained):
    from engine._torch import torch

    ck = torch.load(trained / "m.pt", weights_only=True)
    assert ck["finished"] and ck["epoch"] == 15 and ck["scale_lo"].shape == (2,)
    r = run_main("pvrnn", "predict", "--model", trained / "m.pt", "--data",
                 trained / "data.csv", "--out", trained / "pred.npz", "--horizon", "4")
    assert r.returncode == 0, r.stderr
    with np.load(trained / "pred.npz") as z:
        obs, pred, kl, lat = z["observed"], z["predictions"], z["kl"], z["latency_ms"]
        assert obs.shape == (2, 12, 2) and pred.shape == (2, 12, 4, 2)
        assert kl.shape == (2, 12, 1) and lat.shape == (2, 12)
        assert z["reconstruction"].shape == (2, 12, 4, 2)
    assert np.isfinite(pred[0, 7, 3]).all() and np.isnan(pred[0, 8, 3]).all()  # 8+3+1 = 12
    assert np.isnan(pred[1, 9:]).all() and np.isnan(obs[1, 9:]).all()  # ragged second sequence
    assert np.isfinite(lat[0]).all() and (lat[0] > 0).all() and np.isnan(lat[1, 9:]).all()
    # rerunning a finished training is a no-op that keeps the file
    r = run_main("pvrnn", "train", "--data", trained / "data.csv", "--out", trained / "m.pt",
                 "--config", trained / "tiny.toml")
    assert r.returncode == 0 and "already trained" in r.stderr


def _bad(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_training_data(tmp_path, trained):
    x = np.ones((2, 5, 2))
    x[0, 1, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    np.save(tmp_path / "rank.npy", np.ones((5, 2)))
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ragged.csv").write_text("1,2\n3,4\n5\n")
    for name, word in (("nan.npy", "NaN"), ("rank.npy", "3 axes"), ("empty.csv", "no data"),
                       ("ragged.csv", "line 3")):
        r = run_main("pvrnn", "train", "--data", tmp_path / name, "--out", tmp_path / "m.pt",
                     "--config", trained / "tiny.toml")
        _bad(r, name, word)
        assert not (tmp_path / "m.pt").exists()


def test_mismatched_dimension_at_predict_time(tmp_path, trained):
    np.save(tmp_path / "three.npy", np.zeros((1, 6, 3)))
    r = run_main("pvrnn", "predict", "--model", trained / "m.pt", "--data",
                 tmp_path / "three.npy", "--out", tmp_path / "p.npz")
    _bad(r, "three.npy", "3 dimensions", "2")
    assert not (tmp_path / "p.npz").exists()
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    r = run_main("pvrnn", "predict", "--model", tmp_path / "junk.pt", "--data",
                 tmp_path / "three.npy", "--out", tmp_path / "p.npz")
    _bad(r, "junk.pt")


@pytest.mark.parametrize("body, words", [
    ("[train]\nepochs = 3\n", ["unknown", "'train'"]),
    ("er = 3\n", ["'er'", "[er] table"]),
    ("[[layers]]\nd = 4.7\nz = 1\n", ["'d'", "integer", "4.7"]),
    ("epochs = 10\nlerning_rate = 0.1\n", ["unknown", "'lerning_rate'"]),
    ("[er]\nwindow = 3\nhorizn = 2\n", ["unknown", "'horizn'", "[er]"]),
    ("seed = \"one\"\n", ["'seed'", "integer"]),
    ("[lr]\nvalue = 1\n", ["'lr'", "a table"]),
])
def test_bad_config_files_are_one_sentence(tmp_path, trained, body, words):
    (tmp_path / "bad.toml").write_text(body)
    r = run_main("pvrnn", "train", "--data", trained / "data.csv", "--out", tmp_path / "m.pt",
                 "--config", tmp_path / "bad.toml")
    _bad(r, "bad.toml", *words)
    assert not (tmp_path / "m.pt").exists()


def test_train_refuses_to_overwrite_a_file_that_is_not_a_checkpoint(tmp_path, trained):
    (tmp_path / "notes.pt").write_text("my precious notes")
    r = run_main("pvrnn", "train", "--data", trained / "data.csv", "--out", tmp_path / "notes.pt",
                 "--config", trained / "tiny.toml")
    _bad(r, "notes.pt", "not a PV-RNN checkpoint")
    assert (tmp_path / "notes.pt").read_text() == "my precious notes"


def _main(capsys, *args):
    """``main.py ARGS`` in this process (fast): (exit code, stderr lines that are not
    progress bars)."""
    import main as entry
    from engine.cli import is_progress_line

    try:
        code = entry.main([str(a) for a in args])
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    return code, [x for x in err.splitlines() if x.strip() and not is_progress_line(x)]


@pytest.mark.parametrize("option, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--lr", "-1"), ("--meta-prior", "nan"),
    ("--meta-prior", "-0.5"), ("--window", "0"), ("--window", "100000"), ("--iterations", "-1"),
    ("--horizon", "0"), ("--chunk", "0"), ("--chunk", "2.5"),
])
def test_predict_refuses_non_finite_or_out_of_range_options(tmp_path, trained, capsys, option,
                                                             value):
    code, lines = _main(capsys, "pvrnn", "predict", "--model", trained / "m.pt", "--data",
                        trained / "data.csv", "--out", tmp_path / "p.npz", option, value)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert option in lines[0] and repr(value) in lines[0]
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("option, value", [("--seed", "-1"), ("--seed", str(2 ** 32)),
                                           ("--epochs", "-3"), ("--epochs", "nan")])
def test_train_refuses_bad_seed_and_epochs(tmp_path, trained, capsys, option, value):
    code, lines = _main(capsys, "pvrnn", "train", "--data", trained / "data.csv", "--out",
                        tmp_path / "m.pt", option, value)
    assert code == 2 and len(lines) == 1 and option in lines[0], lines
    assert not (tmp_path / "m.pt").exists()


def test_train_never_replaces_a_model_of_other_settings_or_data_without_force(tmp_path, trained):
    import shutil

    model = tmp_path / "m.pt"
    shutil.copy(trained / "m.pt", model)
    before = model.read_bytes()
    r = run_main("pvrnn", "train", "--data", trained / "data.csv", "--out", model,
                 "--config", trained / "tiny.toml", "--seed", "7")
    _bad(r, "m.pt", "seed 2 (now 7)", "--force")
    np.save(tmp_path / "other.npy", np.zeros((2, 12, 2)) + np.arange(12)[None, :, None])
    r = run_main("pvrnn", "train", "--data", tmp_path / "other.npy", "--out", model,
                 "--config", trained / "tiny.toml")
    _bad(r, "m.pt", "other data")
    assert model.read_bytes() == before
    r = run_main("pvrnn", "train", "--data", tmp_path / "other.npy", "--out", model,
                 "--config", trained / "tiny.toml", "--force")
    assert r.returncode == 0, r.stderr
    from engine.pvrnn.train import load_checkpoint

    assert load_checkpoint(model)["lengths"].tolist() == [12, 12]  # the new data's model


def test_predict_with_a_diverging_model_fails_and_writes_nothing(tmp_path, trained, capsys):
    from engine.pvrnn.train import load_checkpoint, save_checkpoint

    ck = load_checkpoint(trained / "m.pt")
    ck["params"]["bsig0"].fill_(-1000.0)  # finite, but the prior's sigma underflows to 0
    save_checkpoint(ck, tmp_path / "bad.pt")
    code, lines = _main(capsys, "pvrnn", "predict", "--model", tmp_path / "bad.pt", "--data",
                        trained / "data.csv", "--out", tmp_path / "p.npz")
    assert code == 2 and len(lines) == 1 and "Error regression diverged" in lines[0], lines
    assert not (tmp_path / "p.npz").exists()


def test_predict_refuses_a_folder_as_output_before_working(tmp_path, trained, capsys):
    (tmp_path / "out").mkdir()
    code, lines = _main(capsys, "pvrnn", "predict", "--model", trained / "m.pt", "--data",
                        trained / "data.csv", "--out", tmp_path / "out")
    assert code == 2 and lines == [f"error: Output '{tmp_path / 'out'}' is a folder; give a "
                                   "file name such as PRED.npz."]


def test_predict_output_loads_as_a_prediction(tmp_path, trained, capsys):
    from engine.pvrnn.prediction import Prediction

    code, _ = _main(capsys, "pvrnn", "predict", "--model", trained / "m.pt", "--data",
                    trained / "data.csv", "--out", tmp_path / "p.npz", "--meta-prior", "0.5",
                    "--chunk", "1", "--window", "3")
    assert code == 0
    p = Prediction.load(tmp_path / "p.npz")
    assert (p.settings.window, p.settings.iterations, p.settings.meta_prior, p.chunk) == \
        (3, 3, 0.5, 1)
    assert list(p.lengths) == [12, 9] and p.reconstruction.shape == (2, 12, 3, 2)
