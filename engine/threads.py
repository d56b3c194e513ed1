"""Thread count shared by torch, faiss and OpenCV (env WORKBENCH_THREADS, default: all cores)."""
import os

THREADS = int(os.environ.get("WORKBENCH_THREADS", "0")) or (os.cpu_count() or 1)
