"""Registration backends: antspyx (ANTs affine + SyN) and SimpleITK (affine + B-spline).

Both return the pieces of :class:`engine.imaging.registration.Registration`: ``affine`` ->
A (4, 4) RAS (MNI point -> native point); ``deformable`` -> (w, w_inv, field_affine) with
w (3, X, Y, Z) float32 RAS mm on the coarse template grid, forward map y = A (x + w(x)).
Images are handed to the libraries on coarse isotropic grids (``level_mm``), physical space
in LPS as ITK wants it.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.imaging.transform import (F, ball, grid_like, grid_points, sample,
                                      template_brain_mask, template_volume)

TUMOR_MARGIN_MM = 6.0


@dataclass
class Job:
    scan: object                     # Volume
    fixed: tuple                     # (data, affine) template at level (skull-stripped or not)
    moving: tuple                    # (data, affine) scan at level
    fixed_mask: np.ndarray | None    # on the fixed grid (bool)
    moving_mask: np.ndarray | None   # on the moving grid (bool): 0 on the dilated tumor
    center: np.ndarray               # (3,) RAS mm centre of the scan's foreground
    level_mm: float
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="reg_")))
    cache: dict = field(default_factory=dict)


def _smooth_to(data, vox_mm, level_mm):
    from scipy import ndimage

    sigma = [max(0.0, 0.5 * (level_mm / v - 1.0)) for v in vox_mm]
    return ndimage.gaussian_filter(data.astype(np.float32), sigma) if max(sigma) > 0.1 else data


def _on_grid(vol_data, vol_affine, shape, affine, order=1):
    return sample(vol_data, vol_affine, grid_points(shape, affine), order=order).reshape(shape)


def prepare(scan, seg, stripped: bool, options) -> Job:
    """Coarse fixed/moving images and masks for one registration."""
    from scipy import ndimage

    from engine.imaging.transform import foreground

    lv = float(options.level_mm)
    t = template_volume()
    fshape, faff = grid_like(t, lv)
    fixed = _on_grid(_smooth_to(t.data, (1, 1, 1), lv), t.affine, fshape, faff)
    bmask, baff = template_brain_mask(lv)
    assert bmask.shape == tuple(fshape)
    fixed_mask = None
    if stripped:
        fixed = fixed * bmask
        fixed_mask = ndimage.binary_dilation(bmask, ball(2))
    mshape, maff = grid_like(scan, lv)
    moving = _on_grid(_smooth_to(scan.data, scan.voxel_size_mm, lv), scan.affine, mshape, maff)
    moving_mask = None
    if seg is not None and options.mask_tumor:
        tum = _on_grid((seg.data > 0).astype(np.float32), seg.affine, mshape, maff) > 0.25
        r = max(1, int(round(TUMOR_MARGIN_MM / lv)))
        tum = ndimage.binary_dilation(tum, ball(r))
        moving_mask = ~tum
    fg = np.argwhere(foreground(scan))
    center = scan.vox_to_mm(fg.mean(0)) if len(fg) else scan.vox_to_mm(np.array(scan.shape) / 2)
    return Job(scan, (fixed.astype(np.float32), faff), (moving.astype(np.float32), maff),
               fixed_mask, moving_mask, center, lv)


# ----------------------------------------------------------------------------- ANTs
def _to_ants(data, affine):
    import ants

    lps = F @ affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(0))
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32),
                           origin=[float(v) for v in lps[:3, 3]],
                           spacing=[float(v) for v in sp],
                           direction=lps[:3, :3] / sp)


def _ants_inputs(job, mirror=None, coarse=False):
    key = ("ants", None if mirror is None else mirror.tobytes(), coarse)
    if key in job.cache:
        return job.cache[key]
    import ants

    fd, fa = job.fixed
    md, ma = job.moving
    if mirror is not None:
        ma = mirror @ ma
    f, m = _to_ants(fd, fa), _to_ants(md, ma)
    fm = _to_ants(job.fixed_mask.astype(np.float32), fa) if job.fixed_mask is not None else None
    mm = (_to_ants(job.moving_mask.astype(np.float32), ma)
          if job.moving_mask is not None else None)
    if coarse and job.level_mm < 4:
        s = (4.0, 4.0, 4.0)
        f, m = ants.resample_image(f, s, False, 0), ants.resample_image(m, s, False, 0)
        fm = ants.resample_image(fm, s, False, 1) if fm is not None else None
        mm = ants.resample_image(mm, s, False, 1) if mm is not None else None
    job.cache[key] = (f, m, fm, mm)
    return job.cache[key]


def _read_ants_affine(path) -> np.ndarray:
    import ants

    tx = ants.read_transform(str(path))
    p = np.asarray(tx.parameters, dtype=float)
    c = np.asarray(tx.fixed_parameters, dtype=float)
    M = p[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = M
    lps[:3, 3] = p[9:12] + c - M @ c
    return F @ lps @ F


def write_itk_affine(A: np.ndarray, path) -> None:
    """A (4, 4) RAS (fixed point -> moving point) as an ITK AffineTransform file (LPS)."""
    import SimpleITK as sitk

    lps = F @ A @ F
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    tx.SetTranslation([float(v) for v in lps[:3, 3]])
    sitk.WriteTransform(tx, str(path))


def _aff_its(options, coarse):
    if options.affine_iterations:
        return tuple(options.affine_iterations)
    return (200, 100, 0) if coarse else (1000, 500, 250, 0)


def affine(job, options, mirror=None, coarse=False) -> np.ndarray:
    """Rigid-initialised affine (centre of mass, then affine) -> A (4, 4) RAS."""
    if options.library == "sitk":
        return _sitk_affine(job, options, mirror, coarse)
    import ants

    f, m, fm, mm = _ants_inputs(job, mirror, coarse)
    its = _aff_its(options, coarse)
    out = ants.registration(f, m, type_of_transform="Affine", mask=fm, moving_mask=mm,
                            mask_all_stages=True, aff_iterations=its,
                            aff_shrink_factors=(4, 2, 1, 1)[:len(its)] if not coarse else
                            (2, 1, 1)[:len(its)],
                            aff_smoothing_sigmas=(2, 1, 0, 0)[:len(its)] if not coarse else
                            (1, 0, 0)[:len(its)],
                            outprefix=str(job.tmp / ("m_" if mirror is not None else "a_")))
    return _read_ants_affine(out["fwdtransforms"][0])


def _syn_its(options):
    if options.iterations:
        return tuple(options.iterations)
    return (60, 40, 20) if options.level_mm <= 2.0 else (40, 20)


def _field_from_itk(path) -> tuple[np.ndarray, np.ndarray]:
    """ITK displacement field file -> (w (3, X, Y, Z) float32 RAS mm, affine (4, 4) RAS)."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)                   # (z, y, x, 3), LPS components
    w = np.transpose(arr, (3, 2, 1, 0)).astype(np.float32)
    w[0] *= -1
    w[1] *= -1
    sp = np.array(img.GetSpacing())
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * sp
    lps[:3, 3] = img.GetOrigin()
    return w, F @ lps


