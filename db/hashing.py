"""The one file-hashing helper of the program (sha256; the provenance store and the shard
store both use it)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 22
QUICK_BLOCK = 1 << 16      # bytes hashed at each end of a file by quick_sha256


def file_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of a file's bytes (None for a missing path; a folder hashes its listing:
    relative names and sizes)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for child in sorted(p.rglob("*")):
            if child.is_file():
                h.update(str(child.relative_to(p)).encode())
                h.update(str(child.stat().st_size).encode())
        return h.hexdigest()
    if not p.is_file():
        return None
    with open(p, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def quick_sha256(path: str | os.PathLike | None = None, data: bytes | None = None) -> str:
    """sha256 of (size, first and last QUICK_BLOCK bytes): a cheap check that catches
    truncation, replacement and damage at either end, of a file or of its bytes in memory."""
    if data is None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(QUICK_BLOCK)
            f.seek(max(0, size - QUICK_BLOCK))
            tail = f.read(QUICK_BLOCK)
    else:
        size, head, tail = len(data), data[:QUICK_BLOCK], data[-QUICK_BLOCK:]
    return hashlib.sha256(str(size).encode() + b"|" + head + b"|" + tail).hexdigest()
