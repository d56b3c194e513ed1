"""Native-space fit: `tumor fit --scan --seg`, `--patient`, `tumor register`, the MNI-space
rule for a segmentation given alone, and bad inputs (one sentence, exit 2, nothing written)."""
import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "native_demo"
FAST = ["--reg-level", "4"]


@pytest.fixture(scope="module")
def db_dir(tiny_db_dir):
    return tiny_db_dir


@pytest.fixture(scope="module")
def truth():
    return json.loads((DEMO / "truth.json").read_text())


@pytest.fixture(scope="module")
def native_fit(db_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    r = run_main("tumor", "fit", "--db", db_dir, "--scan", DEMO / "scan_t1.nii.gz", "--seg",
                 DEMO / "seg.nii.gz", "--out", out, "--days", "150", *FAST)
    return r, out


def test_native_fit_writes_native_and_mni_outputs(native_fit, truth):
    r, out = native_fit
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert {"estimate.json", "estimate.csv", "tumor_concentration.nii.gz",
            "tumor_labels.nii.gz", "tumor_concentration_mni.nii.gz", "tumor_labels_mni.nii.gz",
            "scan_mni.nii.gz", "transform_affine.mat", "transform_warp.nii.gz",
            "transform_inverse_warp.nii.gz"} <= names
    seg = nib.load(DEMO / "seg.nii.gz")
    lab = nib.load(out / "tumor_labels.nii.gz")
    conc = nib.load(out / "tumor_concentration.nii.gz")
    for img in (lab, conc):                      # the segmentation's own grid and affine
        assert img.shape == seg.shape and np.allclose(img.affine, seg.affine)
    u = np.asarray(conc.dataobj)
    fitted = np.asarray(lab.dataobj)
    assert np.array_equal(fitted == 1, u >= np.float32(0.6))
    obs = np.asarray(seg.dataobj) > 0
    dice = 2 * (obs & (fitted > 0)).sum() / (obs.sum() + (fitted > 0).sum())
    assert dice > 0.5, dice                      # 8 mm tiny database: coarse, but in place
    d = json.loads((out / "estimate.json").read_text())
    assert d["space"] == "native" and len(d["origin_native_mm"]) == 3
    assert d["registration"]["library"] == "ants"
    assert d["registration"]["metric_after"] > d["registration"]["metric_before"]
    assert "register" in d["timings_s"]
    err = np.linalg.norm(np.subtract(d["origin_native_mm"], truth["origin_native_mm"]))
    assert err < 15.0, err                       # tiny 8 mm database
    # the native origin is where the fitted tumor is, in the scan's world coordinates
    peak = np.argwhere(u == u.max()).mean(0)
    peak_mm = seg.affine[:3, :3] @ peak + seg.affine[:3, 3]
    assert np.linalg.norm(peak_mm - d["origin_native_mm"]) < 15.0
    with open(out / "estimate.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["origin_native_x_mm"]) == pytest.approx(d["origin_native_mm"][0])
    assert "space native" in r.stdout


def test_register_cli_writes_transform_and_scan_in_mni(tmp_path):
    out = tmp_path / "reg"
    r = run_main("tumor", "register", "--scan", DEMO / "scan_t1.nii.gz", "--seg",
                 DEMO / "seg.nii.gz", "--out", out, *FAST, "--reg-method", "affine")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"transform_affine.mat", "scan_mni.nii.gz",
                                               "seg_mni.nii.gz", "registration.json"}
    img = nib.load(out / "scan_mni.nii.gz")
    assert img.shape == (197, 233, 189)
    q = json.loads((out / "registration.json").read_text())
    assert q["method"] == "affine" and q["metric_after"] > 0.5


def test_brats_folder_is_found_and_t1_is_picked(tmp_path):
    from engine.imaging.patient import load_patient

    folder = tmp_path / "BraTS-GLI-00001-000"
    folder.mkdir()
    shutil.copy(DEMO / "scan_t1.nii.gz", folder / "BraTS-GLI-00001-000-t1c.nii.gz")
    shutil.copy(DEMO / "scan_t1.nii.gz", folder / "BraTS-GLI-00001-000-t1n.nii.gz")
    shutil.copy(DEMO / "seg.nii.gz", folder / "BraTS-GLI-00001-000-seg.nii.gz")
    p = load_patient(folder)
    assert p.modality == "t1" and p.scan.path.name.endswith("-t1n.nii.gz")
    assert p.seg_on_scan.shape == p.scan.shape
    old = tmp_path / "BraTS2021_00002"
    old.mkdir()
    shutil.copy(DEMO / "scan_t1.nii.gz", old / "BraTS2021_00002_t1ce.nii.gz")
    shutil.copy(DEMO / "seg.nii.gz", old / "BraTS2021_00002_seg.nii.gz")
    assert load_patient(old).modality == "t1c"


def test_brats_folder_missing_the_scan_or_the_segmentation_says_what_it_found(tmp_path):
    from engine.imaging.patient import load_patient
    from engine.jobs import InputError

    only_seg = tmp_path / "BraTS-GLI-00003-000"
    only_seg.mkdir()
    shutil.copy(DEMO / "seg.nii.gz", only_seg / "BraTS-GLI-00003-000-seg.nii.gz")
    with pytest.raises(InputError, match=r"has no scan \(.*found: .*seg") as e:
        load_patient(only_seg)
    assert "\n" not in str(e.value)
    only_scan = tmp_path / "BraTS-GLI-00004-000"
    only_scan.mkdir()
    shutil.copy(DEMO / "scan_t1.nii.gz", only_scan / "BraTS-GLI-00004-000-t2w.nii.gz")
    with pytest.raises(InputError, match=r"has no segmentation .*found: .*t2w"):
        load_patient(only_scan)


def _seg_on_mni_grid(path, affine=None, code=2):
    lab = np.zeros((197, 233, 189), np.uint8)
    lab[120:135, 110:125, 90:105] = 2
    img = nib.Nifti1Image(lab, np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72],
                                         [0, 0, 0, 1]]) if affine is None else affine)
    img.set_sform(img.affine, code=code)
    nib.save(img, str(path))
    return path


