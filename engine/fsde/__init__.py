"""Fractional SDEs (Daems et al. 2024): MA-fBM, latent fractional SDE, video model."""
