"""Workbench viewers: linked orthogonal MRI views, time-series plots, frame views."""
