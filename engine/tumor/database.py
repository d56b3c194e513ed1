"""A built tumor simulation database, opened read-only: snapshot columns, stored
concentrations and masks, embedding and FAISS search. Building: engine/tumor/build.py;
presets and code version: engine/tumor/presets.py; storage: db/shards.py via
engine/tumor/catalog.py.

Integrity: opening checks the manifest, the catalog (SQLite quick_check), each shard's size and
the hash of its first and last 64 KiB, and the sha256 of the index and embedding; every shard's
full sha256 is verified the first time it is read, so a shard damaged in place is never used
(InputError naming it). `main.py tumor check-db --full` hashes every byte up front.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from db.hashing import file_sha256
from engine.jobs import InputError
from engine.tumor.anatomy import load_anatomy
from engine.tumor.build import build_database, read_manifest_or_fail  # noqa: F401
from engine.tumor.catalog import CatalogError, open_store
from engine.tumor.embedding import Embedder
from engine.tumor.params import THRESHOLDS, quant_threshold  # noqa: F401  (re-exported)
from engine.tumor.presets import CODE_VERSION, PRESETS, lambda_range, tau_max  # noqa: F401


class TumorDatabase:
    """A built database, opened read-only. Snapshot id = row of ``snapshots`` (see api doc)."""

    def __init__(self, root: Path, manifest: dict, anatomy, store, index, emb):
        self.root = root
        self.manifest = manifest
        self.anatomy = anatomy
        self._store = store
        self._index = index
        self._emb = emb
        table = store.table("snapshots")
        runs = store.table("runs")
        pos = np.searchsorted(runs["run_id"], table["run_id"])
        ov = np.stack([runs["i"], runs["j"], runs["k"]], 1)[pos]
        om = np.stack([runs["x_mm"], runs["y_mm"], runs["z_mm"]], 1)[pos]
        self.snapshots = {
            "run_id": table["run_id"].astype(np.int64),
            "lambda_mm": runs["lambda_mm"][pos].astype(np.float64),
            "tau": table["tau"].astype(np.float64),
            "origin_vox": ov.astype(np.float64), "origin_mm": om.astype(np.float64),
            "mu1_cm": table["mu1_cm"].astype(np.float64), "mu2": table["mu2"].astype(np.float64),
            "vol_core_cm3": table["vol_core_cm3"].astype(np.float64),
            "vol_whole_cm3": table["vol_whole_cm3"].astype(np.float64),
        }
        self._batch = table["batch"].astype(np.int64)
        self._local = table["local"].astype(np.int64)
        self._shards: dict[int, np.ndarray] = {}
        self._shard_rows = store.shard_rows()
        self._brain_idx = np.flatnonzero(anatomy.brain.ravel())

    @classmethod
    def open(cls, db_dir) -> "TumorDatabase":
        """Open and check a database (see the module docstring); InputError (one sentence
        naming the file) if it is missing, of another code version, incomplete or damaged."""
        from engine._faiss import faiss
        from engine.tumor import index as idx

        root = Path(db_dir)
        hint = f"rerun `main.py tumor build-db --db {root}` to repair it"
        if not (root / "manifest.json").is_file() or not (root / "catalog.sqlite").is_file():
            raise InputError(f"No tumor database in {root} (build one with "
                             f"`main.py tumor build-db --db {root} --preset demo`).")
        m = read_manifest_or_fail(root / "manifest.json")
        if m.get("code_version") != CODE_VERSION:
            raise InputError(f"The database {root} was built by code version "
                             f"{m.get('code_version')}, this program reads {CODE_VERSION}; "
                             "build it again in a new folder.")
        if not m.get("complete"):
            raise InputError(f"The database {root} is incomplete; {hint}.")
        anatomy = load_anatomy(m["spacing_mm"])
        if (m.get("atlas_hash") != anatomy.atlas_hash
                or list(m.get("shape", [])) != list(anatomy.shape)):
            raise InputError(f"The database {root} was built on a different atlas grid "
                             "than the bundled one; build it again in a new folder.")
        try:
            store = open_store(root)
        except CatalogError as err:
            raise InputError(f"In the database {root}, {err}; {hint}.") from None
        try:
            n_runs, n_snap = store.count("runs"), store.count("snapshots")
            if (n_runs, n_snap) != (m.get("n_runs"), m.get("n_snapshots")):
                raise InputError(f"The catalog of {root} holds {n_snap} snapshots but its "
                                 f"manifest says {m.get('n_snapshots')}; {hint}.")
            bad = store.check_shards(mode="quick")
            if bad:
                raise InputError(f"In the database {root}, {bad[0][1]}; {hint}.")
            for path, key in ((store.index_path, "index_sha256"),
                              (store.embedding_path, "embedding_sha256")):
                if not path.is_file() or file_sha256(path) != m.get(key):
                    raise InputError(f"The file {path} is missing or corrupted; {hint}.")
            index = faiss.deserialize_index(np.frombuffer(store.load_index_bytes(), np.uint8))
            if index.ntotal != n_snap:
                raise InputError(f"The index {store.index_path} holds {index.ntotal} entries "
                                 f"for {n_snap} snapshots; {hint}.")
            idx.configure(index, m)
            emb = Embedder(anatomy, store.load_embedding())
            db = cls(root, m, anatomy, store, index, emb)
        except BaseException:
            store.close()
            raise
        return db

    def close(self) -> None:
        self._store.close()

    def __len__(self) -> int:
        return len(self._batch)

    @property
    def brain_index(self) -> np.ndarray:
        """(n_brain,) int64: flat indices (C order) into the (X, Y, Z) grid of the stored
        values' columns (the voxels of anatomy.brain)."""
        return self._brain_idx

    def quantized(self, ids, columns=None) -> np.ndarray:
        """Stored values (n, n_brain) uint8 of snapshot ids: u = q / 255 over ``brain_index``
        (a threshold t becomes q >= quant_threshold(t)). ``columns``: optional (m,) positions
        into ``brain_index`` -> (n, m), read without copying whole rows. Gathered per shard."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        cols = None if columns is None else np.asarray(columns, dtype=np.int64)
        width = len(self._brain_idx) if cols is None else len(cols)
        out = np.empty((len(ids), width), dtype=np.uint8)
        batch = self._batch[ids]
        for b in np.unique(batch):
            b = int(b)
            if b not in self._shards:
                self._shards[b] = self._verified_shard(b)
            sel = np.flatnonzero(batch == b)
            rows = self._local[ids[sel]]
            out[sel] = (self._shards[b][rows] if cols is None
                        else self._shards[b][rows[:, None], cols[None, :]])
        return out

    def _verified_shard(self, batch: int) -> np.ndarray:
        """Shard ``batch`` memory-mapped, after checking the sha256 of every byte."""
        why = self._store.check_shard(batch, self._shard_rows[batch], mode="full")
        if why:
            raise InputError(f"In the database {self.root}, {why}; rerun `main.py tumor "
                             f"build-db --db {self.root}` to repair it.")
        return self._store.load_shard(batch)

    def concentration(self, ids) -> np.ndarray:
        """(n, X, Y, Z) float32 in [0, 1] (quantized to 1/255)."""
        q = self.quantized(ids)
        out = np.zeros((len(q), int(np.prod(self.anatomy.shape))), dtype=np.float32)
        out[:, self._brain_idx] = q.astype(np.float32) / np.float32(255)
        return out.reshape((len(q),) + tuple(self.anatomy.shape))

    def masks(self, ids, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
        """Core and whole-tumor masks (n, X, Y, Z) bool at ``thresholds``: a dict with keys
        core / whole, or a (core, whole) pair (default THRESHOLDS)."""
        if thresholds is not None and not isinstance(thresholds, dict):
            thresholds = {"core": float(thresholds[0]), "whole": float(thresholds[1])}
        t = dict(THRESHOLDS, **(thresholds or {}))
        u = self.concentration(ids)
        return u >= np.float32(t["core"]), u >= np.float32(t["whole"])

    def embed(self, core, whole) -> np.ndarray:
        """core, whole (n, X, Y, Z) bool -> (n, d) float32 embedding."""
        core = np.asarray(core, dtype=bool)
        whole = np.asarray(whole, dtype=bool)
        if core.ndim == 3:
            core, whole = core[None], whole[None]
        return self._emb.project(self._emb.features(core, whole))

    def search(self, embedding, k: int, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Nearest snapshots by inner product of the embeddings (exact with the flat index;
        IVF above engine.tumor.index.FLAT_MAX snapshots), among all snapshots or only the
        snapshot ``ids``. embedding (n, d) or (d,) -> distances = 1 - inner product
        (ascending), ids; both (n, k') with k' = min(k, snapshots searched); ids -1 (distance
        inf) pad short rows."""
        from engine.tumor.index import search

        return search(self._index, embedding, k, len(self), ids)

    def stored_embeddings(self) -> np.ndarray:
        """(n_snapshots, d) float32: the vectors in the index (for brute-force comparisons)."""
        return self._index.reconstruct_n(0, self._index.ntotal)


def default_workers() -> int:
    """Local build workers by default: the CPU cores, at most 4."""
    return max(1, min(4, (os.cpu_count() or 1)))


def default_db_dir(preset: str = "demo") -> Path:
    """Where the program keeps its own databases: $TUMOR_DB, else
    <user data dir>/tumor_db/PRESET."""
    from db.store import data_dir

    if os.environ.get("TUMOR_DB"):
        return Path(os.environ["TUMOR_DB"])
    return data_dir() / "tumor_db" / preset


def check_database(db_dir, full: bool = False, *, progress=None, cancel=None) -> int:
    """Open the database (all quick checks, see the module docstring); with ``full`` also hash
    every byte of every shard. Returns the shards' total size in bytes; InputError (one
    sentence naming the damaged file) otherwise."""
    db = TumorDatabase.open(db_dir)
    try:
        rows = sorted(db._shard_rows.items())
        for i, (batch, _row) in enumerate(rows if full else []):
            if cancel is not None:
                cancel.check()
            db._verified_shard(batch)
            if progress is not None:
                progress.update((i + 1) / len(rows), f"{i + 1}/{len(rows)} shards hashed")
        return int(sum(r["nbytes"] for _, r in rows))
    finally:
        db.close()
