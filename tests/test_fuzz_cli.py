"""Hostile inputs across every subcommand: each ends in exit 2, exactly one `error:` line on
stderr (progress lines aside), no traceback, and the output path untouched.

Runs the CLI in-process (``main.main``, stderr captured at the file-descriptor level, so
what C libraries such as ffmpeg print counts too) for speed; a few cases go through a
subprocess to check the real process exit status. Hypothesis supplies random file bytes and
random invalid numbers with a small ``max_examples``. Module-scoped fixtures build one tiny tumor database,
one tiny PV-RNN and one tiny fSDE model, and the valid companions of each bad input (so each
case has exactly one thing wrong).
"""
from __future__ import annotations

import gzip
import math
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import is_progress_line

FEW = settings(max_examples=6, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
# values a "positive, finite" option must refuse
NOT_POSITIVE = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                         st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))

PVRNN_TINY = """seed = 2
epochs = 2
lr = 0.01
beta = 0.001
checkpoint_every = 1000
[[layers]]
d = 4
z = 1
tau = 2.0
w = 0.01
[er]
window = 3
iterations = 2
lr = 0.1
horizon = 2
"""


def fsde_tiny_toml(seed: int | None = None) -> str:
    """A seconds-long video-model config, keeping only the settings the model still has
    (its settings are evolving; an unknown key would be refused as bad input)."""
    from engine.fsde.video_train import MODEL_RULES, TRAIN_RULES

    model = {"size": 32, "slots": 1, "hidden": 8, "residual": 0, "K": 3, "context": 4,
             "horizon": 3, "substeps": 1}
    train = {"steps": 2, "batch_size": 2, "checkpoint_every": 2}
    if seed is not None:
        train["seed"] = seed
    lines = ["[model]"] + [f"{k} = {v}" for k, v in model.items() if k in MODEL_RULES]
    lines += ["[train]"] + [f"{k} = {v}" for k, v in train.items() if k in TRAIN_RULES]
    return "\n".join(lines) + "\n"


MNI_SHAPE = (197, 233, 189)
MNI_AFFINE = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])


# ----------------------------------------------------------------------------- helpers
def cli(capfd, *argv):
    """Run main.main in-process; returns (exit code, non-progress stderr lines, stderr)."""
    import main

    capfd.readouterr()
    try:
        code = main.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not is_progress_line(ln)]
    return code, lines, err


def snapshot(path: Path):
    """None (absent), bytes (file) or {relative path: bytes} (folder)."""
    path = Path(path)
    if path.is_dir():
        return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
                for p in sorted(path.rglob("*"))}
    return path.read_bytes() if path.exists() else None


def assert_bad_input(capfd, argv, outputs=()):
    """The contract: exit 2, one `error:` line, no traceback, ``outputs`` untouched."""
    before = [snapshot(p) for p in outputs]
    code, lines, err = cli(capfd, *argv)
    shown = " ".join(map(str, argv))
    assert "Traceback" not in err, f"{shown}\n{err[-3000:]}"
    assert code == 2, f"exit {code}: {shown}\n{err[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{shown}\n{err[-3000:]}"
    for p, b in zip(outputs, before):
        p = Path(p)
        assert snapshot(p) == b, f"{p} changed: {shown}"
        if p.parent.is_dir():  # no temporary file left behind either
            left = [q.name for q in p.parent.iterdir() if q.name.startswith(f".{p.name}.")]
            assert left == [], f"{left} left beside {p}: {shown}"
    return lines[0]


def fresh(root: Path, name: str) -> Path:
    """A path that does not exist yet (a new folder per call)."""
    d = root / uuid.uuid4().hex[:8]
    d.mkdir()
    return d / name


def existing(root: Path, name: str) -> Path:
    """An output that exists already, with known content (a folder for names without '.')."""
    p = fresh(root, name)
    if "." in name:
        p.write_bytes(b"previous result\n")
    else:
        p.mkdir()
        (p / "keep.txt").write_text("previous")
    return p