def test_mni_space_rule_for_a_segmentation_alone(tmp_path):
    from engine.imaging import load_volume
    from engine.jobs import InputError
    from engine.tumor.native import require_mni_segmentation

    seg = load_volume(DEMO / "seg.nii.gz", "labels")          # native: refused
    with pytest.raises(InputError, match="--scan .* or --space mni"):
        require_mni_segmentation(seg, DEMO / "seg.nii.gz")
    require_mni_segmentation(seg, DEMO / "seg.nii.gz", "mni")  # the user says so
    demo = ROOT / "resources" / "demo_tumor" / "demo_seg.nii.gz"
    require_mni_segmentation(load_volume(demo, "labels"), demo)   # known grid
    odd = np.diag([1.0, 1, 1, 1])
    odd[:3, 3] = (-90, -120, -60)                              # not a known template grid
    said = _seg_on_mni_grid(tmp_path / "said.nii.gz", odd, code=4)
    require_mni_segmentation(load_volume(said, "labels"), said)   # the header says MNI (4)
    unsaid = _seg_on_mni_grid(tmp_path / "unsaid.nii.gz", odd, code=2)
    with pytest.raises(InputError, match="not known to be in MNI152 space"):
        require_mni_segmentation(load_volume(unsaid, "labels"), unsaid)


def _bad_cases(tmp_path):
    scan, seg = DEMO / "scan_t1.nii.gz", DEMO / "seg.nii.gz"
    far = nib.load(seg)
    aff = far.affine.copy()
    aff[:3, 3] += 500
    nib.save(nib.Nifti1Image(np.asarray(far.dataobj), aff), str(tmp_path / "far_seg.nii.gz"))
    lab = np.zeros(far.shape, np.uint8)
    lab[:10, :10, :4] = 2                                     # a corner: outside the brain
    nib.save(nib.Nifti1Image(lab, far.affine), str(tmp_path / "corner_seg.nii.gz"))
    onlyscan = tmp_path / "P1"
    onlyscan.mkdir()
    shutil.copy(scan, onlyscan / "P1-t1n.nii.gz")
    four = np.stack([np.ones((20, 20, 20), np.float32)] * 3, -1)
    nib.save(nib.Nifti1Image(four, np.eye(4)), str(tmp_path / "4d.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((30, 30), np.float32), np.eye(4)),
             str(tmp_path / "2d.nii.gz"))
    noise = np.random.default_rng(0).random((60, 60, 60)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, np.diag([2.5, 2.5, 2.5, 1])), str(tmp_path / "noise.nii.gz"))
    nlab = np.zeros((60, 60, 60), np.uint8)
    nlab[25:35, 25:35, 25:35] = 2
    nib.save(nib.Nifti1Image(nlab, np.diag([2.5, 2.5, 2.5, 1])),
             str(tmp_path / "noise_seg.nii.gz"))
    native_alone = tmp_path / "native_seg.nii.gz"
    shutil.copy(seg, native_alone)
    return {
        "no overlap": (["--scan", scan, "--seg", tmp_path / "far_seg.nii.gz"], "does not overlap"),
        "outside brain": (["--scan", scan, "--seg", tmp_path / "corner_seg.nii.gz"],
                          "fall outside the brain"),
        "folder without seg": (["--patient", onlyscan], "has no segmentation"),
        "4-D scan": (["--scan", tmp_path / "4d.nii.gz", "--seg", seg], "4-D series"),
        "2-D scan": (["--scan", tmp_path / "2d.nii.gz", "--seg", seg], "2-D"),
        "not a brain": (["--scan", tmp_path / "noise.nii.gz", "--seg",
                         tmp_path / "noise_seg.nii.gz"], "does not look like a brain"),
        "native seg alone": (["--seg", native_alone], "not known to be in MNI152 space"),
    }


BAD = ("no overlap", "outside brain", "folder without seg", "4-D scan", "2-D scan",
       "not a brain", "native seg alone")


@pytest.mark.parametrize("case", BAD)
def test_bad_native_input_one_sentence_exit_2_nothing_written(case, db_dir, tmp_path, capsys):
    from main import main

    args, phrase = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    rc = main(["tumor", "fit", "--db", str(db_dir), *map(str, args), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2, err
    assert len(lines) == 1 and phrase in lines[0], err
    assert "Traceback" not in err
    assert not out.exists()
    if case == "folder without seg":
        assert "P1-t1n.nii.gz" in lines[0]               # names what was found
