"""The one place that imports faiss (thread count set explicitly, see engine/_torch.py).

``faiss.serialize_index`` / ``deserialize_index`` are replaced by stream-based versions that
write the same bytes: the originals go through faiss's SWIG ``std::vector<uint8_t>`` proxy,
and once SimpleITK is imported (registration, DICOM) SWIG hands back SimpleITK's
``VectorUInt8`` class instead, so opening or building a database failed with an
AssertionError in faiss/array_conversions.py.
"""
import io

import faiss
import numpy as np

from engine.threads import THREADS

faiss.omp_set_num_threads(THREADS)


def _serialize_index(index, io_flags: int = 0) -> np.ndarray:
    """index -> (n,) uint8, byte-identical to faiss.serialize_index."""
    buf = io.BytesIO()
    faiss.write_index(index, faiss.PyCallbackIOWriter(buf.write), io_flags)
    return np.frombuffer(buf.getvalue(), np.uint8)


def _deserialize_index(data, io_flags: int = 0):
    """(n,) uint8 (or bytes) -> index."""
    stream = io.BytesIO(np.ascontiguousarray(np.frombuffer(data, np.uint8)
                                             if isinstance(data, (bytes, bytearray))
                                             else data, np.uint8).tobytes())
    return faiss.read_index(faiss.PyCallbackIOReader(stream.read), io_flags)


faiss.serialize_index = _serialize_index
faiss.deserialize_index = _deserialize_index

__all__ = ["faiss"]
