"""Thread count shared by torch, faiss and OpenCV (env WORKBENCH_THREADS, default: all cores)."""
import os


def _threads() -> int:
    value = os.environ.get("WORKBENCH_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else (os.cpu_count() or 1)


THREADS = _threads()
