"""DICOM import (engine/imaging/dicom.py, `tumor import-dicom`): a small series written with
SimpleITK in tmp, several series, no series."""
import numpy as np
import pytest

from conftest import run_main

SPACING = (0.9, 0.8, 2.5)


def write_series(folder, data, uid, description="T1 test", origin=(-40.0, 30.0, -10.0)):
    """Write (X, Y, Z) ``data`` as one DICOM file per slice (LPS patient coordinates, an
    oblique-free but axis-flipped direction) -> the SimpleITK image written."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)).astype(np.int16))
    img.SetSpacing(SPACING)
    img.SetOrigin(origin)
    direction = (1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)           # rows run posterior -> anterior
    img.SetDirection(direction)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        for tag, value in (("0008|0060", "MR"), ("0020|000e", uid), ("0020|000d", uid + ".1"),
                           ("0008|103e", description),
                           ("0020|0037", "1\\0\\0\\0\\-1\\0"),   # row, column cosines
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in
                                                   img.TransformIndexToPhysicalPoint((0, 0, k)))),
                           ("0020|0013", str(k + 1)), ("0018|0050", str(SPACING[2])),
                           ("0008|0008", "ORIGINAL\\PRIMARY")):
            s.SetMetaData(tag, value)
        w.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        w.Execute(s)
    return img


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (12, 14, 6)).astype(np.int16)
    data[2:5, 3:6, 1] = 3000                                   # a landmark
    return data


def test_import_keeps_orientation_spacing_and_values(tmp_path, volume):
    import nibabel as nib

    from engine.imaging import load_volume
    from engine.imaging.dicom import import_dicom, read_series

    img = write_series(tmp_path / "dcm", volume, "1.2.3.4.5")
    vol = read_series(tmp_path / "dcm")
    assert np.allclose(sorted(vol.voxel_size_mm), sorted(SPACING), atol=1e-3)
    out = import_dicom(tmp_path / "dcm", tmp_path / "scan.nii.gz")
    loaded = load_volume(out)
    nii = nib.load(out)
    assert int(nii.header["sform_code"]) == 1
    # every voxel lands at the world position DICOM gives it (LPS -> RAS: x, y negated)
    for ijk in ((0, 0, 0), (3, 4, 1), (11, 13, 5)):
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        ras = lps * [-1, -1, 1]
        v = np.rint(loaded.mm_to_vox(ras)).astype(int)
        assert loaded.data[tuple(v)] == volume[ijk]


def test_cli_lists_several_series_and_takes_series_uid(tmp_path, volume):
    write_series(tmp_path / "dcm" / "a", volume, "1.2.3.100", "T1 axial")
    write_series(tmp_path / "dcm" / "b", volume[::-1].copy(), "1.2.3.200", "FLAIR")
    out = tmp_path / "scan.nii.gz"
    r = run_main("tumor", "import-dicom", "--dicom", tmp_path / "dcm", "--out", out)
    assert r.returncode == 2 and not out.exists()
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "1.2.3.100" in line[0] and "1.2.3.200" in line[0]
    assert "--series" in line[0]
    r = run_main("tumor", "import-dicom", "--dicom", tmp_path / "dcm", "--out", out,
                 "--series", "1.2.3.200")
    assert r.returncode == 0, r.stderr
    assert out.exists() and "12 x 14 x 6" in r.stdout


def test_folder_without_images_is_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "scan.nii.gz"
    r = run_main("tumor", "import-dicom", "--dicom", tmp_path / "empty", "--out", out)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(lines) == 1 and "no DICOM image series" in lines[0]
    assert str(tmp_path / "empty") in lines[0] and not out.exists()
