import sqlite3

from db.atomic import atomic_write, write_json
from db.store import MIGRATIONS, SCHEMA_VERSION, Store, file_sha256, migrate


def test_run_is_recorded_with_hashes(tmp_path):
    inp = tmp_path / "in.txt"
    inp.write_text("hello")
    out = tmp_path / "out.json"
    write_json(out, {"a": 1})
    with Store(tmp_path / "p.sqlite") as store:
        rid = store.start_run("tumor fit", {"days": 100}, [inp])
        store.finish_run(rid, "ok", [out], {"total": 1.5})
        run = store.runs()[0]
    assert run.command == "tumor fit" and run.params == {"days": 100}
    assert run.inputs == [(str(inp), file_sha256(inp))]
    assert run.inputs[0][1] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert run.outputs == [(str(out), file_sha256(out))]
    assert run.timings == {"total": 1.5} and run.status == "ok"


def test_migration_from_previous_version_keeps_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    assert migrate(conn, target=SCHEMA_VERSION - 1) == SCHEMA_VERSION - 1
    conn.execute("INSERT INTO runs (command, params, version, started_at, status) "
                 "VALUES ('old cmd', '{}', '0.0.1', 1.0, 'ok')")
    conn.execute("INSERT INTO recent_files VALUES ('/a.nii', 'scan', 2.0)")
    conn.commit()
    conn.close()
    with Store(path) as store:
        version = store.conn.execute("SELECT version FROM schema_version").fetchone()[0]
        runs = store.runs()
        assert store.recent() == [("/a.nii", "scan")]
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    assert runs[0].command == "old cmd" and runs[0].timings == {}


def test_store_uses_wal(tmp_path):
    with Store(tmp_path / "p.sqlite") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_recent_files_are_most_recent_first_and_bounded(tmp_path):
    with Store(tmp_path / "p.sqlite") as store:
        for i in range(25):
            store.add_recent(tmp_path / f"f{i}.nii", "scan")
        recent = store.recent(limit=100)
    assert len(recent) == 20
    assert recent[0][0].endswith("f24.nii")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    try:
        with atomic_write(target, "w") as f:
            f.write("half-written")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temp file left


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    write_json(tmp_path / "a.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
