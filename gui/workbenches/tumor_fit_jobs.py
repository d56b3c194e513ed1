"""The Personalize panel's jobs (no widgets): one fit (register + fit for a native scan, the fit
service alone for MNI152 inputs), regrowth for another T, export; and ``FitView``, a fit as the
GUI shows it (on the displayed scan grid).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gui.viewers import FIT_CORE, FIT_U, FIT_WHOLE


@dataclass
class FitView:
    """A fit as the GUI shows it: ``estimate`` (MNI, database grid), ``registration`` (None for
    MNI-space inputs), ``u_scan`` (X, Y, Z) float32 on the displayed scan grid,
    ``origin_scan_mm`` (3,) in the scan's world coordinates, ``native`` the engine's NativeFit
    (None for MNI-space inputs), ``space`` "native" | "mni"."""

    estimate: object
    registration: object
    u_scan: np.ndarray
    origin_scan_mm: np.ndarray
    native: object = None
    space: str = "mni"
    atlas01: np.ndarray | None = None   # registered scan 0..1 on the template grid (atlas check)

    def u_on_scan(self, u_db, scan) -> np.ndarray:
        """u on the database grid (e.g. a regrowth) -> the scan grid, through the transform."""
        affine = self.estimate.anatomy.affine
        if self.registration is not None:
            return np.asarray(self.registration.to_native(u_db, affine, scan.shape, scan.affine,
                                                          order=1), np.float32)
        from engine.tumor.export import on_grid

        return on_grid(u_db, affine, scan.shape, scan.affine)


def fit_layers(u_scan, thresholds) -> dict:
    """u on the scan grid -> {FIT_U: u, FIT_CORE / FIT_WHOLE: uint8 boundary voxels}."""
    from scipy import ndimage

    out = {FIT_U: np.asarray(u_scan, np.float32)}
    for name, key in ((FIT_CORE, "core"), (FIT_WHOLE, "whole")):
        mask = out[FIT_U] >= np.float32(thresholds[key])
        out[name] = (mask & ~ndimage.binary_erosion(mask)).astype(np.uint8)
    return out


def personalize_job(db, scan, seg, space, T_days, top_k, refine, registration, *, progress,
                    cancel):
    """Job: one fit against the OPEN database ``db``. ``space`` "mni": ``seg`` is in MNI152
    space (fit service only); otherwise register ``scan`` (+ ``seg``) and fit
    (personalize_native). Returns (FitView, overlay layers on the scan grid)."""
    if space == "mni":
        from engine.tumor import service

        res = service.fit(db, service.FitRequest(volume=seg, T_days=T_days, top_k=top_k,
                                                 refine=refine),
                          render=False, progress=progress.sub(0, 0.9), cancel=cancel)
        est = res.estimate
        view = FitView(est, None, None, np.asarray(est.origin_mm, float))
        view.u_scan = view.u_on_scan(est.u, scan)
    else:
        from engine.imaging.patient import Patient
        from engine.imaging.registration import RegOptions
        from engine.tumor.native import personalize_native

        nf = personalize_native(Patient(scan=scan, seg=seg), db, days=T_days, top_k=top_k,
                                refine=refine, options=RegOptions(**registration),
                                progress=progress.sub(0, 0.85), cancel=cancel)
        cancel.check()
        progress.update(0.86, "fitted tumor on the scan grid")
        reg = nf.registration if nf.space == "native" else None   # "mni": no mapping needed
        view = FitView(nf.estimate, reg, np.asarray(nf.u_on_scan(), np.float32),
                       np.asarray(nf.origin_native_mm, float), nf, nf.space)
        if nf.registration is not None and nf.registration.scan_mni is not None:
            from engine.imaging.registration import template_volume
            from gui.workbenches.tumor_atlas import prepare

            progress.update(0.92, "atlas check")
            view.atlas01 = prepare(nf.registration.scan_mni, template_volume())
    cancel.check()
    progress.update(0.95, "outlines")
    return view, fit_layers(view.u_scan, view.estimate.thresholds)


def regrow_job(view: FitView, scan, T_days, *, progress, cancel):
    """Job: the fitted tumor at another T (same Dw, rho) -> (T_days, layers on the scan grid)."""
    u = view.estimate.regrow(float(T_days), progress=progress.sub(0, 0.85), cancel=cancel)
    cancel.check()
    progress.update(0.9, "mapping onto the scan")
    return float(T_days), fit_layers(view.u_on_scan(u, scan), view.estimate.thresholds)


def export_job(view: FitView, out_dir, *, progress, cancel):
    """Job: write the service's output files (native + MNI for a native fit) into out_dir."""
    progress.update(0.1, "rendering")
    if view.native is not None:          # rendered once by the fit: native + MNI files
        from engine.tumor.native import write_files

        paths = write_files(view.native.files, out_dir)
    else:
        from engine.tumor import service
        from engine.tumor.export import check_outdir, render

        check_outdir(out_dir)
        files = render(view.estimate)
        cancel.check()
        paths = service.write(service.FitResult(view.estimate, files), out_dir)
    progress.done("exported")
    return paths
