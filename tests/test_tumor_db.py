"""Simulation database: deterministic, crash-safe build; damage detection and repair; search."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_main

from engine.jobs import CancelToken, Cancelled, InputError, Progress
from engine.tumor.anatomy import load_anatomy
from engine.tumor.build import build_database, sampling_plan
from engine.tumor.catalog import open_store
from engine.tumor.database import TumorDatabase
from engine.tumor.params import THRESHOLDS
from engine.tumor.presets import PRESETS, lambda_range


def build(path, **kw):
    return build_database(path, preset="tiny", seed=kw.pop("seed", 0), progress=Progress(),
                          cancel=kw.pop("cancel", CancelToken()), **kw)


@pytest.fixture(scope="module")
def ref_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "db"
    build(path)
    return path


def tables(path):
    with open_store(path) as s:
        return s.table("runs"), s.table("snapshots"), s.shard_rows()


def test_sampling_plan_is_deterministic_and_in_range():
    an = load_anatomy(PRESETS["tiny"].spacing_mm)
    a, b, c = (sampling_plan("tiny", s, an) for s in (0, 0, 1))
    assert np.array_equal(a["lambda_mm"], b["lambda_mm"])
    assert np.array_equal(a["origin_vox"], b["origin_vox"])
    assert not np.allclose(a["origin_vox"], c["origin_vox"])
    lo, hi = lambda_range(an.spacing_mm)
    assert np.all((a["lambda_mm"] >= lo) & (a["lambda_mm"] <= hi))
    assert np.all(np.diff(a["lambda_mm"]) >= 0)
    v = np.rint(a["origin_vox"]).astype(int)
    assert np.all(an.brain[v[:, 0], v[:, 1], v[:, 2]])


def children(pid: int) -> list[int]:
    """Child process ids of pid (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def committed_shards(db: Path) -> int:
    """Shard rows committed to the catalog so far (0 while it does not exist yet)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{db / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_9_then_resume_equals_uninterrupted_build(ref_db, tmp_path):
    db = tmp_path / "killed"
    env = dict(os.environ, WORKBENCH_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "tumor", "build-db", "--db",
                             str(db), "--preset", "tiny", "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if committed_shards(db) >= 1:      # kill right after the first committed batch
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build finished before it could be killed"
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the worker processes notice that their parent died and exit
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    assert workers and not any(alive(w) for w in workers)
    with open_store(db) as s:
        assert not s.read_manifest()["complete"]
        n_partial = len(s.shard_rows())
    assert 1 <= n_partial < 4
    # resume, serially this time: results do not depend on the worker count
    r = run_main("tumor", "build-db", "--db", db, "--preset", "tiny", "--workers", "1",
                 env={"WORKBENCH_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    runs_a, snaps_a, shards_a = tables(ref_db)
    runs_b, snaps_b, shards_b = tables(db)
    for a, b in ((runs_a, runs_b), (snaps_a, snaps_b)):
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), k
    assert shards_a == shards_b            # same sizes and sha256 of every shard
    pairs = set(zip(snaps_b["run_id"].tolist(), snaps_b["tau"].tolist()))
    assert len(pairs) == len(snaps_b["run_id"])    # no duplicates
    A, B = TumorDatabase.open(ref_db), TumorDatabase.open(db)
    assert len(A) == len(B) == A.manifest["n_snapshots"]
    ids = np.arange(0, len(A), 7)
    assert np.array_equal(A.concentration(ids), B.concentration(ids))
    assert np.allclose(A.stored_embeddings(), B.stored_embeddings(), atol=1e-4)


def test_cancel_then_rerun_completes(ref_db, tmp_path):
    token = CancelToken()

    def on_progress(ev):
        if ev.fraction > 0.3:
            token.cancel()

    db = tmp_path / "cancelled"
    with pytest.raises(Cancelled):
        build_database(db, preset="tiny", seed=0, progress=Progress(on_progress), cancel=token)
    with pytest.raises(InputError, match="incomplete"):
        TumorDatabase.open(db)
    build(db)
    assert tables(db)[2] == tables(ref_db)[2]


def mtimes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(path.rglob("*")) if p.is_file()
            and p.suffix in (".npy", ".faiss", ".npz")}


def test_truncated_shard_detected_and_repaired(ref_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    victim = db / "shards" / "shard_00002.npy"
    original = victim.read_bytes()
    victim.write_bytes(original[: len(original) // 2])
    with pytest.raises(InputError, match="shard .*shard_00002.npy is truncated"):
        TumorDatabase.open(db)
    before = mtimes(db)
    build(db)
    after = mtimes(db)
    assert victim.read_bytes() == original
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"shard_00002.npy"}          # only the damaged batch was recomputed
    assert len(TumorDatabase.open(db)) == len(TumorDatabase.open(ref_db))


def test_corrupted_index_detected_and_rebuilt(ref_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    index = db / "index.faiss"
    data = bytearray(index.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    index.write_bytes(bytes(data))
    with pytest.raises(InputError, match="index.faiss is missing or corrupted"):
        TumorDatabase.open(db)
    before = mtimes(db)
    build(db)
    after = mtimes(db)
    assert {k for k in before if before[k] != after[k]} <= {"index.faiss", "embedding.npz"}
    assert all(before[k] == after[k] for k in before if k.startswith("shard_"))
    d = TumorDatabase.open(db)
    ids = np.arange(len(d))
    _, found = d.search(d.stored_embeddings()[ids], 1)
    assert np.array_equal(found[:, 0], ids) or np.all(
        np.isclose(d.stored_embeddings()[found[:, 0]], d.stored_embeddings()[ids]).all(1))


def test_faiss_returns_exact_nearest_for_member_queries(ref_db):
    d = TumorDatabase.open(ref_db)
    ids = np.arange(len(d))
    core, whole = d.masks(ids)
    q = d.embed(core, whole)
    dist, found = d.search(q, 5)
    stored = d.stored_embeddings()
    brute = 1.0 - q @ stored.T                         # distance = 1 - inner product
    assert np.allclose(dist[:, 0], brute.min(axis=1), atol=1e-3)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    # a member's distance to itself: 1 - |e|^2 = 0 with a core, 1/2 without (empty core block)
    has_core = core.reshape(len(ids), -1).any(axis=1)
    assert np.allclose(dist[has_core, 0], 0, atol=1e-3)
    # the hit is the member itself, or a snapshot with identical masks (exact tie)
    for i, j in zip(ids, found[:, 0]):
        if i != j:
            ci, wi = d.masks([i])
            cj, wj = d.masks([j])
            assert np.array_equal(ci, cj) and np.array_equal(wi, wj)
    assert np.mean(found[:, 0] == ids) > 0.9


def test_embedding_inner_product_is_mean_cosine_of_pooled_masks(ref_db):
    """On the tiny database the PCA keeps every direction, so the index's inner products are
    the mean of the cosines of the pooled core and whole-tumor masks (the search ranks by
    them), and a query's embedding equals the stored one of the same masks."""
    d = TumorDatabase.open(ref_db)
    ids = np.arange(0, len(d), 5)
    core, whole = d.masks(ids)
    n = len(ids)
    flat_c = core.reshape(n, -1)[:, d.brain_index].astype(np.float64)
    flat_w = whole.reshape(n, -1)[:, d.brain_index].astype(np.float64)
    pool = d._emb.pool_brain_T.toarray().T                    # (n_brain, D) 0/1

    def cosines(m):
        x = m @ pool
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x @ x.T

    cos = 0.5 * (cosines(flat_c) + cosines(flat_w))
    e = d.embed(core, whole)
    assert np.allclose(e, d.stored_embeddings()[ids], atol=1e-4)
    assert np.allclose(e @ e.T, cos, atol=1e-3)
    dist, found = d.search(e[:1], 3, ids=ids[1:])         # id subset: never the query itself
    assert np.isin(found, ids[1:]).all()
    assert np.allclose(dist[0], 1 - cos[0, np.searchsorted(ids, found[0])], atol=1e-3)
    assert np.all(np.diff(dist[0]) >= -1e-6)


def test_columns_and_masks_are_consistent(ref_db):
    d = TumorDatabase.open(ref_db)
    s, an = d.snapshots, d.anatomy
    n = len(d)
    assert all(len(v) == n for v in s.values())
    core, whole = d.masks(np.arange(n))
    assert np.allclose(whole.reshape(n, -1).sum(1) * an.voxel_cm3, s["vol_whole_cm3"])
    assert np.allclose(core.reshape(n, -1).sum(1) * an.voxel_cm3, s["vol_core_cm3"])
    assert np.all(core <= whole) and not whole[:, ~an.brain].any()
    brain_cm3 = an.brain.sum() * an.voxel_cm3
    assert np.all((s["vol_whole_cm3"] >= 1.0) & (s["vol_whole_cm3"] <= brain_cm3 / 3 + 1e-9))
    assert np.allclose(s["mu1_cm"], s["lambda_mm"] / 10 * np.sqrt(s["tau"]))
    assert np.allclose(s["mu2"], np.sqrt(s["tau"]))
    assert np.allclose(an.vox_to_mm(s["origin_vox"]), s["origin_mm"])
    # a looser threshold gives larger masks
    _, loose = d.masks(np.arange(n), {"whole": 0.1})
    assert np.all(loose >= whole) and loose.sum() > whole.sum()
    assert d.manifest["thresholds"] == THRESHOLDS
    # each run's snapshots grow in tau and volume
    for rid in np.unique(s["run_id"]):
        sel = s["run_id"] == rid
        assert np.all(np.diff(s["tau"][sel]) > 0) and np.all(np.diff(s["vol_whole_cm3"][sel]) > 0)


def test_mismatched_or_missing_database_is_refused(ref_db, tmp_path):
    with pytest.raises(InputError, match="No tumor database"):
        TumorDatabase.open(tmp_path / "nothing")
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    with pytest.raises(InputError, match="describes a different database"):
        build(db, seed=3)
    m = (db / "manifest.json").read_text()
    (db / "manifest.json").write_text(m.replace('"atlas_hash": "', '"atlas_hash": "x'))
    with pytest.raises(InputError, match="different atlas grid"):
        TumorDatabase.open(db)
    (db / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="manifest .* is unreadable"):
        TumorDatabase.open(db)


def test_cli_refuses_foreign_folder_with_exit_2(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    r = run_main("tumor", "build-db", "--db", folder, "--preset", "tiny")
    assert r.returncode == 2
    assert "holds no tumor database manifest" in r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]


def test_database_panel_shows_coverage(ref_db, tmp_path, qtbot):
    from PySide6.QtCore import Signal
    from PySide6.QtWidgets import QWidget

    from gui.workbenches.tumor_db_panel import DatabasePanel

    class Viewer:
        def __init__(self):
            self.points = {}

        def set_points(self, name, ijk, color, size):
            self.points[name] = np.asarray(ijk)

    class FakeWorkbench(QWidget):
        error = Signal(str)
        readout = Signal(str)

        def __init__(self):
            super().__init__()
            self.viewer = Viewer()
            self.jobs = None
            self.scan = None  # the displayed scan (set below, once the database is known)

    wb = FakeWorkbench()
    panel = DatabasePanel(wb.jobs, wb.viewer, lambda xyz: wb.scan.mm_to_vox(xyz))
    qtbot.addWidget(panel)
    errors = []
    panel.error.connect(errors.append)
    assert not panel.open_database(tmp_path / "missing")
    assert errors and "No tumor database" in errors[0]
    from engine.tumor.database import TumorDatabase

    wb.scan = TumorDatabase.open(ref_db).anatomy  # display the database's own grid
    with qtbot.waitSignal(panel.database_changed):
        assert panel.open_database(ref_db)
    db = panel.database
    # one origin per run, in voxel coordinates of the displayed grid
    pts = wb.viewer.points["database origins"]
    assert len(pts) == db.manifest["n_runs"]
    _, first = np.unique(db.snapshots["run_id"], return_index=True)
    np.testing.assert_allclose(pts, db.snapshots["origin_vox"][first], atol=1e-4)
    # histograms hold every snapshot
    for key, curve in panel._hists.items():
        x, y = curve.getData()
        expected = (db.snapshots[key] > 0).sum() if key == "vol_core_cm3" else len(db)
        assert y.sum() == expected, key
    assert f"{len(db)} snapshots" in panel.info.text()


def same_tables(a, b):
    (ra, sa, ha), (rb, sb, hb) = tables(a), tables(b)
    for x, y in ((ra, rb), (sa, sb)):
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k], y[k]), k
    assert ha == hb


