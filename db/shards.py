"""A generic sharded array store: a SQLite catalog + one .npy shard per batch + a vector index.
It knows no science: the caller passes its tables (column names and SQL types).

    DIR/manifest.json              what was built (the caller's dict)
    DIR/catalog.sqlite             the caller's tables (each has a ``batch`` column) and
                                   ``shards`` (one row per written shard: size, sha256, quick hash)
    DIR/shards/shard_NNNNN.npy     the batch's array
    DIR/shards/shard_NNNNN.json    the batch's catalog rows and the shard's hashes (sidecar)
    DIR/embedding.npz, DIR/index.faiss   opaque bytes/arrays saved for the caller

Crash safety: a batch writes its shard atomically (db/atomic.py), then its sidecar, then commits
all its catalog rows in ONE transaction. A shard without catalog rows (killed before the commit)
is adopted on the next build if its sidecar's sha256 matches its bytes, else recomputed. The
catalog is thereby a rebuildable cache of the sidecars: a corrupted catalog.sqlite is replaced
by an empty one (``remove_catalog``) and every verifiable shard is adopted again.
"""
from __future__ import annotations

import io
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from db.atomic import write_bytes, write_json, write_npz
from db.hashing import bytes_sha256, file_sha256, quick_sha256

SHARD_RE = re.compile(r"shard_(\d{5,})\.npy$")


class CatalogError(Exception):
    """The catalog file is not a readable SQLite database of the expected tables."""


@dataclass(frozen=True)
class Table:
    """A catalog table: ``columns`` as "name SQLTYPE" strings (one must be ``batch``),
    ``key``: primary-key column names (rows are read back ordered by it)."""
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.split()[0] for c in self.columns)

    def sql(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(self.columns)}, "
                f"PRIMARY KEY ({', '.join(self.key)}))")


SHARDS = Table("shards", ("batch INTEGER NOT NULL", "file TEXT NOT NULL", "n INTEGER NOT NULL",
                          "nbytes INTEGER NOT NULL", "sha256 TEXT NOT NULL",
                          "quick_sha256 TEXT NOT NULL"), ("batch",))


