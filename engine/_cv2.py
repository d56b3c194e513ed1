"""The one place that imports OpenCV (headless build; thread count set explicitly)."""
import os

os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # no OpenCV / FFmpeg log lines: a corrupt
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # video gets our one sentence only
import cv2  # noqa: E402

from engine.threads import THREADS  # noqa: E402

cv2.setNumThreads(THREADS)

__all__ = ["cv2"]