def test_shard_corrupted_in_place_is_never_used_and_repaired(ref_db, tmp_path):
    from engine.tumor.database import check_database

    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    victim = db / "shards" / "shard_00000.npy"
    original = victim.read_bytes()
    assert len(original) > 2 * 65536 + 64     # the flip lies between the quick check's blocks
    data = bytearray(original)
    data[len(data) // 2: len(data) // 2 + 16] = bytes(255 - x for x in data[len(data) // 2:
                                                                             len(data) // 2 + 16])
    victim.write_bytes(bytes(data))
    assert check_database(db) > 0             # the quick check (sizes, end blocks) passes
    r = run_main("tumor", "check-db", "--db", db, "--full")
    assert r.returncode == 2
    assert "shard_00000.npy is corrupted (checksum mismatch)" in r.stderr
    d = TumorDatabase.open(db)
    in_0 = np.flatnonzero(d._batch == 0)
    in_1 = np.flatnonzero(d._batch == 1)
    assert d.quantized(in_1).shape[0] == len(in_1)        # intact shards stay usable
    with pytest.raises(InputError, match="shard_00000.npy is corrupted"):
        d.quantized(in_0[:1], columns=np.arange(3))       # never read unverified
    with pytest.raises(InputError, match="shard_00000.npy is corrupted"):
        d.masks(in_0[-1:])
    d.close()
    before = mtimes(db)
    build(db)
    after = mtimes(db)
    assert victim.read_bytes() == original
    assert {k for k in before if before[k] != after[k]} == {"shard_00000.npy"}
    same_tables(ref_db, db)


def test_flipped_first_block_is_refused_at_open(ref_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    victim = db / "shards" / "shard_00003.npy"
    data = bytearray(victim.read_bytes())
    data[200] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(InputError, match="shard .*shard_00003.npy is corrupted"):
        TumorDatabase.open(db)


def test_corrupted_catalog_is_reported_and_rebuilt_from_the_shards(ref_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    for extra in db.glob("catalog.sqlite-*"):
        extra.unlink()
    cat = db / "catalog.sqlite"
    cat.write_bytes(b"this is not a database " * (cat.stat().st_size // 23 + 1))
    with pytest.raises(InputError, match="catalog .*catalog.sqlite is not a readable SQLite"):
        TumorDatabase.open(db)
    r = run_main("tumor", "check-db", "--db", db)
    assert r.returncode == 2 and "catalog.sqlite" in r.stderr and "Traceback" not in r.stderr
    before = mtimes(db)
    build(db)                                  # every shard verified against its sidecar, kept
    assert mtimes(db) == before
    same_tables(ref_db, db)
    assert len(TumorDatabase.open(db)) == len(TumorDatabase.open(ref_db))


def test_shard_written_but_not_committed_is_adopted_only_if_intact(ref_db, tmp_path):
    """kill -9 between a shard's write and its catalog commit: the shard is adopted when its
    sidecar's sha256 matches, recomputed otherwise."""
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    with open_store(db) as s:
        s.drop_batch(1)
        s.drop_batch(2)
    side = db / "shards" / "shard_00002.json"
    side.write_text(side.read_text().replace('"sha256": "', '"sha256": "0'))
    before = mtimes(db)
    build(db)
    after = mtimes(db)
    assert {k for k in before if before[k] != after[k]} == {"shard_00002.npy"}
    same_tables(ref_db, db)


def test_bad_seed_is_refused_before_anything_is_created(tmp_path):
    db = tmp_path / "new"
    r = run_main("tumor", "build-db", "--db", db, "--preset", "tiny", "--seed", "-1")
    assert r.returncode == 2 and "--seed" in r.stderr and "Traceback" not in r.stderr
    assert not db.exists()
    with pytest.raises(InputError, match="seed"):
        build(db, seed=2 ** 40)
    assert not db.exists()


def test_ivf_index_above_the_size_threshold_is_deterministic_and_searches(ref_db, tmp_path,
                                                                          monkeypatch):
    from engine.tumor import index as idx

    monkeypatch.setattr(idx, "FLAT_MAX", 10)        # the tiny database (~150) gets an IVF index
    monkeypatch.setattr(idx, "TRAIN_PER_LIST", 4)
    db = tmp_path / "db"
    shutil.copytree(ref_db, db)
    (db / "index.faiss").unlink()
    build(db)
    first = (db / "index.faiss").read_bytes()
    (db / "index.faiss").unlink()
    build(db)
    assert (db / "index.faiss").read_bytes() == first       # trained from the seed: same bytes
    d, flat = TumorDatabase.open(db), TumorDatabase.open(ref_db)
    assert d.manifest["index_type"] == "IndexIVFFlat" and d.manifest["nlist"] == 16
    assert d.manifest["nprobe"] == 16                        # nprobe capped at nlist: exact
    assert np.allclose(d.stored_embeddings(), flat.stored_embeddings(), atol=1e-6)
    q = flat.stored_embeddings()[::7]
    dist_i, ids_i = d.search(q, 5)
    dist_f, _ = flat.search(q, 5)
    assert np.allclose(dist_i, dist_f, atol=1e-5)
    subset = np.arange(0, len(d), 3)
    dist_s, ids_s = d.search(q, 4, ids=subset)                # a subset is scanned exactly
    assert np.isin(ids_s, subset).all()
    brute = 1 - q @ flat.stored_embeddings()[subset].T
    assert np.allclose(dist_s, np.sort(brute, axis=1)[:, :4], atol=1e-5)
