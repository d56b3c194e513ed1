"""The one place that imports OpenCV (headless build; thread count set explicitly)."""
import cv2

from engine.threads import THREADS

cv2.setNumThreads(THREADS)

__all__ = ["cv2"]
