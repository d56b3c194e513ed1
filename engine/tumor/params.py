"""The tumor model's parameterization: one home for the visible-tumor thresholds, the parameter
ranges and the dimensionless <-> dimensional identities (numpy only; no torch, no storage).

tau = rho t, lambda = sqrt(Dw / rho); mu1 = sqrt(Dw T) = lambda sqrt(tau) [cm], mu2 = sqrt(rho T)
= sqrt(tau); for a stated T: Dw = mu1^2 / T [cm^2/day], rho = mu2^2 / T [1/day].
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = {"core": 0.6, "whole": 0.2}     # u >= core: T1Gd core; u >= whole: FLAIR whole tumor
# LMI's training ranges: Dw in [0.0002, 0.015] cm^2/day, rho in [0.002, 0.2] /day
MAX_T_DAYS = 36500.0   # a stated time since onset beyond 100 years is a typo, not a tumor
LAMBDA_RANGE_MM = (10 * np.sqrt(0.0002 / 0.2), 10 * np.sqrt(0.015 / 0.002))   # 0.32 .. 27.4


def quant_threshold(t: float) -> int:
    """Smallest uint8 q with q / 255 >= t (float32), so masks from stored q match u >= t."""
    qs = np.arange(256, dtype=np.float32) / np.float32(255)
    return int(np.argmax(qs >= np.float32(t)))


def dimensional(lambda_mm, tau, T_days) -> dict:
    """Dimensional parameters for a stated T: mu1 = lambda sqrt(tau) [cm], mu2 = sqrt(tau),
    Dw = mu1^2 / T [cm^2/day], rho = mu2^2 / T [1/day]. Works on scalars or arrays."""
    lam_cm = np.asarray(lambda_mm, dtype=np.float64) / 10.0
    tau = np.asarray(tau, dtype=np.float64)
    mu1, mu2 = lam_cm * np.sqrt(tau), np.sqrt(tau)
    return {"mu1_cm": mu1, "mu2": mu2, "Dw_cm2_per_day": mu1 ** 2 / T_days,
            "rho_per_day": mu2 ** 2 / T_days, "T_days": float(T_days)}