def write_itk_field(w: np.ndarray, affine: np.ndarray, path) -> None:
    """(3, X, Y, Z) RAS displacement on ``affine``'s grid -> ITK displacement field (LPS)."""
    import SimpleITK as sitk

    v = w.astype(np.float32).copy()
    v[0] *= -1
    v[1] *= -1
    img = sitk.GetImageFromArray(np.transpose(v, (3, 2, 1, 0)), isVector=True)
    lps = F @ affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(0))
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(s) for s in lps[:3, 3]])
    img.SetDirection([float(s) for s in (lps[:3, :3] / sp).ravel()])
    sitk.WriteImage(img, str(path))


def deformable(job, A, options, cancel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deformable stage after the affine ``A`` -> (w, w_inv, field_affine)."""
    if options.library == "sitk":
        return _sitk_deformable(job, A, options)
    import ants

    f, m, fm, mm = _ants_inputs(job)
    init = job.tmp / "init_affine.mat"
    write_itk_affine(A, init)
    out = ants.registration(f, m, type_of_transform="SyNOnly", initial_transform=[str(init)],
                            mask=fm, moving_mask=mm, mask_all_stages=True,
                            reg_iterations=_syn_its(options), outprefix=str(job.tmp / "s_"))
    cancel.check()
    warp = next(p for p in out["fwdtransforms"] if p.endswith("Warp.nii.gz"))
    inv = next(p for p in out["invtransforms"] if p.endswith("InverseWarp.nii.gz"))
    w, faff = _field_from_itk(warp)
    w_inv, faff2 = _field_from_itk(inv)
    assert np.allclose(faff, faff2, atol=1e-4)
    return w, w_inv, faff


# ----------------------------------------------------------------------------- SimpleITK
def _to_sitk(data, affine):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.transpose(np.asarray(data, np.float32), (2, 1, 0)))
    lps = F @ affine
    sp = np.sqrt((lps[:3, :3] ** 2).sum(0))
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(s) for s in lps[:3, 3]])
    img.SetDirection([float(s) for s in (lps[:3, :3] / sp).ravel()])
    return img


def _sitk_inputs(job, mirror=None, coarse=False):
    key = ("sitk", None if mirror is None else mirror.tobytes(), coarse)
    if key not in job.cache:
        fd, fa = job.fixed
        md, ma = job.moving
        if mirror is not None:
            ma = mirror @ ma
        to = _to_sitk
        job.cache[key] = (to(fd, fa), to(md, ma),
                          to(job.fixed_mask.astype(np.uint8), fa) if job.fixed_mask is not None
                          else None,
                          to(job.moving_mask.astype(np.uint8), ma) if job.moving_mask is not None
                          else None)
    return job.cache[key]


def _method(fm, mm, shrink, sigmas, its, lr=1.0):
    import SimpleITK as sitk

    R = sitk.ImageRegistrationMethod()
    R.SetMetricAsMattesMutualInformation(32)
    R.SetMetricSamplingStrategy(R.RANDOM)
    R.SetMetricSamplingPercentage(0.25, seed=1)
    R.SetInterpolator(sitk.sitkLinear)
    if fm is not None:
        R.SetMetricFixedMask(sitk.Cast(fm, sitk.sitkUInt8))
    if mm is not None:
        R.SetMetricMovingMask(sitk.Cast(mm, sitk.sitkUInt8))
    R.SetShrinkFactorsPerLevel(list(shrink))
    R.SetSmoothingSigmasPerLevel(list(sigmas))
    R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    R.SetOptimizerAsRegularStepGradientDescent(lr, 1e-4, its, relaxationFactor=0.6)
    R.SetOptimizerScalesFromPhysicalShift()
    return R


def _sitk_affine(job, options, mirror, coarse) -> np.ndarray:
    import SimpleITK as sitk

    f, m, fm, mm = _sitk_inputs(job, mirror, coarse)
    its = max(_aff_its(options, coarse)[:1])
    its = min(its, 150 if coarse else 300)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    shrink, sig = ((2, 1), (1, 0)) if coarse else ((4, 2, 1), (2, 1, 0))
    R = _method(fm, mm, shrink, sig, its)
    R.SetInitialTransform(init, inPlace=True)
    R.Execute(f, m)
    aff = sitk.AffineTransform(3)
    aff.SetCenter(init.GetCenter())
    aff.SetMatrix(init.GetMatrix())
    aff.SetTranslation(init.GetTranslation())
    R = _method(fm, mm, shrink, sig, its)
    R.SetInitialTransform(aff, inPlace=True)
    R.Execute(f, m)
    M = np.array(aff.GetMatrix()).reshape(3, 3)
    c = np.array(aff.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = M
    lps[:3, 3] = np.array(aff.GetTranslation()) + c - M @ c
    return F @ lps @ F


def _sitk_deformable(job, A, options):
    import SimpleITK as sitk

    f, m, fm, mm = _sitk_inputs(job)
    lin = sitk.AffineTransform(3)
    lps = F @ A @ F
    lin.SetMatrix([float(v) for v in lps[:3, :3].ravel()])
    lin.SetTranslation([float(v) for v in lps[:3, 3]])
    mesh = [max(2, int(round(s * job.level_mm / 30.0))) for s in f.GetSize()]  # ~30 mm knots
    bs = sitk.BSplineTransformInitializer(f, mesh, order=3)
    its = options.iterations[0] if options.iterations else (40 if job.level_mm <= 2 else 20)
    R = sitk.ImageRegistrationMethod()
    R.SetMetricAsMattesMutualInformation(32)
    R.SetMetricSamplingStrategy(R.RANDOM)
    R.SetMetricSamplingPercentage(0.1, seed=1)
    R.SetInterpolator(sitk.sitkLinear)
    if fm is not None:
        R.SetMetricFixedMask(fm)
    if mm is not None:
        R.SetMetricMovingMask(mm)
    R.SetShrinkFactorsPerLevel([2, 1])
    R.SetSmoothingSigmasPerLevel([1, 0])
    R.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=int(its),
                           maximumNumberOfCorrections=5)
    R.SetMovingInitialTransform(lin)
    R.SetInitialTransform(bs, inPlace=True)
    R.Execute(f, m)
    disp = sitk.TransformToDisplacementField(bs, sitk.sitkVectorFloat64, f.GetSize(),
                                             f.GetOrigin(), f.GetSpacing(), f.GetDirection())
    inv = sitk.InvertDisplacementField(disp, maximumNumberOfIterations=20,
                                       meanErrorToleranceThreshold=1e-3,
                                       maxErrorToleranceThreshold=0.1,
                                       enforceBoundaryCondition=True)
    path_w, path_i = job.tmp / "bs_warp.nii.gz", job.tmp / "bs_inv.nii.gz"
    sitk.WriteImage(disp, str(path_w))
    sitk.WriteImage(inv, str(path_i))
    w, faff = _field_from_itk(path_w)
    w_inv, _ = _field_from_itk(path_i)
    return w, w_inv, faff