def save_nii(path, data, affine=MNI_AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, float)), str(path))
    return path


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Malformed files by name, plus valid companions ('ok_*')."""
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    f = {}

    def raw(name, data: bytes):
        (d / name).write_bytes(data)
        f[name] = d / name

    # NIfTI
    lab = np.zeros(MNI_SHAPE, np.uint8)
    g = np.indices((17, 17, 17)).transpose(1, 2, 3, 0) - 8
    ball = (np.linalg.norm(g, axis=-1) <= 8).astype(np.uint8) * 2
    c = (128, 124, 92)
    lab[c[0] - 8:c[0] + 9, c[1] - 8:c[1] + 9, c[2] - 8:c[2] + 9] = ball
    f["ok_seg.nii.gz"] = save_nii(d / "ok_seg.nii.gz", lab)
    good = (d / "ok_seg.nii.gz").read_bytes()
    raw("empty.nii.gz", b"")
    raw("truncated.nii.gz", good[:300])
    raw("truncated_raw.nii", gzip.decompress(good)[:2000])
    raw("random.nii.gz", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    raw("gzip_of_text.nii.gz", gzip.compress(b"hello, not a nifti\n" * 20))
    f["nan.nii.gz"] = save_nii(d / "nan.nii.gz", np.full((20, 20, 20), np.nan, np.float32))
    f["inf.nii.gz"] = save_nii(d / "inf.nii.gz", np.where(lab > 0, np.inf, 0).astype(np.float32))
    f["2d.nii.gz"] = save_nii(d / "2d.nii.gz", np.ones((30, 30), np.uint8))
    f["4d.nii.gz"] = save_nii(d / "4d.nii.gz", np.ones((10, 10, 10, 3), np.uint8))
    f["1x1x1.nii.gz"] = save_nii(d / "1x1x1.nii.gz", np.ones((1, 1, 1), np.uint8))
    no_orientation = nib.Nifti1Image(lab, MNI_AFFINE)
    no_orientation.set_qform(None, code=0)
    no_orientation.set_sform(None, code=0)
    nib.save(no_orientation, d / "noorient.nii.gz")  # qform_code = sform_code = 0
    f["noorient.nii.gz"] = d / "noorient.nii.gz"
    zero_pixdim = nib.Nifti1Image(lab, MNI_AFFINE)
    zero_pixdim.header["pixdim"][1:4] = 0
    zero_pixdim.set_qform(None, code=0)
    zero_pixdim.set_sform(None, code=0)
    nib.save(zero_pixdim, d / "pixdim0.nii.gz")
    f["pixdim0.nii.gz"] = d / "pixdim0.nii.gz"
    (d / "folder.nii.gz").mkdir()
    f["folder.nii.gz"] = d / "folder.nii.gz"
    f["missing.nii.gz"] = d / "missing.nii.gz"
    # tables and arrays
    rows = ["x,y"] + [f"{np.sin(t / 3):.4f},{np.cos(t / 3):.4f}" for t in range(16)]
    raw("ok_data.csv", ("\n".join(rows) + "\n").encode())
    raw("text.csv", b"x,y\nhello,world\nfoo,bar\n")
    raw("empty.csv", b"")
    raw("nonutf8.csv", b"x,y\n\xff\xfe,\x80\n")
    raw("nan.csv", b"x,y\n" + b"nan,1\n" * 12)
    raw("inf.csv", b"x,y\n" + b"inf,1\n" * 12)
    paths = np.cumsum(rng.normal(size=(6, 128)), axis=1) * 0.1
    np.save(d / "ok_paths.npy", paths)
    f["ok_paths.npy"] = d / "ok_paths.npy"
    for name, arr in {"rank1.npy": np.ones(50), "rank4.npy": np.ones((2, 3, 4, 5)),
                      "nan.npy": np.where(np.arange(128) % 7 == 0, np.nan, paths),
                      "inf.npy": np.where(np.arange(128) % 7 == 0, np.inf, paths),
                      "huge.npy": paths * 1e199, "empty.npy": np.zeros((0, 128)),
                      "short.npy": paths[:, :2], "object.npy": np.array([{"a": 1}] * 3),
                      "text.npy": np.array([["a", "b"], ["c", "d"]])}.items():
        np.save(d / name, arr, allow_pickle=True)
        f[name] = d / name
    raw("truncated.npy", (d / "ok_paths.npy").read_bytes()[:150])
    raw("random.npy", rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    # configs
    raw("ok_pvrnn.toml", PVRNN_TINY.encode())
    raw("ok_fsde.toml", fsde_tiny_toml().encode())
    raw("nonutf8.toml", b"seed = 1\n# \xff\xfe\xfa\n")
    raw("garbage.toml", b"[[[ this is = not toml\n")
    raw("wrongtype.toml", b'seed = "one"\nepochs = -5\n')
    # models and videos
    raw("random.pt", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    raw("empty.pt", b"")
    raw("random.mp4", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    raw("empty.mp4", b"")
    raw("random.npz", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    np.savez(d / "nokey.npz", other=np.zeros((9, 32, 32)))
    f["nokey.npz"] = d / "nokey.npz"
    np.savez(d / "nanframes.npz", frames=np.full((9, 32, 32), np.nan, np.float32))
    f["nanframes.npz"] = d / "nanframes.npz"
    np.savez(d / "rank2frames.npz", frames=np.zeros((9, 32), np.float32))
    f["rank2frames.npz"] = d / "rank2frames.npz"
    from engine.fsde.video_data import moving_digits

    np.savez(d / "ok_clip.npz", frames=moving_digits(1, 9, seed=4, split="test").frames[0])
    f["ok_clip.npz"] = d / "ok_clip.npz"
    raw("afile", b"I am a file, not a folder\n")
    f["root"] = d
    return f


@pytest.fixture(scope="module")
def tumor_db(tmp_path_factory):
    import main

    path = tmp_path_factory.mktemp("tumordb") / "db"
    assert main.main(["tumor", "build-db", "--preset", "tiny", "--db", str(path),
                      "--workers", "1"]) == 0
    return path


@pytest.fixture(scope="module")
def pvrnn_model(corpus, tmp_path_factory):
    import main

    out = tmp_path_factory.mktemp("pvrnn") / "m.pt"
    assert main.main(["pvrnn", "train", "--data", str(corpus["ok_data.csv"]), "--out", str(out),
                      "--config", str(corpus["ok_pvrnn.toml"])]) == 0
    return out


@pytest.fixture(scope="module")
def fsde_model(corpus, tmp_path_factory):
    import main

    out = tmp_path_factory.mktemp("fsde") / "m.pt"
    assert main.main(["fsde", "train", "--data", "moving-digits", "--out", str(out),
                      "--config", str(corpus["ok_fsde.toml"])]) == 0
    return out


# ----------------------------------------------------------------------------- tumor
NIFTI_BAD = ("empty.nii.gz", "truncated.nii.gz", "truncated_raw.nii", "random.nii.gz",
             "gzip_of_text.nii.gz", "nan.nii.gz", "inf.nii.gz", "2d.nii.gz", "4d.nii.gz",
             "1x1x1.nii.gz", "folder.nii.gz", "missing.nii.gz")


@pytest.mark.parametrize("name", NIFTI_BAD)
@pytest.mark.parametrize("flag", ["--scan", "--seg"])
def test_tumor_check_bad_nifti(capfd, corpus, name, flag):
    line = assert_bad_input(capfd, ["tumor", "check", flag, corpus[name]])
    assert name in line
    if name == "1x1x1.nii.gz":
        assert "2-D" not in line  # it was called "2-D data"


@pytest.mark.parametrize("name", NIFTI_BAD)
def test_tumor_fit_bad_segmentation(capfd, corpus, tumor_db, tmp_path, name):
    for out in (fresh(tmp_path, "out"), existing(tmp_path, "out")):
        line = assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, "--seg", corpus[name],
                                         "--out", out], [out])
        assert name in line


@pytest.mark.parametrize("name", ["noorient.nii.gz", "pixdim0.nii.gz"])
def test_tumor_fit_segmentation_without_orientation(capfd, corpus, tumor_db, tmp_path, name):
    """No qform/sform (or zero voxel sizes): the position in MNI space is unknown; fitting it
    anyway put the tumor in the wrong hemisphere with a believable Dice."""
    out = fresh(tmp_path, "out")
    line = assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, "--seg", corpus[name],
                                     "--out", out, "--no-refine", "--top-k", "5"], [out])
    assert name in line


REGISTER_BAD = ("empty.nii.gz", "truncated.nii.gz", "random.nii.gz", "nan.nii.gz", "2d.nii.gz",
                "4d.nii.gz", "1x1x1.nii.gz", "noorient.nii.gz", "folder.nii.gz",
                "missing.nii.gz")


@pytest.mark.parametrize("name", REGISTER_BAD)
def test_tumor_register_bad_scan(capfd, corpus, tmp_path, name):
    out = existing(tmp_path, "regdir")
    line = assert_bad_input(capfd, ["tumor", "register", "--scan", corpus[name], "--out", out,
                                    "--reg-method", "affine"], [out])
    assert name in line


@pytest.mark.parametrize("extra", [["--seg", "truncated.nii.gz"], ["--reg-level", "nan"],
                                   ["--reg-level", "0"], ["--reg-level", "-2"]])
def test_tumor_register_bad_segmentation_or_option(capfd, corpus, tmp_path, extra):
    out = fresh(tmp_path, "regdir")
    extra = [corpus.get(e, e) for e in extra]
    assert_bad_input(capfd, ["tumor", "register", "--scan", "resources/mni152/mni152_t1_1mm.nii.gz",
                             "--out", out, "--reg-method", "affine", *extra], [out])


@pytest.mark.parametrize("dicom", ["empty_dir", "random_files", "a_file", "missing"])
def test_tumor_import_dicom_bad_folder(capfd, corpus, tmp_path, dicom):
    folder = tmp_path / dicom
    if dicom == "empty_dir":
        folder.mkdir()
    elif dicom == "random_files":
        folder.mkdir()
        rng = np.random.default_rng(3)
        for i in range(3):
            (folder / f"IM{i}.dcm").write_bytes(b"\0" * 128 + b"DICM" +
                                                 rng.integers(0, 256, 900, np.uint8).tobytes())
    elif dicom == "a_file":
        folder = corpus["afile"]
    for out in (fresh(tmp_path, "scan.nii.gz"), existing(tmp_path, "scan.nii.gz")):
        line = assert_bad_input(capfd, ["tumor", "import-dicom", "--dicom", folder, "--out", out],
                                [out])
        assert str(folder) in line


@pytest.mark.parametrize("case", ["empty_dir", "random_files", "a_file", "list_nonutf8",
                                  "list_empty", "list_missing"])
def test_tumor_fit_bad_patient_folder_or_list(capfd, corpus, tumor_db, tmp_path, case):
    src = tmp_path / case
    if case in ("empty_dir", "random_files"):
        src.mkdir()
    if case == "random_files":
        for kind in ("t1", "seg"):
            (src / f"case_{kind}.nii.gz").write_bytes(np.random.default_rng(4).bytes(999))
    if case == "a_file":
        src = corpus["afile"]
    body = {"list_nonutf8": b"\xff\xfe/x.nii.gz\n", "list_empty": b"",
            "list_missing": str(tmp_path / "nope.nii.gz").encode() + b"\n"}
    flag = "--patient"
    if case in body:
        src = tmp_path / f"{case}.txt"
        src.write_bytes(body[case])
        flag = "--list"
    out = fresh(tmp_path, "out")
    # batch mode (--list) reports each input in OUTDIR/summary.csv, failures included
    line = assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, flag, src, "--out", out],
                            [] if case == "list_missing" else [out])
    assert str(src) in line or "nope.nii.gz" in line


@pytest.fixture(scope="module")
def damaged_dbs(tumor_db, tmp_path_factory):
    """Copies of the tiny database, each with one part damaged in place."""
    import shutil

    root = tmp_path_factory.mktemp("damaged")
    out = {}

    def flip(p: Path, start: int, step: int) -> None:
        b = bytearray(p.read_bytes())
        for i in range(start, len(b), step):
            b[i] ^= 0x5A
        p.write_bytes(bytes(b))  # same size

    for kind in ("catalog", "index", "manifest", "shard", "embedding"):
        d = root / kind
        shutil.copytree(tumor_db, d)
        out[kind] = d
    flip(out["catalog"] / "catalog.sqlite", 2048, 3)
    flip(out["index"] / "index.faiss", 100, 5)
    (out["manifest"] / "manifest.json").write_text('{"trunc')
    flip(sorted((out["shard"] / "shards").glob("*.npy"))[1], 200, 7)
    (out["embedding"] / "embedding.npz").unlink()
    return out


@pytest.mark.parametrize("kind", ["catalog", "index", "manifest", "shard", "embedding"])
def test_tumor_fit_refuses_a_damaged_database(capfd, corpus, damaged_dbs, tmp_path, kind):
    out = fresh(tmp_path, "out")
    line = assert_bad_input(capfd, ["tumor", "fit", "--db", damaged_dbs[kind], "--seg",
                                     corpus["ok_seg.nii.gz"], "--out", out], [out])
    assert str(damaged_dbs[kind]) in line
    line = assert_bad_input(capfd, ["tumor", "check-db", "--db", damaged_dbs[kind], "--full"],
                            [damaged_dbs[kind]])
    assert str(damaged_dbs[kind]) in line


@pytest.mark.parametrize("opt, value", [
    ("--days", "nan"), ("--days", "inf"), ("--days", "-1"), ("--days", "0"),
    ("--days", "1e12"), ("--top-k", "0"), ("--top-k", "-3")])
def test_tumor_fit_bad_numbers(capfd, corpus, tumor_db, tmp_path, opt, value):
    out = fresh(tmp_path, "out")
    line = assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, "--seg",
                                     corpus["ok_seg.nii.gz"], "--out", out, opt, value], [out])
    assert opt in line


@FEW
@given(days=NOT_POSITIVE)
def test_tumor_fit_days_must_be_positive_and_finite(capfd, corpus, tumor_db, tmp_path, days):
    out = fresh(tmp_path, "out")
    assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, "--seg", corpus["ok_seg.nii.gz"],
                              "--out", out, "--days", repr(days)], [out])


def test_tumor_fit_out_is_a_file_or_inside_one(capfd, corpus, tumor_db, tmp_path):
    a_file = existing(tmp_path, "out.txt")
    for out in (a_file, corpus["afile"] / "out"):
        line = assert_bad_input(capfd, ["tumor", "fit", "--db", tumor_db, "--seg",
                                         corpus["ok_seg.nii.gz"], "--out", out], [a_file])
        assert str(a_file if out == a_file else corpus["afile"]) in line


@pytest.mark.parametrize("extra", [["--workers", "0"], ["--workers", "-2"], ["--seed", "-1"],
                                   ["--seed", "nan"], ["--preset", "huge"]])
def test_tumor_build_db_bad_options(capfd, tmp_path, extra):
    db = fresh(tmp_path, "db")
    assert_bad_input(capfd, ["tumor", "build-db", "--preset", "tiny", "--db", db, *extra], [db])
    assert not db.exists()


def test_tumor_build_db_into_a_file(capfd, corpus):
    line = assert_bad_input(capfd, ["tumor", "build-db", "--preset", "tiny", "--db",
                                     corpus["afile"]], [corpus["afile"]])
    assert "afile" in line


@pytest.mark.parametrize("db", ["missing", "afile", "emptydir"])
def test_tumor_fit_bad_database(capfd, corpus, tmp_path, db):
    path = {"missing": tmp_path / "nodb", "afile": corpus["afile"],
            "emptydir": tmp_path / "emptydir"}[db]
    if db == "emptydir":
        path.mkdir()
    out = fresh(tmp_path, "out")
    line = assert_bad_input(capfd, ["tumor", "fit", "--db", path, "--seg",
                                     corpus["ok_seg.nii.gz"], "--out", out], [out])
    assert str(path) in line
    line = assert_bad_input(capfd, ["tumor", "check-db", "--db", path], [path])
    assert str(path) in line


# ----------------------------------------------------------------------------- pvrnn
DATA_BAD = ("text.csv", "empty.csv", "nonutf8.csv", "nan.csv", "inf.csv", "rank1.npy",
            "rank4.npy", "nan.npy", "inf.npy", "empty.npy", "truncated.npy", "random.npy",
            "object.npy", "text.npy", "folder.nii.gz", "missing.nii.gz")


@pytest.mark.parametrize("name", DATA_BAD)
def test_pvrnn_train_bad_data(capfd, corpus, tmp_path, name):
    out = fresh(tmp_path, "m.pt")
    line = assert_bad_input(capfd, ["pvrnn", "train", "--data", corpus[name], "--out", out,
                                     "--config", corpus["ok_pvrnn.toml"]], [out])
    assert name in line


@pytest.mark.parametrize("name", ["nonutf8.toml", "garbage.toml", "wrongtype.toml",
                                  "folder.nii.gz", "random.pt"])
def test_pvrnn_train_bad_config(capfd, corpus, tmp_path, name):
    out = fresh(tmp_path, "m.pt")
    line = assert_bad_input(capfd, ["pvrnn", "train", "--data", corpus["ok_data.csv"], "--out",
                                     out, "--config", corpus[name]], [out])
    assert name in line


@pytest.mark.parametrize("extra", [["--epochs", "-1"], ["--seed", "-1"], ["--epochs", "nan"]])
def test_pvrnn_train_bad_numbers(capfd, corpus, tmp_path, extra):
    out = fresh(tmp_path, "m.pt")
    assert_bad_input(capfd, ["pvrnn", "train", "--data", corpus["ok_data.csv"], "--out", out,
                              "--config", corpus["ok_pvrnn.toml"], *extra], [out])


def test_pvrnn_train_never_replaces_another_model(capfd, corpus, pvrnn_model, tmp_path):
    import shutil

    out = tmp_path / "m.pt"
    shutil.copy(pvrnn_model, out)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n" + "".join(f"{t % 5},{t % 3}\n" for t in range(20)))
    for extra in (["--seed", "5"], ["--data", other]):
        argv = ["pvrnn", "train", "--data", corpus["ok_data.csv"], "--out", out, "--config",
                corpus["ok_pvrnn.toml"]]
        if extra[0] == "--data":
            argv[3] = extra[1]
        else:
            argv += extra
        line = assert_bad_input(capfd, argv, [out])
        assert str(out) in line


@pytest.mark.parametrize("name", ["random.pt", "empty.pt", "ok_data.csv", "folder.nii.gz",
                                  "missing.nii.gz"])
def test_pvrnn_predict_bad_model(capfd, corpus, tmp_path, name):
    out = existing(tmp_path, "pred.npz")
    line = assert_bad_input(capfd, ["pvrnn", "predict", "--model", corpus[name], "--data",
                                     corpus["ok_data.csv"], "--out", out], [out])
    assert name in line


@pytest.mark.parametrize("name", ["text.csv", "nan.npy", "rank4.npy", "random.npy",
                                  "folder.nii.gz"])
def test_pvrnn_predict_bad_data(capfd, corpus, pvrnn_model, tmp_path, name):
    out = fresh(tmp_path, "pred.npz")
    line = assert_bad_input(capfd, ["pvrnn", "predict", "--model", pvrnn_model, "--data",
                                     corpus[name], "--out", out], [out])
    assert name in line


@pytest.mark.parametrize("opt, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-0.1"), ("--lr", "0"),
    ("--meta-prior", "nan"), ("--meta-prior", "inf"), ("--meta-prior", "-1"),
    ("--window", "0"), ("--window", "-2"), ("--iterations", "-1"), ("--horizon", "-1"),
    ("--chunk", "0")])
def test_pvrnn_predict_bad_numbers(capfd, corpus, pvrnn_model, tmp_path, opt, value):
    out = existing(tmp_path, "pred.npz")
    line = assert_bad_input(capfd, ["pvrnn", "predict", "--model", pvrnn_model, "--data",
                                     corpus["ok_data.csv"], "--out", out, opt, value], [out])
    assert opt in line


@FEW
@given(lr=NOT_POSITIVE)
def test_pvrnn_predict_lr_must_be_positive_and_finite(capfd, corpus, pvrnn_model, tmp_path, lr):
    out = fresh(tmp_path, "pred.npz")
    assert_bad_input(capfd, ["pvrnn", "predict", "--model", pvrnn_model, "--data",
                              corpus["ok_data.csv"], "--out", out, "--lr", repr(lr)], [out])


def test_pvrnn_predict_out_inside_a_file(capfd, corpus, pvrnn_model):
    line = assert_bad_input(capfd, ["pvrnn", "predict", "--model", pvrnn_model, "--data",
                                     corpus["ok_data.csv"], "--out", corpus["afile"] / "p.npz"],
                            [corpus["afile"]])
    assert "afile" in line and ".tmp" not in line


# ----------------------------------------------------------------------------- fsde hurst
PATHS_BAD = ("rank1.npy", "rank4.npy", "nan.npy", "inf.npy", "empty.npy",
             "short.npy", "truncated.npy", "random.npy", "object.npy", "text.npy", "text.csv",
             "folder.nii.gz", "missing.nii.gz")


@pytest.mark.parametrize("name", PATHS_BAD)
def test_fsde_hurst_bad_paths(capfd, corpus, tmp_path, name):
    for out in (fresh(tmp_path, "est.json"), existing(tmp_path, "est.json")):
        line = assert_bad_input(capfd, ["fsde", "hurst", "--data", corpus[name], "--dt", "0.01",
                                         "--out", out, "--max-iter", "3"], [out])
        assert name in line


def test_fsde_hurst_huge_values_give_the_same_estimate(capfd, corpus, tmp_path):
    """Paths x 1e199 once gave H 0.033 and '-Infinity' in the JSON with exit 0. H does not
    depend on the units of the paths: the same estimate as the unscaled paths, strict JSON."""
    import json

    est = {}
    for name in ("ok_paths.npy", "huge.npy"):
        out = tmp_path / f"{name}.json"
        code, lines, err = cli(capfd, "fsde", "hurst", "--data", corpus[name], "--dt", "0.01",
                               "--out", out, "--max-iter", "3")
        assert code == 0 and "Traceback" not in err, err[-3000:]
        est[name] = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert est["huge.npy"]["hurst"] == pytest.approx(est["ok_paths.npy"]["hurst"], abs=1e-3)


@pytest.mark.parametrize("opt, value", [
    ("--dt", "0"), ("--dt", "-1"), ("--dt", "nan"), ("--dt", "inf"), ("--K", "0"),
    ("--K", "-1"), ("--max-iter", "0"), ("--max-iter", "-5"), ("--starts", "nan"),
    ("--starts", "1.5"), ("--starts", "0"), ("--gamma-max", "nan"), ("--gamma-max", "-1"),
    ("--gamma-max", "1e300"), ("--K", "1000000")])
def test_fsde_hurst_bad_numbers(capfd, corpus, tmp_path, opt, value):
    out = fresh(tmp_path, "est.json")
    args = ["fsde", "hurst", "--data", corpus["ok_paths.npy"], "--dt", "0.01", "--out", out,
            "--max-iter", "3"]
    if opt in ("--dt", "--max-iter"):
        args[args.index(opt) + 1] = value
    else:
        args += [opt, value]
    line = assert_bad_input(capfd, args, [out])
    assert opt in line


@FEW
@given(dt=NOT_POSITIVE)
def test_fsde_hurst_dt_must_be_positive_and_finite(capfd, corpus, tmp_path, dt):
    out = fresh(tmp_path, "est.json")
    assert_bad_input(capfd, ["fsde", "hurst", "--data", corpus["ok_paths.npy"], "--dt",
                              repr(dt), "--out", out], [out])


@FEW
@given(data=st.binary(min_size=1, max_size=400))
def test_fsde_hurst_random_bytes(capfd, corpus, tmp_path, data):
    src = fresh(tmp_path, "paths.npy")
    src.write_bytes(data)
    out = existing(tmp_path, "est.json")
    assert_bad_input(capfd, ["fsde", "hurst", "--data", src, "--dt", "0.01", "--out", out],
                     [out])


def test_fsde_hurst_out_is_a_folder(capfd, corpus, tmp_path):
    out = existing(tmp_path, "estdir")
    line = assert_bad_input(capfd, ["fsde", "hurst", "--data", corpus["ok_paths.npy"], "--dt",
                                     "0.01", "--out", out, "--max-iter", "2"], [out])
    assert str(out) in line and ".tmp" not in line


# ----------------------------------------------------------------------------- fsde video
VIDEO_BAD = ("random.mp4", "empty.mp4", "random.npz", "nokey.npz", "nanframes.npz",
             "rank2frames.npz", "folder.nii.gz", "missing.nii.gz", "ok_data.csv")


@pytest.mark.parametrize("name", VIDEO_BAD)
def test_fsde_train_bad_video(capfd, corpus, tmp_path, name):
    out = fresh(tmp_path, "m.pt")
    line = assert_bad_input(capfd, ["fsde", "train", "--data", corpus[name], "--out", out,
                                     "--config", corpus["ok_fsde.toml"]], [out])
    assert name in line


@pytest.mark.parametrize("name", ["nonutf8.toml", "garbage.toml", "folder.nii.gz"])
def test_fsde_train_bad_config(capfd, corpus, tmp_path, name):
    out = fresh(tmp_path, "m.pt")
    line = assert_bad_input(capfd, ["fsde", "train", "--data", "moving-digits", "--out", out,
                                     "--config", corpus[name]], [out])
    assert name in line


def test_fsde_train_never_replaces_another_model(capfd, corpus, fsde_model, tmp_path):
    import shutil

    out = tmp_path / "m.pt"
    shutil.copy(fsde_model, out)
    cfg = tmp_path / "seed3.toml"
    cfg.write_text(fsde_tiny_toml(seed=3))
    line = assert_bad_input(capfd, ["fsde", "train", "--data", "moving-digits", "--out", out,
                                     "--config", cfg], [out])
    assert str(out) in line
    clip = tmp_path / "clip.npz"
    from engine.fsde.video_data import moving_digits

    np.savez(clip, frames=moving_digits(1, 24, seed=9, split="test").frames[0])
    line = assert_bad_input(capfd, ["fsde", "train", "--data", clip, "--out", out, "--config",
                                     corpus["ok_fsde.toml"]], [out])
    assert str(out) in line


@pytest.mark.parametrize("name", VIDEO_BAD)
def test_fsde_predict_bad_video(capfd, corpus, fsde_model, tmp_path, name):
    out = existing(tmp_path, "pred.mp4")
    npz = out.with_suffix(".npz")
    line = assert_bad_input(capfd, ["fsde", "predict", "--model", fsde_model, "--video",
                                     corpus[name], "--context", "4", "--horizon", "3",
                                     "--samples", "2", "--out", out], [out, npz])
    assert name in line


@pytest.mark.parametrize("name", ["random.pt", "empty.pt", "ok_data.csv", "folder.nii.gz"])
def test_fsde_predict_bad_model(capfd, corpus, tmp_path, name):
    out = fresh(tmp_path, "pred.mp4")
    line = assert_bad_input(capfd, ["fsde", "predict", "--model", corpus[name], "--video",
                                     corpus["ok_clip.npz"], "--context", "4", "--horizon", "3",
                                     "--out", out], [out, out.with_suffix(".npz")])
    assert name in line


@pytest.mark.parametrize("opt, value", [
    ("--fps", "0"), ("--fps", "-5"), ("--fps", "nan"), ("--fps", "inf"), ("--context", "0"),
    ("--context", "-1"), ("--horizon", "0"), ("--horizon", "-1"), ("--samples", "0"),
    ("--samples", "-2"), ("--seed", "-1")])
def test_fsde_predict_bad_numbers(capfd, corpus, fsde_model, tmp_path, opt, value):
    out = existing(tmp_path, "pred.mp4")
    args = {"--context": "4", "--horizon": "3", "--samples": "2", "--fps": "5", "--seed": "0"}
    args[opt] = value
    argv = ["fsde", "predict", "--model", fsde_model, "--video", corpus["ok_clip.npz"],
            "--out", out] + [x for kv in args.items() for x in kv]
    line = assert_bad_input(capfd, argv, [out, out.with_suffix(".npz")])
    assert opt in line


@FEW
@given(fps=NOT_POSITIVE)
def test_fsde_predict_fps_must_be_positive_and_finite(capfd, corpus, fsde_model, tmp_path, fps):
    out = fresh(tmp_path, "pred.mp4")
    assert_bad_input(capfd, ["fsde", "predict", "--model", fsde_model, "--video",
                              corpus["ok_clip.npz"], "--context", "4", "--horizon", "3",
                              "--samples", "2", "--fps", repr(fps), "--out", out],
                     [out, out.with_suffix(".npz")])


# ----------------------------------------------------------------------------- random bytes
@FEW
@given(data=st.binary(min_size=1, max_size=600))
@pytest.mark.parametrize("kind", ["nifti", "csv", "toml", "pt", "mp4"])
def test_random_bytes_in_every_file_slot(capfd, corpus, tmp_path, kind, data):
    suffix = {"nifti": ".nii.gz", "csv": ".csv", "toml": ".toml", "pt": ".pt", "mp4": ".mp4"}
    src = fresh(tmp_path, "input" + suffix[kind])
    src.write_bytes(data)
    out = fresh(tmp_path, "out")
    argv = {
        "nifti": ["tumor", "check", "--seg", src],
        "csv": ["pvrnn", "train", "--data", src, "--out", out.with_suffix(".pt"),
                "--config", corpus["ok_pvrnn.toml"]],
        "toml": ["pvrnn", "train", "--data", corpus["ok_data.csv"], "--out",
                 out.with_suffix(".pt"), "--config", src],
        "pt": ["pvrnn", "predict", "--model", src, "--data", corpus["ok_data.csv"], "--out",
               out.with_suffix(".npz")],
        "mp4": ["fsde", "train", "--data", src, "--out", out.with_suffix(".pt"), "--config",
                corpus["ok_fsde.toml"]],
    }[kind]
    if kind == "toml" and data.isascii() and b"=" not in data and b"[" not in data:
        data = b"\xff" + data  # keep it invalid: a blank/comment-only TOML is a valid config
        src.write_bytes(data)
    assert_bad_input(capfd, argv, [out.with_suffix(".pt"), out.with_suffix(".npz")])


# ----------------------------------------------------------------------------- read-only out
@pytest.mark.parametrize("command", ["hurst", "pvrnn", "fit"])
def test_out_in_a_read_only_folder(capfd, corpus, tumor_db, pvrnn_model, tmp_path,
                                   monkeypatch, command):
    """A folder the process may not write into (simulated at mkstemp/mkdir: tests may run as
    root, who ignores permission bits): one sentence naming the user's path."""
    import os
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkstemp, real_mkdir = tempfile.mkstemp, os.mkdir

    def under_ro(p) -> bool:
        return p is not None and (Path(p) == ro or ro in Path(p).parents)

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        if under_ro(dir):
            raise PermissionError(13, "Permission denied", f"{dir}/{prefix}zz{suffix}")
        return real_mkstemp(suffix=suffix, prefix=prefix, dir=dir, text=text)

    def mkdir(p, mode=0o777, *a, **kw):
        if under_ro(Path(p).parent):
            raise PermissionError(13, "Permission denied", str(p))
        return real_mkdir(p, mode, *a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "mkdir", mkdir)
    argv = {
        "hurst": ["fsde", "hurst", "--data", corpus["ok_paths.npy"], "--dt", "0.01",
                  "--max-iter", "2", "--out", ro / "est.json"],
        "pvrnn": ["pvrnn", "predict", "--model", pvrnn_model, "--data", corpus["ok_data.csv"],
                  "--out", ro / "p.npz"],
        "fit": ["tumor", "fit", "--db", tumor_db, "--seg", corpus["ok_seg.nii.gz"], "--no-refine",
                "--top-k", "5", "--out", ro / "outdir"],
    }[command]
    line = assert_bad_input(capfd, argv, [ro])
    assert str(ro) in line and ".tmp" not in line


# ----------------------------------------------------------------------------- subprocess
@pytest.mark.parametrize("argv, name", [
    (["tumor", "check", "--seg", "{root}/truncated.nii.gz"], "truncated.nii.gz"),
    (["fsde", "hurst", "--data", "{root}/nan.npy", "--dt", "0.01", "--out", "{out}"], "nan.npy"),
    (["pvrnn", "predict", "--model", "{root}/random.pt", "--data", "{root}/ok_data.csv",
      "--out", "{out}"], "random.pt"),
    (["fsde", "predict", "--model", "{root}/random.pt", "--video", "{root}/ok_clip.npz",
      "--fps", "nan", "--out", "{out}"], "--fps"),
    (["fsde", "train", "--data", "{root}/random.mp4", "--out", "{out}", "--config",
      "{root}/ok_fsde.toml"], "random.mp4"),  # ffmpeg's own lines must not reach stderr
])
def test_real_process_exit_status(corpus, tmp_path, argv, name):
    out = tmp_path / "out.bin"
    r = run_main(*[a.format(root=corpus["root"], out=out) for a in argv])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], r.stderr
    assert not out.exists()
