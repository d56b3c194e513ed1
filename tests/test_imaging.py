"""engine/imaging: orientation, resampling, labels, validation (CLI path `tumor check`)."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.imaging import check_overlap, from_array, load_volume, resample
from engine.imaging.labels import core_mask, volumes_cm3, whole_mask
from engine.jobs import InputError

SHAPE = (7, 6, 5)
RAS_AFFINE = np.array([[2.0, 0, 0, -10], [0, 3.0, 0, 20], [0, 0, 4.0, 5], [0, 0, 0, 1]])


def _ras_data(seed=0):
    return np.random.default_rng(seed).integers(0, 1000, SHAPE).astype(np.int16)


def _save(path, data, affine, dtype=None):
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.header.set_data_dtype(dtype)
    nib.save(img, str(path))
    return Path(path)


def _twins(tmp_path):
    """The same anatomy stored three ways: RAS, LPS (i and j flipped) and permuted (k, i, j)."""
    data = _ras_data()
    ras = _save(tmp_path / "ras.nii.gz", data, RAS_AFFINE)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = SHAPE[0] - 1, SHAPE[1] - 1  # file voxel -> RAS voxel
    lps = _save(tmp_path / "lps.nii.gz", data[::-1, ::-1, :], RAS_AFFINE @ flip)
    perm = np.zeros((4, 4))
    perm[0, 1] = perm[1, 2] = perm[2, 0] = perm[3, 3] = 1  # file (k, i, j) -> RAS (i, j, k)
    permuted = _save(tmp_path / "perm.nii", np.transpose(data, (2, 0, 1)), RAS_AFFINE @ perm)
    return data, ras, lps, permuted


def test_lps_and_permuted_files_show_same_ras_point_for_same_voxel(tmp_path):
    data, ras, lps, permuted = _twins(tmp_path)
    twin = load_volume(ras)
    assert twin.orientation == "RAS"
    for path, code in ((lps, "LPS"), (permuted, "SRA")):
        vol = load_volume(path)
        assert vol.orientation == code
        np.testing.assert_array_equal(vol.data, twin.data)
        np.testing.assert_allclose(vol.affine, twin.affine)
        raw = np.asanyarray(nib.load(str(path)).dataobj)
        for ijk in [(0, 0, 0), (6, 5, 4), (2, 3, 1), (5, 1, 3)]:
            np.testing.assert_allclose(vol.vox_to_mm(ijk), twin.vox_to_mm(ijk))
            f = vol.ras_to_file_index(ijk)
            # the file's own index holds the same anatomical value at the same RAS point
            assert raw[tuple(f)] == data[ijk]
            np.testing.assert_allclose(nib.affines.apply_affine(vol.file_affine, f),
                                       twin.vox_to_mm(ijk))
            np.testing.assert_array_equal(vol.file_to_ras_index(f), ijk)


def test_resampling_onto_own_grid_is_identity(tmp_path):
    _, _, lps, _ = _twins(tmp_path)
    vol = load_volume(lps)
    out = resample(vol, None, vol.shape, vol.affine, order=1)
    np.testing.assert_allclose(out, vol.data.astype(np.float32), atol=1e-4)
    labels = from_array(np.random.default_rng(1).integers(0, 5, SHAPE), RAS_AFFINE, "labels")
    np.testing.assert_array_equal(resample(labels, None, SHAPE, RAS_AFFINE), labels.data)


def test_resampling_follows_affines_across_orientations(tmp_path):
    data, ras, lps, _ = _twins(tmp_path)
    # the LPS file's raw array resampled onto the RAS grid must give the RAS array back
    img = nib.load(str(lps))
    out = resample(np.asanyarray(img.dataobj), img.affine, SHAPE, RAS_AFFINE, order=0)
    np.testing.assert_array_equal(out, data)
    # a grid shifted by one voxel (+2 mm in x) reads the next voxel along i; linear halfway
    shifted = RAS_AFFINE.copy()
    shifted[0, 3] += 2.0
    out = resample(data.astype(np.float32), RAS_AFFINE, SHAPE, shifted, order=1)
    np.testing.assert_allclose(out[:-1], data[1:])
    assert np.all(out[-1] == 0)
    half = RAS_AFFINE.copy()
    half[0, 3] += 1.0
    out = resample(data.astype(np.float32), RAS_AFFINE, SHAPE, half, order=1)
    np.testing.assert_allclose(out[:-1], (data[:-1] + data[1:]) / 2.0, rtol=1e-5)


def test_label_helpers():
    labels = np.array([0, 1, 2, 3, 4, 2, 0]).reshape(7, 1, 1).astype(np.int16)
    assert core_mask(labels).ravel().tolist() == [0, 1, 0, 1, 1, 0, 0]
    assert whole_mask(labels).ravel().tolist() == [0, 1, 1, 1, 1, 1, 0]
    vols = volumes_cm3(labels, 0.5)
    assert vols["core"] == pytest.approx(1.5) and vols["whole tumor"] == pytest.approx(2.5)
    assert vols["edema (2)"] == pytest.approx(1.0)


def test_check_cli_summarises_scan_and_segmentation(tmp_path):
    _, _, lps, _ = _twins(tmp_path)
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:4, 2:4, 1:3] = 2
    seg[2, 2, 1] = 4
    seg_path = _save(tmp_path / "seg.nii.gz", seg, RAS_AFFINE)
    r = run_main("tumor", "check", "--scan", lps, "--seg", seg_path)
    assert r.returncode == 0, r.stderr
    assert "stored LPS" in r.stdout and "7 x 6 x 5" in r.stdout and "2 x 3 x 4 mm" in r.stdout
    # 7 edema voxels + 1 enhancing voxel of 24 mm^3 each
    assert "whole tumor" in r.stdout and "0.19 cm^3" in r.stdout
    assert "overlaps the scan: ok" in r.stdout


def _bad_inputs(tmp_path):
    """(path, kind, words the sentence must contain) for each kind of bad input."""
    cases = []
    good = _ras_data()
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    cases.append((p, "scan", "not a NIfTI file"))
    p = tmp_path / "garbage.nii"
    p.write_bytes(b"\x00" * 400)
    cases.append((p, "scan", "not a NIfTI file"))
    p = _save(tmp_path / "trunc.nii", good, RAS_AFFINE)
    p.write_bytes(p.read_bytes()[:-100])
    cases.append((p, "scan", "truncated"))
    p = _save(tmp_path / "truncgz.nii.gz", good, RAS_AFFINE)
    p.write_bytes(p.read_bytes()[:-200])
    cases.append((p, "scan", "truncated or corrupt"))
    p = _save(tmp_path / "flat.nii.gz", good[:, :, 0], RAS_AFFINE)
    cases.append((p, "scan", "2-D"))
    p = _save(tmp_path / "five.nii.gz", good.reshape(SHAPE + (1, 1)), RAS_AFFINE)
    cases.append((p, "scan", "5-D"))
    p = _save(tmp_path / "series.nii.gz", np.stack([good, good], -1), RAS_AFFINE)
    cases.append((p, "scan", "4-D series"))
    nan = good.astype(np.float32)
    nan[1, 1, 1] = np.nan
    p = _save(tmp_path / "nan.nii.gz", nan, RAS_AFFINE)
    cases.append((p, "scan", "non-finite"))
    singular = RAS_AFFINE.copy()
    singular[2, :3] = 0
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(SHAPE)
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(singular, code=2)
    p = tmp_path / "singular.nii.gz"
    nib.save(nib.Nifti1Image(good, None, hdr), str(p))
    assert abs(np.linalg.det(nib.load(str(p)).affine[:3, :3])) < 1e-9
    cases.append((p, "scan", "singular"))
    frac = np.zeros(SHAPE, np.float32)
    frac[1, 1, 1] = 1.5
    p = _save(tmp_path / "frac.nii.gz", frac, RAS_AFFINE)
    cases.append((p, "seg", "non-integer"))
    big = np.zeros(SHAPE, np.int16)
    big[1, 1, 1] = 7
    p = _save(tmp_path / "seven.nii.gz", big, RAS_AFFINE)
    cases.append((p, "seg", "outside the BraTS convention"))
    p = _save(tmp_path / "dot.nii.gz", good[:1, :1, :1], RAS_AFFINE)
    cases.append((p, "scan", "single voxel"))
    no_orient = nib.Nifti1Image(good, RAS_AFFINE)
    no_orient.set_qform(None, code=0)
    no_orient.set_sform(None, code=0)
    p = tmp_path / "noorient.nii.gz"
    nib.save(no_orient, str(p))
    cases.append((p, "seg", "no orientation in its header"))
    zero = nib.Nifti1Image(good, RAS_AFFINE)
    zero.header["pixdim"][1:4] = 0
    zero.set_qform(None, code=0)
    zero.set_sform(None, code=0)
    p = tmp_path / "pixdim0.nii.gz"
    nib.save(zero, str(p))
    cases.append((p, "scan", "position in space is unknown"))
    return cases


def test_single_voxel_and_no_orientation_messages_in_process(tmp_path):
    """Issue 12: a 1x1x1 volume is not "2-D data"; a header without orientation is refused
    (it would otherwise be fitted at nibabel's invented position)."""
    from engine.imaging import load_volume
    from engine.jobs import InputError

    for path, kind, words in _bad_inputs(tmp_path)[-3:]:
        with pytest.raises(InputError, match=words) as err:
            load_volume(path, "labels" if kind == "seg" else "scan")
        assert "2-D" not in str(err.value) and str(path) in str(err.value)


def test_each_bad_input_gives_its_sentence_and_exit_code_2(tmp_path):
    for path, kind, words in _bad_inputs(tmp_path):
        r = run_main("tumor", "check", f"--{kind}", path)
        assert r.returncode == 2, (path.name, r.stdout, r.stderr)
        message = r.stderr.strip().splitlines()[-1]
        assert message.startswith("error: ") and str(path) in message, message
        assert words in message, (words, message)
        assert "Traceback" not in r.stderr


def test_segmentation_outside_scan_is_rejected(tmp_path):
    _, ras, _, _ = _twins(tmp_path)
    far = RAS_AFFINE.copy()
    far[0, 3] += 500.0
    seg = _save(tmp_path / "far_seg.nii.gz", np.ones(SHAPE, np.uint8), far)
    r = run_main("tumor", "check", "--scan", ras, "--seg", seg)
    assert r.returncode == 2
    assert "does not overlap the scan" in r.stderr and str(seg) in r.stderr
    with pytest.raises(InputError, match="does not overlap"):
        check_overlap(load_volume(ras), load_volume(seg, "labels"))
    near = RAS_AFFINE.copy()
    near[0, 3] += 10.0  # partial overlap is fine
    check_overlap(load_volume(ras), from_array(np.ones(SHAPE), near, "labels"))


def test_singleton_fourth_axis_is_accepted(tmp_path):
    data = _ras_data()
    p = _save(tmp_path / "four.nii.gz", data[..., None], RAS_AFFINE)
    vol = load_volume(p)
    assert vol.shape == SHAPE
    np.testing.assert_array_equal(vol.data, data)


def _valid_bytes(gz: bool) -> bytes:
    img = nib.Nifti1Image(_ras_data(), RAS_AFFINE)
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(gz=st.booleans(), cut=st.one_of(st.none(), st.integers(0, 1000)),
       edits=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=4))
def test_corrupted_bytes_never_crash_the_cli(tmp_path, capsys, gz, cut, edits):
    """Any truncation or byte edit of a valid file: exit 0 or exit 2 with one sentence."""
    import main

    raw = bytearray(_valid_bytes(gz))
    for pos, value in edits:
        if pos < len(raw):
            raw[pos] = value
    if cut is not None:
        raw = raw[:cut]
    path = tmp_path / ("c.nii.gz" if gz else "c.nii")
    path.write_bytes(bytes(raw))
    code = main.main(["tumor", "check", "--scan", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        message = err.strip().splitlines()[-1]
        assert message.startswith("error: ") and str(path) in message, message
        assert "Traceback" not in err


def test_in_memory_io_helper_roundtrip():
    """from_array reorients exactly like a loaded file (LPS array -> RAS data)."""
    data = _ras_data()
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = SHAPE[0] - 1, SHAPE[1] - 1
    vol = from_array(data[::-1, ::-1, :], RAS_AFFINE @ flip)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.orientation == "LPS"
