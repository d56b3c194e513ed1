"""Atomic file writing: every file the program writes goes through here.

Write to a temporary file in the destination folder, flush + fsync, then
``os.replace`` onto the final name, so a reader (or a rerun after kill -9) sees
either the old complete file or the new complete file, never a torn one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask_mode() -> int:
    """Mode a plainly created file would get (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _renamed(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` instead of our temporary file ``.NAME.*`` beside it (or of no
    file: a full disk), so messages show the user's path; an error about another file (an
    input a writer reads) is returned as is."""
    def ours(name) -> bool:
        if name is None:
            return True
        p = Path(os.fsdecode(name))
        return p == path or (p.parent == path.parent and p.name.startswith(f".{path.name}."))

    if err.errno is None or not (ours(err.filename) and ours(err.filename2)):
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


@contextlib.contextmanager
def _temporary(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary file beside ``path``; on success it is fsynced and renamed onto ``path``,
    on any error it is removed and ``path`` is untouched. An OSError about the temporary
    file (or about no file: a full disk) is re-raised naming ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        raise _renamed(err, path) from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            new = _renamed(err, path)
            if new is not err:
                raise new from None
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Context manager yielding a file object; the file appears at ``path`` only on success."""
    with _temporary(Path(path)) as tmp, open(tmp, mode) as f:
        yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> None:
    """Strict JSON only: NaN or infinity anywhere in ``obj`` raises ValueError and nothing is
    written (a non-finite result is a bug to report, never a file other tools cannot read)."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, allow_nan=False) + "\n")


def write_npz(path: str | os.PathLike, compressed: bool = True, **arrays) -> None:
    import numpy as np

    with atomic_write(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def write_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.save(f, array)


def write_with(path: str | os.PathLike, writer) -> None:
    """Atomically write a file produced by ``writer(tmp_path)`` for libraries that need a path
    (nibabel, OpenCV, FAISS). The temporary path keeps the final name's suffixes."""
    path = Path(path)
    with _temporary(path, suffix=".tmp" + "".join(path.suffixes)) as tmp:
        writer(tmp)
