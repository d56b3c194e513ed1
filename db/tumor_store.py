"""On-disk layout of a tumor simulation database (plain arrays and dicts; no engine imports).

    DIR/manifest.json        what was built: preset, seed, grid, atlas hash, thresholds, code
                             version, counts, sha256 of the index and PCA files
    DIR/catalog.sqlite       runs, snapshots and shards (one row per written shard)
    DIR/shards/shard_NNNNN.npy   uint8 (n_snapshots_in_batch, n_brain_voxels): round(255 u)
    DIR/embedding.npz        PCA mean/components of the snapshot embedding
    DIR/index.faiss          serialized FAISS index over the embedded snapshots

Crash safety: a batch's shard is written atomically (db/atomic.py) and its catalog rows
(runs, snapshots, shard with size and sha256) are committed in ONE transaction right after.
A shard file without a shard row is an orphan (killed between the two steps) and is simply
overwritten when the batch is recomputed; a shard row whose file is missing or has the wrong
size/hash is a damaged batch: its rows are dropped and the batch is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np

from db.atomic import write_bytes, write_json, write_npz

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    lambda_mm REAL NOT NULL,
    i REAL NOT NULL, j REAL NOT NULL, k REAL NOT NULL,
    x_mm REAL NOT NULL, y_mm REAL NOT NULL, z_mm REAL NOT NULL,
    seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    batch INTEGER NOT NULL,
    local INTEGER NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    tau REAL NOT NULL,
    mu1_cm REAL NOT NULL,
    mu2 REAL NOT NULL,
    vol_core_cm3 REAL NOT NULL,
    vol_whole_cm3 REAL NOT NULL,
    thr_core REAL NOT NULL,
    thr_whole REAL NOT NULL,
    PRIMARY KEY (batch, local)
);
CREATE TABLE IF NOT EXISTS shards (
    batch INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    n INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""
RUN_COLS = ("run_id", "batch", "lambda_mm", "i", "j", "k", "x_mm", "y_mm", "z_mm", "seed")
SNAP_COLS = ("batch", "local", "run_id", "tau", "mu1_cm", "mu2", "vol_core_cm3",
             "vol_whole_cm3", "thr_core", "thr_whole")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    return buf.getvalue()


class TumorStore:
    """Files of one database folder. ``problems()`` lists damage as (kind, detail) pairs."""

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if create:
            (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(str(self.root / "catalog.sqlite"), timeout=30)
        self.con.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        if create:
            self.con.executescript(SCHEMA)

    # -- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def index_path(self) -> Path:
        return self.root / "index.faiss"

    @property
    def embedding_path(self) -> Path:
        return self.root / "embedding.npz"

    def shard_path(self, batch: int) -> Path:
        return self.root / "shards" / f"shard_{batch:05d}.npy"

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- manifest ------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)

    # -- batches -------------------------------------------------------------------------
    def write_batch(self, batch: int, array: np.ndarray, runs: list[dict],
                    snapshots: list[dict]) -> None:
        """Write one batch: the shard file atomically, then all its rows in one transaction."""
        data = npy_bytes(np.asarray(array, dtype=np.uint8))
        path = self.shard_path(batch)
        write_bytes(path, data)
        sha = hashlib.sha256(data).hexdigest()
        with self.con:
            self._delete_batch(batch)
            self.con.executemany(
                f"INSERT INTO runs VALUES ({','.join('?' * len(RUN_COLS))})",
                [tuple(r[c] for c in RUN_COLS) for r in runs])
            self.con.executemany(
                f"INSERT INTO snapshots VALUES ({','.join('?' * len(SNAP_COLS))})",
                [tuple(s[c] for c in SNAP_COLS) for s in snapshots])
            self.con.execute("INSERT INTO shards VALUES (?, ?, ?, ?, ?)",
                             (batch, path.name, len(array), len(data), sha))

    def _delete_batch(self, batch: int) -> None:
        for table in ("snapshots", "runs", "shards"):
            self.con.execute(f"DELETE FROM {table} WHERE batch = ?", (batch,))

    def drop_batch(self, batch: int) -> None:
        with self.con:
            self._delete_batch(batch)

    def shard_rows(self) -> dict[int, dict]:
        cur = self.con.execute("SELECT batch, file, n, nbytes, sha256 FROM shards")
        return {b: {"file": f, "n": n, "nbytes": nb, "sha256": sha}
                for b, f, n, nb, sha in cur.fetchall()}

    def check_shards(self, full_hash: bool = False) -> list[tuple[int, str]]:
        """Damaged shards as (batch, sentence): missing, wrong size, or (full_hash) wrong hash."""
        bad = []
        for batch, row in sorted(self.shard_rows().items()):
            path = self.shard_path(batch)
            if not path.is_file():
                bad.append((batch, f"shard {path.name} is missing"))
            elif path.stat().st_size != row["nbytes"]:
                bad.append((batch, f"shard {path.name} is truncated or altered "
                                   f"({path.stat().st_size} of {row['nbytes']} bytes)"))
            elif full_hash and sha256_file(path) != row["sha256"]:
                bad.append((batch, f"shard {path.name} is corrupted (checksum mismatch)"))
        return bad

    def load_shard(self, batch: int, mmap: bool = True) -> np.ndarray:
        return np.load(self.shard_path(batch), mmap_mode="r" if mmap else None)

    # -- tables --------------------------------------------------------------------------
    def runs_table(self) -> dict[str, np.ndarray]:
        rows = self.con.execute(f"SELECT {','.join(RUN_COLS)} FROM runs ORDER BY run_id")
        return _columns(rows.fetchall(), RUN_COLS)

    def snapshot_table(self) -> dict[str, np.ndarray]:
        """All snapshots ordered by (batch, local): the row index is the snapshot id."""
        rows = self.con.execute(
            f"SELECT {','.join(SNAP_COLS)} FROM snapshots ORDER BY batch, local")
        return _columns(rows.fetchall(), SNAP_COLS)

    def counts(self) -> tuple[int, int]:
        n_runs = self.con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        n_snap = self.con.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
        return n_runs, n_snap

    # -- embedding + index ---------------------------------------------------------------
    def save_embedding(self, **arrays) -> str:
        write_npz(self.embedding_path, compressed=False, **arrays)
        return sha256_file(self.embedding_path)

    def load_embedding(self) -> dict[str, np.ndarray]:
        with np.load(self.embedding_path) as z:
            return {k: z[k] for k in z.files}

    def save_index(self, data: bytes) -> str:
        write_bytes(self.index_path, data)
        return hashlib.sha256(data).hexdigest()

    def load_index_bytes(self) -> bytes:
        return self.index_path.read_bytes()


def _columns(rows: list[tuple], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not rows:
        return {n: np.zeros(0) for n in names}
    cols = list(zip(*rows))
    return {n: np.asarray(c) for n, c in zip(names, cols)}
