"""The one place that imports torch. Everything else: ``from engine._torch import torch``.

Thread counts are set explicitly: torch, faiss and OpenCV each bring an OpenMP runtime
and two libgomp copies load side by side; fixed counts keep them from oversubscribing.
"""
import torch

from engine.threads import THREADS

torch.set_num_threads(THREADS)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set once in this process
    pass


def device(name: str | None = None) -> "torch.device":
    """``name`` if given, else CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


__all__ = ["torch", "device", "THREADS"]