def remove_catalog(root: str | Path) -> None:
    """Delete a damaged catalog (and its journal files); the shards and sidecars stay, and a
    store created afterwards adopts every verifiable shard again (adopt_orphans)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(root, "catalog.sqlite" + suffix).unlink(missing_ok=True)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    return buf.getvalue()


class ShardStore:
    """Files of one store folder. Raises CatalogError when catalog.sqlite is damaged."""

    def __init__(self, root: str | Path, tables: tuple[Table, ...], create: bool = False):
        self.root = Path(root)
        self.tables = {t.name: t for t in tables}
        self.con = None
        if create:
            (self.root / "shards").mkdir(parents=True, exist_ok=True)
        self._connect(create)

    def _connect(self, create: bool) -> None:
        try:
            self.con = sqlite3.connect(str(self.catalog_path), timeout=30)
            self.con.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            if create:
                self.con.executescript(";\n".join(t.sql() for t in (*self.tables.values(),
                                                                       SHARDS)))
            check = self.con.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise CatalogError(f"the catalog {self.catalog_path} is damaged ({check})")
            for t in (*self.tables.values(), SHARDS):
                cols = [r[1] for r in self.con.execute(f"PRAGMA table_info({t.name})")]
                if cols != list(t.names):
                    raise CatalogError(f"the catalog {self.catalog_path} lacks the table "
                                       f"'{t.name}' or has other columns")
        except sqlite3.DatabaseError as err:
            self.close()
            raise CatalogError(f"the catalog {self.catalog_path} is not a readable SQLite "
                               f"database ({err})") from None
        except CatalogError:
            self.close()
            raise

    # -- paths ---------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

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

    def sidecar_path(self, batch: int) -> Path:
        return self.shard_path(batch).with_suffix(".json")

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- manifest ------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if not self.manifest_path.is_file():
            return None
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)

    # -- batches -------------------------------------------------------------------------
    def write_batch(self, batch: int, array: np.ndarray, rows: dict[str, list[dict]]) -> None:
        """Write one batch: the shard atomically, its sidecar, then all rows in one transaction.
        rows: table name -> list of {column: value} (JSON-representable values)."""
        data = npy_bytes(array)
        write_bytes(self.shard_path(batch), data)
        shard = {"batch": batch, "file": self.shard_path(batch).name, "n": len(array),
                 "nbytes": len(data), "sha256": bytes_sha256(data),
                 "quick_sha256": quick_sha256(data=data)}
        values = {name: [[r[c] for c in self.tables[name].names] for r in rows.get(name, [])]
                  for name in self.tables}
        write_json(self.sidecar_path(batch), {"shard": shard, "rows": values})
        self._insert(batch, shard, values)

    def _insert(self, batch: int, shard: dict, values: dict[str, list[list]]) -> None:
        with self.con:
            self._delete_batch(batch)
            for name, table in self.tables.items():
                self.con.executemany(
                    f"INSERT INTO {name} VALUES ({','.join('?' * len(table.names))})",
                    [tuple(v) for v in values[name]])
            self.con.execute(f"INSERT INTO shards VALUES ({','.join('?' * len(SHARDS.names))})",
                             tuple(shard[c] for c in SHARDS.names))

    def adopt_orphans(self) -> list[int]:
        """Insert the rows of every shard that has no catalog rows but a sidecar whose sha256
        matches the shard's bytes (killed before the commit, or the catalog was reset).
        Returns the adopted batches."""
        known = set(self.shard_rows())
        adopted = []
        for path in sorted((self.root / "shards").glob("shard_*.npy")):
            m = SHARD_RE.search(path.name)
            if not m or int(m.group(1)) in known:
                continue
            batch = int(m.group(1))
            try:
                side = json.loads(self.sidecar_path(batch).read_text(encoding="utf-8"))
                shard, values = side["shard"], side["rows"]
                ok = (shard["batch"] == batch and set(values) == set(self.tables)
                      and path.stat().st_size == shard["nbytes"]
                      and file_sha256(path) == shard["sha256"]
                      and all(len(v) == len(self.tables[n].names)
                              for n in values for v in values[n]))
            except (OSError, ValueError, KeyError, TypeError):
                ok = False
            if ok:
                self._insert(batch, shard, values)
                adopted.append(batch)
        return adopted

    def _delete_batch(self, batch: int) -> None:
        for name in (*self.tables, "shards"):
            self.con.execute(f"DELETE FROM {name} WHERE batch = ?", (batch,))

    def drop_batch(self, batch: int) -> None:
        with self.con:
            self._delete_batch(batch)

    def shard_rows(self) -> dict[int, dict]:
        cur = self.con.execute(f"SELECT {','.join(SHARDS.names)} FROM shards")
        return {r[0]: dict(zip(SHARDS.names[1:], r[1:])) for r in cur.fetchall()}

    def check_shard(self, batch: int, row: dict, mode: str = "quick") -> str | None:
        """None if shard ``batch`` is intact, else a sentence naming it. mode: "size" (exists,
        size), "quick" (+ quick_sha256 of its ends) or "full" (+ sha256 of every byte)."""
        path = self.shard_path(batch)
        if not path.is_file():
            return f"the shard {path} is missing"
        size = path.stat().st_size
        if size != row["nbytes"]:
            return f"the shard {path} is truncated or altered ({size} of {row['nbytes']} bytes)"
        if mode in ("quick", "full") and quick_sha256(path) != row["quick_sha256"]:
            return f"the shard {path} is corrupted (checksum mismatch)"
        if mode == "full" and file_sha256(path) != row["sha256"]:
            return f"the shard {path} is corrupted (checksum mismatch)"
        return None

    def check_shards(self, mode: str = "quick") -> list[tuple[int, str]]:
        """Damaged shards as (batch, sentence), see check_shard."""
        bad = []
        for batch, row in sorted(self.shard_rows().items()):
            why = self.check_shard(batch, row, mode)
            if why:
                bad.append((batch, why))
        return bad

    def load_shard(self, batch: int, mmap: bool = True) -> np.ndarray:
        return np.load(self.shard_path(batch), mmap_mode="r" if mmap else None)

    # -- tables --------------------------------------------------------------------------
    def table(self, name: str) -> dict[str, np.ndarray]:
        """All rows of a table as columns, ordered by its primary key."""
        t = self.tables[name]
        rows = self.con.execute(f"SELECT {','.join(t.names)} FROM {name} "
                                f"ORDER BY {','.join(t.key)}").fetchall()
        if not rows:
            return {n: np.zeros(0) for n in t.names}
        return {n: np.asarray(c) for n, c in zip(t.names, zip(*rows))}

    def count(self, name: str) -> int:
        return self.con.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]

    # -- embedding + index ---------------------------------------------------------------
    def save_embedding(self, **arrays) -> str:
        write_npz(self.embedding_path, compressed=False, **arrays)
        return file_sha256(self.embedding_path)

    def load_embedding(self) -> dict[str, np.ndarray]:
        with np.load(self.embedding_path) as z:
            return {k: z[k] for k in z.files}

    def save_index(self, data: bytes) -> str:
        write_bytes(self.index_path, data)
        return bytes_sha256(data)

    def load_index_bytes(self) -> bytes:
        return self.index_path.read_bytes()
