"""The tumor database's catalog schema on the generic shard store (db/shards.py).

runs: one row per simulation (lambda, origin in voxels and MNI mm, plan seed);
snapshots: one row per stored snapshot, ordered by (batch, local) = snapshot id order.
"""
from __future__ import annotations

from db.shards import CatalogError, ShardStore, Table  # noqa: F401  (CatalogError re-exported)

RUNS = Table("runs", ("run_id INTEGER NOT NULL", "batch INTEGER NOT NULL",
                      "lambda_mm REAL NOT NULL", "i REAL NOT NULL", "j REAL NOT NULL",
                      "k REAL NOT NULL", "x_mm REAL NOT NULL", "y_mm REAL NOT NULL",
                      "z_mm REAL NOT NULL", "seed INTEGER NOT NULL"), ("run_id",))
SNAPSHOTS = Table("snapshots", ("batch INTEGER NOT NULL", "local INTEGER NOT NULL",
                                "run_id INTEGER NOT NULL", "tau REAL NOT NULL",
                                "mu1_cm REAL NOT NULL", "mu2 REAL NOT NULL",
                                "vol_core_cm3 REAL NOT NULL", "vol_whole_cm3 REAL NOT NULL",
                                "thr_core REAL NOT NULL", "thr_whole REAL NOT NULL"),
                  ("batch", "local"))
TABLES = (RUNS, SNAPSHOTS)


def open_store(root, create: bool = False) -> ShardStore:
    """The tumor database folder ``root`` as a ShardStore (CatalogError if the catalog is
    damaged)."""
    return ShardStore(root, TABLES, create=create)
