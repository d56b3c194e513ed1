"""Database builds on a Dask cluster (a LocalCluster of 2 worker processes, reached by its
scheduler address as an external cluster would be): identical to a local build, also when a
worker is killed with SIGKILL mid-build; Cancel stops cleanly and a rerun completes."""
from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest

from engine.jobs import CancelToken, Cancelled, Progress
from engine.tumor.build import build_database
from engine.tumor.catalog import open_store

SEED = 3


@pytest.fixture(scope="module")
def cluster():
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=logging.ERROR) as c:
        with Client(c, set_as_default=False) as client:
            yield c, client


@pytest.fixture(scope="module")
def local_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "db"
    build_database(path, preset="tiny", seed=SEED, progress=Progress(), cancel=CancelToken())
    return path


def files(path):
    """Every file's bytes except the SQLite catalog (its page layout depends on write order)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.startswith("catalog.sqlite")}


def assert_same_database(a, b):
    fa, fb = files(a), files(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        assert fa[name] == fb[name], name
    with open_store(a) as sa, open_store(b) as sb:
        for table in ("runs", "snapshots"):
            ta, tb = sa.table(table), sb.table(table)
            assert ta.keys() == tb.keys() and len(ta["batch"]) > 0
            for k in ta:
                assert np.array_equal(ta[k], tb[k]), (table, k)
        assert sa.shard_rows() == sb.shard_rows()


def test_cluster_build_equals_local_build(cluster, local_db, tmp_path):
    c, _ = cluster
    messages = []
    db = tmp_path / "dask"
    build_database(db, preset="tiny", seed=SEED, scheduler=c.scheduler_address,
                   progress=Progress(lambda ev: messages.append(ev.message)),
                   cancel=CancelToken())
    assert_same_database(local_db, db)
    assert any(re.search(r"/4 batches, \d workers, \d running", m) for m in messages), messages


def test_worker_killed_mid_build_gives_identical_database(cluster, local_db, tmp_path):
    c, client = cluster
    killed = []

    def on_progress(ev):
        # after the first batch result: SIGKILL a worker process that is computing a task
        if killed or not ev.message.startswith("1/"):
            return
        busy = [w for w, keys in client.processing().items() if keys]
        pids = client.run(os.getpid, workers=busy or None)
        pid = next(iter(pids.values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    db = tmp_path / "killed"
    build_database(db, preset="tiny", seed=SEED, scheduler=c.scheduler_address,
                   progress=Progress(on_progress), cancel=CancelToken())
    assert killed
    assert_same_database(local_db, db)


def test_cancel_stops_cleanly_and_rerun_completes(cluster, local_db, tmp_path):
    c, client = cluster
    token = CancelToken()

    def on_progress(ev):
        if ev.message.startswith("1/"):
            token.cancel()

    db = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        build_database(db, preset="tiny", seed=SEED, scheduler=c.scheduler_address,
                       progress=Progress(on_progress), cancel=token)
    with open_store(db) as s:
        assert 1 <= len(s.shard_rows()) < 4 and not s.read_manifest()["complete"]
    build_database(db, preset="tiny", seed=SEED, scheduler=c.scheduler_address,
                   progress=Progress(), cancel=CancelToken())
    assert_same_database(local_db, db)


def test_unreachable_scheduler_is_refused_before_anything_is_created(tmp_path, monkeypatch):
    import socket

    from engine.jobs import InputError
    from engine.tumor import execute

    monkeypatch.setattr(execute, "CONNECT_TIMEOUT_S", 2)
    with socket.socket() as s:                 # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "new"
    with pytest.raises(InputError, match=f"Cannot reach the Dask scheduler at .*:{port}"):
        build_database(db, preset="tiny", seed=SEED, scheduler=f"tcp://127.0.0.1:{port}",
                       progress=Progress(), cancel=CancelToken())
    assert not db.exists()
