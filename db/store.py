"""Provenance store: a SQLite catalog of recent files and of every run the program does.

Lives in the user data directory (platformdirs), or in ``$WORKBENCH_DATA_DIR`` when set
(tests set it). WAL journal; a ``schema_version`` table and ordered migrations, so an
older catalog is upgraded in place and keeps its rows.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from db.hashing import file_sha256

APP_NAME = "inversion-workbench"     # the user data folder's name (see engine/version.py)

# Each entry upgrades the schema from version i to i + 1. Never edit a shipped entry: append.
MIGRATIONS: list[str] = [
    # 0 -> 1
    """
    CREATE TABLE recent_files (path TEXT PRIMARY KEY, kind TEXT NOT NULL, opened_at REAL NOT NULL);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        command TEXT NOT NULL,
        params TEXT NOT NULL,
        version TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL
    );
    CREATE TABLE run_files (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('input', 'output')),
        path TEXT NOT NULL,
        sha256 TEXT
    );
    """,
    # 1 -> 2: per-stage timings and the error message of failed runs
    """
    ALTER TABLE runs ADD COLUMN timings TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN message TEXT NOT NULL DEFAULT '';
    CREATE INDEX run_files_run ON run_files(run_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def data_dir() -> Path:
    env = os.environ.get("WORKBENCH_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


@dataclass
class Run:
    id: int
    command: str
    params: dict
    version: str
    started_at: float
    finished_at: float | None
    status: str
    timings: dict
    message: str
    inputs: list[tuple[str, str | None]]
    outputs: list[tuple[str, str | None]]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply migrations up to ``target``; returns the version reached."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if row is None:
        conn.execute("INSERT INTO schema_version VALUES (0)")
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"The provenance store was written by a newer version "
                           f"(schema {version} > {SCHEMA_VERSION}).")
    while version < target:
        with conn:
            conn.executescript("BEGIN;" + MIGRATIONS[version] +
                               f"; UPDATE schema_version SET version = {version + 1}; COMMIT;")
        version += 1
    return version


class Store:
    """Provenance catalog. Cheap to open; one connection per thread."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else data_dir() / "provenance.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # recent files
    def add_recent(self, path: str | os.PathLike, kind: str, keep: int = 20) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO recent_files VALUES (?, ?, ?)",
                              (str(Path(path).resolve()), kind, time.time()))
            self.conn.execute("DELETE FROM recent_files WHERE path NOT IN (SELECT path FROM "
                              "recent_files ORDER BY opened_at DESC LIMIT ?)", (keep,))

    def recent(self, kind: str | None = None, limit: int = 10) -> list[tuple[str, str]]:
        q = "SELECT path, kind FROM recent_files"
        args: tuple = ()
        if kind:
            q, args = q + " WHERE kind = ?", (kind,)
        return self.conn.execute(q + " ORDER BY opened_at DESC LIMIT ?", (*args, limit)).fetchall()

    # runs
    def start_run(self, command: str, params: dict, inputs=(), version: str = "unknown") -> int:
        """Record a started run; ``version``: the program's version (engine/version.py)."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO runs (command, params, version, started_at, status) "
                "VALUES (?, ?, ?, ?, 'running')",
                (command, json.dumps(params, default=str), version, time.time()))
            run_id = cur.lastrowid
            self.conn.executemany("INSERT INTO run_files VALUES (?, 'input', ?, ?)",
                                  [(run_id, str(p), file_sha256(p)) for p in inputs])
        return run_id

    def finish_run(self, run_id: int, status: str = "ok", outputs=(), timings: dict | None = None,
                   message: str = "") -> None:
        with self.conn:
            self.conn.execute("UPDATE runs SET finished_at = ?, status = ?, timings = ?, "
                              "message = ? WHERE id = ?",
                              (time.time(), status, json.dumps(timings or {}), message, run_id))
            self.conn.executemany("INSERT INTO run_files VALUES (?, 'output', ?, ?)",
                                  [(run_id, str(p), file_sha256(p)) for p in outputs])

    def runs(self, limit: int = 50) -> list[Run]:
        rows = self.conn.execute(
            "SELECT id, command, params, version, started_at, finished_at, status, timings, "
            "message FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for r in rows:
            files = self.conn.execute("SELECT role, path, sha256 FROM run_files WHERE run_id = ?",
                                      (r[0],)).fetchall()
            out.append(Run(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], json.loads(r[7]),
                           r[8], [(p, h) for role, p, h in files if role == "input"],
                           [(p, h) for role, p, h in files if role == "output"]))
        return out
