"""The one place that imports faiss (thread count set explicitly, see engine/_torch.py)."""
import faiss

from engine.threads import THREADS

faiss.omp_set_num_threads(THREADS)

__all__ = ["faiss"]
