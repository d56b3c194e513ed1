"""Dependency rules: engine/ and db/ never import Qt; torch, faiss and cv2 load in any order."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6")


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("package", ["engine", "db"])
def test_no_qt_under_engine_or_db(package):
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / package).rglob("*.py")
                 for m in imported_modules(p) if m.split(".")[0] in QT]
    assert offenders == []


def test_db_imports_neither_engine_nor_gui():
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "db").rglob("*.py")
                 for m in imported_modules(p) if m.split(".")[0] in ("engine", "gui")]
    assert offenders == []


def test_importing_every_engine_and_db_module_loads_no_qt():
    mods = [".".join(p.relative_to(ROOT).with_suffix("").parts) for pkg in ("engine", "db")
            for p in (ROOT / pkg).rglob("*.py")]
    mods = [m.removesuffix(".__init__") for m in mods]
    code = ("import sys, importlib\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


ONE_PLACE = {"torch": "engine/_torch.py", "faiss": "engine/_faiss.py", "cv2": "engine/_cv2.py"}


def test_torch_faiss_cv2_are_imported_in_one_place_each():
    files = [p for d in ("engine", "db", "gui") for p in (ROOT / d).rglob("*.py")]
    files += [ROOT / "main.py"]
    offenders = [f"{p.relative_to(ROOT)}: {m}" for p in files for m in imported_modules(p)
                 if m.split(".")[0] in ONE_PLACE
                 and str(p.relative_to(ROOT)) != ONE_PLACE[m.split(".")[0]]]
    assert offenders == []


ORDERS = [("torch", "faiss", "cv2"), ("faiss", "cv2", "torch"), ("cv2", "torch", "faiss")]
USE = {
    "torch": "from engine._torch import torch; a = torch.randn(64, 64); assert (a @ a.T).shape == (64, 64)",
    "faiss": ("from engine._faiss import faiss; import numpy as np; x = np.random.rand(100, 8)"
              ".astype('float32'); ix = faiss.IndexFlatL2(8); ix.add(x); "
              "assert ix.search(x[:3], 1)[1].ravel().tolist() == [0, 1, 2]"),
    "cv2": ("from engine._cv2 import cv2; import numpy as np; "
            "assert cv2.resize(np.ones((8, 8), np.float32), (4, 4)).shape == (4, 4)"),
}


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_native_libraries_import_and_run_in_any_order(order):
    code = "\n".join(USE[name] for name in order)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_building_the_command_line_loads_no_heavy_library():
    """Subcommand modules import torch, faiss, cv2, nibabel, Qt... inside their handlers, so a
    mistyped option is refused at once and `--help` is fast."""
    heavy = ("torch", "faiss", "cv2", "nibabel", "PySide6", "pyqtgraph", "scipy", "dask",
             "SimpleITK", "ants", "distributed")
    code = ("import sys, main\nmain.build_parser()\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
