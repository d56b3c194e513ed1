"""NIfTI loading, validation, orientation, resampling, label maps."""
