"""Shared test set-up: offscreen Qt, a private provenance store, two threads."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("WORKBENCH_THREADS", "2")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_store(tmp_path_factory, monkeypatch):
    """Every test writes provenance into its own folder, never the user's."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path_factory.mktemp("userdata")))


def run_main(*args, cwd=None, timeout=600, env=None):
    """Run ``python main.py ARGS`` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


@pytest.fixture(scope="session")
def tiny_db_dir(tmp_path_factory):
    """One `tiny` tumor database (8 mm, seed 0) for every test that only reads it."""
    from engine.jobs import CancelToken, Progress
    from engine.tumor.database import build_database

    path = tmp_path_factory.mktemp("tinydb") / "db"
    build_database(path, preset="tiny", seed=0, workers=1, progress=Progress(),
                   cancel=CancelToken())
    return path
