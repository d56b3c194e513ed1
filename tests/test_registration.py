"""engine/imaging/registration.py on the bundled native demo patient (coarse 4 mm level, few
iterations: fast), its transform files, cache and failure sentences."""
import json
from pathlib import Path

import numpy as np
import pytest

from engine.imaging import from_array, load_volume
from engine.imaging.registration import RegOptions, register, template_brain_mask
from engine.jobs import InputError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "native_demo"
FAST = RegOptions(level_mm=4.0, iterations=(20, 10), affine_iterations=(100, 50, 0))


@pytest.fixture(scope="module")
def demo():
    from engine.imaging.synthetic_patient import TruthMap

    truth = json.loads((DEMO / "truth.json").read_text())
    return {"scan": load_volume(DEMO / "scan_t1.nii.gz"),
            "seg": load_volume(DEMO / "seg.nii.gz", "labels"),
            "truth": truth, "map": TruthMap(truth["motion"])}


@pytest.fixture(scope="module")
def reg(demo, tmp_path_factory):
    return register(demo["scan"], demo["seg"], FAST)


def brain_points(step=7):
    m, a = template_brain_mask(4.0)
    return (np.argwhere(m) @ a[:3, :3].T + a[:3, 3])[::step]


def test_demo_patient_is_native_lps_anisotropic_and_skull_stripped(demo):
    scan = demo["scan"]
    assert scan.orientation == "LPS" and np.allclose(sorted(scan.voxel_size_mm), [1, 1, 3])
    assert demo["seg"].shape == scan.shape
    assert set(np.unique(demo["seg"].data)) <= {0, 1, 2, 4}


def test_registration_recovers_the_known_transform(demo, reg):
    x = brain_points()
    y_true = demo["map"].mni_to_native(x)
    err = np.linalg.norm(reg.mni_to_native(x) - y_true, axis=1)
    back = np.linalg.norm(reg.native_to_mni(y_true) - x, axis=1)
    assert err.mean() < 3.0 and np.percentile(err, 95) < 6.0, (err.mean(), np.percentile(err, 95))
    assert back.mean() < 3.0
    q = reg.quality
    assert q["ncc_after"] > q["ncc_before"] + 0.3 and q["skull_stripped"]
    assert q["fov_coverage"] > 0.95 and not q["already_mni"]
    # the true origin maps to within a few mm
    o = np.asarray(demo["truth"]["origin_mni_mm"])
    assert np.linalg.norm(reg.mni_to_native(o) - demo["truth"]["origin_native_mm"]) < 5.0


def test_warping_is_consistent_with_ants_apply_transforms(demo, reg, tmp_path):
    """Our composition y = A (x + w(x)) equals antsApplyTransforms -t warp -t affine on the
    written ITK files (the standard ANTs reading)."""
    import ants

    from engine.imaging.reg_backends import _to_ants
    from engine.imaging.reg_files import read_transforms, write_transforms
    from engine.imaging.registration import grid_like, template_volume

    paths = write_transforms(reg, tmp_path)
    shape, aff = grid_like(template_volume(), 4.0)
    ours = reg.to_mni(demo["scan"].data, demo["scan"].affine, 1, shape, aff)
    ref = _to_ants(np.zeros(shape, np.float32), aff)
    mov = _to_ants(demo["scan"].data.astype(np.float32), demo["scan"].affine)
    theirs = ants.apply_transforms(ref, mov, [str(paths["warp"]), str(paths["affine"])],
                                   interpolator="linear").numpy()
    inside = ours > 0
    assert np.corrcoef(ours[inside], theirs[inside])[0, 1] > 0.98
    back = read_transforms(tmp_path)                   # files round-trip
    x = brain_points(31)
    assert np.allclose(back.mni_to_native(x), reg.mni_to_native(x), atol=0.05)
    assert np.allclose(back.native_to_mni(x), reg.native_to_mni(x), atol=0.05)


def test_a_second_registration_comes_from_the_cache(demo):
    from dataclasses import replace

    opts = replace(FAST, method="affine")
    first = register(demo["scan"], demo["seg"], opts)
    again = register(demo["scan"], demo["seg"], opts)
    assert not first.cached and again.cached and np.allclose(again.A, first.A, atol=1e-6)
    assert set(again.transforms) == {"affine"} and again.transforms["affine"].is_file()
    other = register(demo["scan"], None, opts)           # other inputs: registered again
    assert not other.cached


def _vol(data, affine=None):
    return from_array(np.asarray(data, np.float32), np.diag([2.0, 2, 2, 1]) if affine is None
                      else affine, "scan", "test.nii.gz")


def test_failures_are_one_sentence_each(demo):
    rng = np.random.default_rng(0)
    scan = demo["scan"]
    # not a brain: a noise cube of head size
    with pytest.raises(InputError, match="does not look like a brain"):
        register(_vol(rng.random((90, 90, 90))), None, FAST)
    # a scan covering only the top of the head
    top = scan.data.copy()
    k = int(0.55 * top.shape[2])
    with pytest.raises(InputError, match="covers only part of the head"):
        register(from_array(top[:, :, k:], scan.affine @ _shift(0, 0, k), "scan",
                            "top.nii.gz"), None, FAST)
    # a header flipping anterior and posterior
    flip = scan.affine.copy()
    flip[:, 1] *= -1
    with pytest.raises(InputError, match="anterior-posterior look flipped"):
        register(from_array(scan.data, flip, "scan", "flipped.nii.gz"), None, FAST)


def _shift(i, j, k):
    t = np.eye(4)
    t[:3, 3] = (i, j, k)
    return t


def test_a_scan_already_in_mni_space_is_not_registered():
    from engine.imaging.registration import template_volume

    reg = register(template_volume(), None, FAST)
    assert reg.quality["already_mni"] and reg.method == "none" and np.allclose(reg.A, np.eye(4))
