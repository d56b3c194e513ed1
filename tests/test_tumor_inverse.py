"""Tumor inverse: recovery on synthetic cases, CLI outputs on the input grid, bad input."""
from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from conftest import run_main

from engine.jobs import CancelToken, InputError
from engine.tumor import inverse, synthetic
from engine.tumor.database import TumorDatabase, lambda_range
from engine.tumor.export import CSV_FIELDS, FILES
from engine.tumor.params import THRESHOLDS

DEFAULT_THR = {"core": 0.6, "whole": 0.2}
NO_PERTURB = {"core": 0, "whole": 0}
JSON_FIELDS = ("mu1_cm", "mu2", "Dw_cm2_per_day", "rho_per_day", "T_days", "origin_mm",
               "dice_core", "dice_whole", "thresholds", "uncertainty", "candidates",
               "timings_s", "database", "version")


@pytest.fixture(scope="module")
def db_dir(tiny_db_dir):
    return tiny_db_dir


@pytest.fixture(scope="module")
def db(db_dir):
    d = TumorDatabase.open(db_dir)
    yield d
    d.close()


def run_of(db, run_id: int) -> dict:
    sn = db.snapshots
    i = int(np.flatnonzero(sn["run_id"] == run_id)[0])
    return {"lambda_mm": float(sn["lambda_mm"][i]), "origin_mm": sn["origin_mm"][i].copy()}


@pytest.fixture(scope="module")
def same_grid_case(db, tmp_path_factory):
    """Simulated on the database's own 8 mm grid from a stored run: must be found exactly."""
    r = run_of(db, 1)
    path = tmp_path_factory.mktemp("same") / "seg.nii.gz"
    return synthetic.make_patient(path, 0, 8.0, lambda_range(8.0), fine_spacing_mm=8.0,
                                  overrides=dict(lambda_mm=r["lambda_mm"],
                                                 origin_mm=r["origin_mm"], target_cm3=60.0,
                                                 thresholds=DEFAULT_THR, perturb=NO_PERTURB))


@pytest.fixture(scope="module")
def fine_case(db, tmp_path_factory):
    """Simulated on the finer 4 mm grid, lambda and origin off the database's runs."""
    r = run_of(db, 1)
    path = tmp_path_factory.mktemp("fine") / "seg.nii.gz"
    return synthetic.make_patient(path, 1, 8.0, lambda_range(8.0), fine_spacing_mm=4.0,
                                  overrides=dict(lambda_mm=1.1 * r["lambda_mm"],
                                                 origin_mm=r["origin_mm"] + [3.0, -2.0, 2.0],
                                                 target_cm3=60.0, thresholds=DEFAULT_THR,
                                                 perturb=NO_PERTURB))


def errors(est, truth) -> tuple[float, float, float]:
    d = est.to_dict()
    return (float(np.linalg.norm(np.subtract(d["origin_mm"], truth["origin_mm"]))),
            abs(d["mu1_cm"] / truth["mu1_cm"] - 1), abs(d["mu2"] / truth["mu2"] - 1))


def test_synthetic_patient_is_a_brats_label_map_at_1mm(fine_case):
    img = nib.load(fine_case["path"])
    assert img.shape == synthetic.MNI_1MM_SHAPE
    assert np.allclose(img.affine, synthetic.MNI_1MM_AFFINE)
    lab = np.asarray(img.dataobj)
    assert set(np.unique(lab)) <= {0, 1, 2, 4} and (lab == 2).any() and (lab == 4).any()
    assert abs(fine_case["vol_whole_cm3"] - 60.0) < 25.0   # grown to about the target


def test_fit_recovers_a_case_from_the_database_grid_exactly(db, same_grid_case):
    obs = inverse.load_observation(seg=same_grid_case["path"])
    for refine in (False, True):
        est = inverse.fit(db, obs, 100.0, refine=refine)
        origin_err, mu1_err, mu2_err = errors(est, same_grid_case)
        assert origin_err < 4.0, (refine, origin_err)   # half a database voxel
        assert mu1_err < 0.1 and mu2_err < 0.1, (refine, mu1_err, mu2_err)
        assert est.dice_whole > 0.85, (refine, est.dice_whole)
        if inverse.to_database_grid(obs, db.anatomy)[0].any():    # a visible core
            assert est.dice_core > 0.75, (refine, est.dice_core)
    # Dw, rho for the stated T follow from mu1, mu2
    d = inverse.fit(db, obs, 250.0, refine=False).to_dict()
    assert d["T_days"] == 250.0
    assert np.isclose(d["Dw_cm2_per_day"], d["mu1_cm"] ** 2 / 250.0)
    assert np.isclose(d["rho_per_day"], d["mu2"] ** 2 / 250.0)


def test_fit_on_a_finer_grid_case_and_refine_helps(db, fine_case):
    obs = inverse.load_observation(seg=fine_case["path"])
    base = inverse.fit(db, obs, 100.0, refine=False)
    ref = inverse.fit(db, obs, 100.0, refine=True)
    assert ref.score >= base.score
    assert ref.score > base.score + 0.02          # here the refinement clearly helps
    origin_err, mu1_err, mu2_err = errors(ref, fine_case)
    assert origin_err < 6.0                        # under one 8 mm database voxel
    assert ref.dice_whole > 0.9
    # the 8 mm lattice moves fronts faster than the 4 mm one: tau (mu2) comes out low
    assert mu1_err < 0.35 and mu2_err < 0.4
    # uncertainty brackets the estimate; candidates are sorted, at most top-k
    u = ref.to_dict()["uncertainty"]
    for key in ("mu1_cm", "mu2", "Dw_cm2_per_day", "rho_per_day"):
        assert u[key]["min"] <= ref.params[key] + 1e-12 <= u[key]["max"] + 2e-12
    scores = [c["score"] for c in ref.candidates]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 50


def test_faiss_rerank_matches_brute_force_with_full_k(db, fine_case):
    obs = inverse.load_observation(seg=fine_case["path"])
    core, whole, _ = prep = inverse.to_database_grid(obs, db.anatomy)
    bf = inverse.brute_force(db, core, whole, chunk=17)
    assert len(bf["ids"]) == len(db)
    assert np.all(np.diff(bf["score"]) <= 0)
    full = inverse.fit(db, obs, prepared=prep, top_k=len(db), refine=False)
    assert full.score == pytest.approx(bf["score"][0])
    small = inverse.fit(db, obs, prepared=prep, top_k=5, refine=False)
    assert small.score <= bf["score"][0] + 1e-12
    assert bf["score"][0] - small.score < 0.05
    # the sparse exact-Dice kernel (observed voxels + stored volumes) gives the same Dice
    sp = inverse.brute_force(db, core, whole, kernel="sparse")
    for k in ("dice_core", "dice_whole"):
        a = np.empty(len(db))
        a[bf["ids"]] = bf[k]
        b = np.empty(len(db))
        b[sp["ids"]] = sp[k]
        assert np.allclose(a, b, atol=1e-12), k
    # a core outside the whole tumor and masks off the brain are handled like the full kernel
    odd_core = np.roll(core, 2, axis=0)
    ids = np.arange(0, len(db), 3)
    for c, w in ((odd_core, whole), (core, np.ones_like(whole))):
        f = inverse.score_snapshots(db, ids, c, w, "full")
        g = inverse.score_snapshots(db, ids, c, w, "sparse")
        assert np.allclose(f, g, atol=1e-12)


def test_query_prefilter_keeps_every_overlapping_snapshot(db, fine_case, same_grid_case):
    for case in (fine_case, same_grid_case):
        obs = inverse.load_observation(seg=case["path"])
        core, whole, _ = inverse.to_database_grid(obs, db.anatomy)
        allowed = inverse.overlap_candidates(db, whole)
        bf = inverse.brute_force(db, core, whole)
        overlapping = bf["ids"][bf["dice_whole"] > 0.2]
        assert len(overlapping) and np.isin(overlapping, allowed).all()
        assert len(allowed) < len(db)                      # and it does filter
        emb = inverse.embed(db, core, whole)
        assert np.allclose(emb, db.embed(core[None], whole[None]), atol=1e-4)
        dist, ids = inverse.search(db, emb, 10, allowed)
        assert np.isin(ids, allowed).all() and np.all(np.diff(dist) >= 0)
        d_sel, i_sel = db.search(emb, 10, ids=allowed)      # the public id-subset search
        assert np.array_equal(i_sel[0], ids)
        d_all, i_all = db.search(emb, len(db))
        # the same distances as the unrestricted search filtered afterwards
        assert np.allclose(dist, d_all[0][np.isin(i_all[0], allowed)][:len(ids)], atol=1e-3)
        # quantized storage = concentration, and the re-rank's Dice = Dice of db.masks
        q = db.quantized(ids[::-1])
        u = db.concentration(ids[::-1]).reshape(len(ids), -1)[:, db.brain_index]
        assert q.dtype == np.uint8 and np.array_equal(q.astype(np.float32) / 255, u)
        dc, dw = inverse.score_snapshots(db, ids, core, whole)
        mc, mw = db.masks(ids)
        assert np.allclose(dw, inverse.dice(mw.reshape(len(ids), -1), whole.ravel()))
        assert np.allclose(dc, inverse.dice(mc.reshape(len(ids), -1), core.ravel()))


def flipped_copy(src, dst):
    """The same label map stored left-right flipped (LAS), with a matching affine."""
    img = nib.load(src)
    data = np.asarray(img.dataobj)[::-1].copy()
    aff = img.affine.copy()
    aff[:, 0] *= -1
    aff[:3, 3] = img.affine[:3, :3] @ [data.shape[0] - 1, 0, 0] + img.affine[:3, 3]
    nib.save(nib.Nifti1Image(data, aff), str(dst))
    return data, aff


def test_cli_writes_all_outputs_on_the_input_grid(db_dir, fine_case, tmp_path):
    seg = tmp_path / "seg_las.nii.gz"
    labels, aff = flipped_copy(fine_case["path"], seg)
    out = tmp_path / "out"
    r = run_main("tumor", "fit", "--db", db_dir, "--seg", seg, "--out", out, "--days", "120")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    d = json.loads((out / "estimate.json").read_text())
    for key in JSON_FIELDS:
        assert key in d, key
    assert d["T_days"] == 120.0 and len(d["origin_mm"]) == 3
    assert set(d["thresholds"]) == {"core", "whole"}
    # every stage of the command is accounted for: the named stages add up to the total
    stages = ("startup", "imports", "open_db", "read", "load", "query", "rerank", "refine",
              "render")      # "read": the wait for the input, read in a thread during open_db
    assert d["timings_s"]["read_concurrent"] > 0
    assert set(d["timings_s"]) >= set(stages) | {"total"}
    assert sum(d["timings_s"][k] for k in stages) == pytest.approx(d["timings_s"]["total"],
                                                                  rel=0.1, abs=0.1)
    assert d["database"] == json.loads((db_dir / "manifest.json").read_text())["id"]
    assert np.linalg.norm(np.subtract(d["origin_mm"], fine_case["origin_mm"])) < 6.0
    with open(out / "estimate.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and tuple(rows[0]) == CSV_FIELDS
    assert float(rows[0]["mu1_cm"]) == pytest.approx(d["mu1_cm"])
    conc = nib.load(out / "tumor_concentration.nii.gz")
    lab = nib.load(out / "tumor_labels.nii.gz")
    for img in (conc, lab):
        assert img.shape == labels.shape and np.allclose(img.affine, aff)
    u = np.asarray(conc.dataobj)
    fitted = np.asarray(lab.dataobj)
    assert 0.0 <= u.min() and u.max() <= 1.0
    assert set(np.unique(fitted)) <= {0, 1, 2}
    assert np.array_equal(fitted == 1, u >= np.float32(0.6))
    # the fitted whole tumor overlaps the observed one voxel for voxel in the FILE's order
    obs, fit_w = labels > 0, fitted > 0
    assert 2 * (obs & fit_w).sum() / (obs.sum() + fit_w.sum()) > 0.75
    assert "Dice core" in r.stdout
    from db.store import Store

    with Store() as store:                      # the run is in the (private) provenance store
        run = next(x for x in store.runs() if x.command == "tumor fit")
    assert run.status == "ok" and len(run.outputs) == 4 and "refine" in run.timings


def test_core_and_whole_masks_give_the_same_fit_as_the_label_map(db_dir, fine_case,
                                                                  tmp_path):
    from main import main

    img = nib.load(fine_case["path"])
    lab = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.isin(lab, (1, 3, 4)).astype(np.uint8), img.affine),
             str(tmp_path / "core.nii.gz"))
    nib.save(nib.Nifti1Image((lab > 0).astype(np.uint8), img.affine),
             str(tmp_path / "whole.nii.gz"))
    assert main(["tumor", "fit", "--db", str(db_dir), "--seg", fine_case["path"], "--out",
                 str(tmp_path / "a"), "--no-refine"]) == 0
    assert main(["tumor", "fit", "--db", str(db_dir), "--core", str(tmp_path / "core.nii.gz"),
                 "--whole", str(tmp_path / "whole.nii.gz"), "--out", str(tmp_path / "b"),
                 "--no-refine", "--top-k", "20"]) == 0
    a = json.loads((tmp_path / "a" / "estimate.json").read_text())
    b = json.loads((tmp_path / "b" / "estimate.json").read_text())
    for key in ("mu1_cm", "mu2", "origin_mm", "dice_core", "dice_whole"):
        assert a[key] == b[key], key
    assert a["refined"] is False and len(b["candidates"]) == 20


# --- bad input: one sentence naming the file, exit code 2, OUTDIR untouched -------------------
def save(path, data, affine=synthetic.MNI_1MM_AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, float)), str(path))
    return path


def blob(center_vox, shape=synthetic.MNI_1MM_SHAPE, r=8, value=2):
    """A ball of radius r voxels (label ``value``) in a zero label map."""
    lab = np.zeros(shape, np.uint8)
    c = np.asarray(center_vox)
    lo = np.maximum(c - r, 0)
    box = tuple(slice(a, b) for a, b in zip(lo, np.minimum(c + r + 1, shape)))
    g = np.indices(lab[box].shape).transpose(1, 2, 3, 0) + lo
    lab[box][np.linalg.norm(g - c, axis=-1) <= r] = value
    return lab


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, db_dir):
    return bad_cases(tmp_path_factory.mktemp("bad"), db_dir)


def bad_cases(tmp_path, db_dir):
    mni_center = (98 + 30, 134 - 10, 72 + 20)            # a white-matter point, in voxels
    far = synthetic.MNI_1MM_AFFINE.copy()
    far[:3, 3] += 400.0
    mismatched = tmp_path / "db_mismatched"
    shutil.copytree(db_dir, mismatched)
    m = json.loads((mismatched / "manifest.json").read_text())
    m["n_snapshots"] += 3
    (mismatched / "manifest.json").write_text(json.dumps(m))
    blob_lab = save(tmp_path / "blob.nii.gz", blob(mni_center))
    nonbinary = blob(mni_center, value=5)
    return {
        "wrong space": (["--seg", save(tmp_path / "far.nii.gz", blob(mni_center), far)],
                        db_dir, "MNI152 space"),
        "empty": (["--seg", save(tmp_path / "empty.nii.gz",
                                 np.zeros(synthetic.MNI_1MM_SHAPE, np.uint8))], db_dir,
                  "contains no tumor"),
        "unknown labels": (["--seg", save(tmp_path / "labels7.nii.gz", blob(mni_center,
                                                                              value=7))],
                           db_dir, "outside the BraTS convention"),
        "outside brain": (["--seg", save(tmp_path / "corner.nii.gz", blob((12, 12, 12)))],
                          db_dir, "outside the brain mask"),
        "missing db": (["--seg", blob_lab], tmp_path / "no_db", "No tumor database"),
        "mismatched db": (["--seg", blob_lab], mismatched, "manifest"),
        "non-binary mask": (["--core", save(tmp_path / "core5.nii.gz", nonbinary),
                             "--whole", blob_lab], db_dir, "not a binary"),
        "seg and masks": (["--seg", blob_lab, "--core", blob_lab, "--whole", blob_lab],
                          db_dir, "not both"),
    }


BAD = ("wrong space", "empty", "unknown labels", "outside brain", "missing db",
       "mismatched db", "non-binary mask", "seg and masks")


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_sentence_exit_2_outdir_untouched(case, bad_inputs, tmp_path, capsys):
    from main import main

    args, db_path, phrase = bad_inputs[case]
    new_out = tmp_path / "new_out"
    old_out = tmp_path / "old_out"
    old_out.mkdir()
    (old_out / "keep.txt").write_text("previous")
    for out in (new_out, old_out):
        rc = main(["tumor", "fit", "--db", str(db_path), *map(str, args), "--out", str(out)])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert rc == 2, err
        assert len(lines) == 1 and phrase in lines[0], err
        named = [str(a) for a in args if str(a).endswith(".nii.gz")] + [str(db_path)]
        assert any(n in lines[0] for n in named) or case == "seg and masks", lines[0]
    assert not new_out.exists()
    assert [p.name for p in old_out.iterdir()] == ["keep.txt"]


def test_tumor_too_small_for_the_grid_is_refused(db, tmp_path):
    seg = save(tmp_path / "dot.nii.gz", blob((128, 124, 92), r=1))
    obs = inverse.load_observation(seg=seg)
    with pytest.raises(InputError, match="too small"):
        inverse.to_database_grid(obs, db.anatomy)


def test_cancel_stops_the_fit(db, fine_case):
    from engine.jobs import Cancelled

    obs = inverse.load_observation(seg=fine_case["path"])
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        inverse.fit(db, obs, cancel=token)


# --- GUI: Personalize panel -------------------------------------------------------------------
def test_personalize_panel_fits_shows_regrows_and_exports(qtbot, db_dir, fine_case, tmp_path):
    from engine.imaging import load_volume, resample
    from gui.main_window import JobRunner
    from gui.workbenches.tumor import TumorWorkbench
    from gui.workbenches.tumor_fit_panel import FIT_CORE, FIT_U, FIT_WHOLE, PersonalizePanel

    jobs = JobRunner()
    wb = TumorWorkbench(jobs)
    qtbot.addWidget(wb)
    errors = []
    wb.error.connect(errors.append)
    panel = wb.personalize_panel
    assert isinstance(panel, PersonalizePanel)
    wb.resize(1200, 800)
    wb.show()
    wb.load_mni_demo()
    qtbot.waitUntil(lambda: not jobs.busy, timeout=30000)  # the demo segmentation's job
    seg = load_volume(fine_case["path"], "labels")
    wb.show_segmentation(seg, resample(seg, None, wb.scan.shape, wb.scan.affine, order=0))
    panel.set_database(db_dir)
    panel.personalize()
    qtbot.waitUntil(lambda: panel.estimate is not None or bool(errors), timeout=60000)
    assert not errors, errors
    est = panel.estimate
    v = wb.viewer
    for name in (FIT_U, FIT_CORE, FIT_WHOLE, "segmentation"):
        assert name in v.overlays
    u_fit = v.overlays[FIT_U].data
    assert u_fit.shape == wb.scan.shape and u_fit.max() > 0.6
    # outlines are boundary voxels only: far fewer than the filled mask
    assert 0 < v.overlays[FIT_WHOLE].data.sum() < (u_fit >= 0.2).sum()
    origin_vox = np.round(wb.scan.mm_to_vox(est.origin_mm))
    assert np.abs(np.array(wb.cursor.ijk) - origin_vox).max() <= 1
    assert "Dice" in panel.results.text() and "cm²/day" in panel.results.text()
    panel.toggles[FIT_U].setChecked(False)
    assert not v.overlays[FIT_U].visible
    # growth: later T -> larger tumor, same Dw and rho
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10000)
    panel.set_growth_days(3 * est.T_days)
    qtbot.waitUntil(lambda: panel.shown_days == 3 * est.T_days or bool(errors), timeout=60000)
    assert not errors, errors
    assert (v.overlays[FIT_U].data >= 0.2).sum() > 1.5 * (u_fit >= 0.2).sum()
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10000)
    panel.export_to(tmp_path / "export")
    qtbot.waitUntil(lambda: (tmp_path / "export" / "tumor_labels.nii.gz").exists(),
                    timeout=60000)
    qtbot.waitUntil(lambda: not jobs.busy, timeout=10000)
    d = json.loads((tmp_path / "export" / "estimate.json").read_text())
    assert d["mu1_cm"] == pytest.approx(est.params["mu1_cm"])
    panel.save_screenshot(tmp_path / "shot.png")
    assert (tmp_path / "shot.png").stat().st_size > 10000


# --- the fit service, refine flags, pre-filter fallback, batch mode ---------------------------
def test_service_fits_with_an_open_database_and_renders_once(db, fine_case):
    from engine.imaging import load_volume
    from engine.tumor import service

    vol = load_volume(fine_case["path"], "labels")
    res = service.fit(db, service.FitRequest(volume=vol, T_days=80.0, refine=False))
    est = res.estimate
    assert sorted(res.files) == sorted(FILES)
    d = json.loads(res.files["estimate.json"])
    assert d["mu1_cm"] == pytest.approx(est.params["mu1_cm"]) and d["T_days"] == 80.0
    assert len(db) > 0                                   # the caller's database stays open
    # regrowing to the same T reproduces the fit; to 2 T (same Dw, rho) it is larger
    assert est.tau_at(160.0) == pytest.approx(2 * est.tau)
    same = est.regrow(80.0)
    thr = np.float32(THRESHOLDS["whole"])
    assert inverse.dice((same >= thr).ravel()[None], (est.u >= thr).ravel())[0] > 0.95
    assert (est.regrow(160.0) >= thr).sum() > 1.3 * (est.u >= thr).sum()
    with pytest.raises(InputError):
        service.fit(db, service.FitRequest(volume=vol, T_days=-1.0))


def test_refined_only_when_the_refine_won(db, fine_case):
    obs = inverse.load_observation(seg=fine_case["path"])
    est = inverse.fit(db, obs, refine=True)
    assert est.refine_tried and est.refined == (est.source == "refine")
    # a zero work budget: the refine runs but finds nothing, the database match is kept
    none = inverse.fit(db, obs, refine=True, refine_opts={"work_budget": 0.0})
    assert none.refine_tried and not none.refined and none.source == "database"
    assert none.to_dict()["refined"] is False and none.to_dict()["refine_tried"] is True
    off = inverse.fit(db, obs, refine=False)
    assert not off.refine_tried and not off.refined


def test_empty_prefilter_is_reported_not_silent(db, fine_case, monkeypatch):
    obs = inverse.load_observation(seg=fine_case["path"])
    assert not inverse.fit(db, obs, refine=False).warnings
    monkeypatch.setattr(inverse, "overlap_candidates", lambda db, whole: np.zeros(0, np.int64))
    est = inverse.fit(db, obs, refine=False)
    assert est.warnings == [inverse.NO_OVERLAP_WARNING]
    assert est.facts["n_overlap_candidates"] == 0
    assert "whole database" in est.to_dict()["observed"]["searched"]
    assert len(est.candidates) > 0


def test_batch_fit_one_folder_per_input_summary_and_failures(db_dir, fine_case, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    second = tmp_path / "again.nii.gz"
    shutil.copy(fine_case["path"], second)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{fine_case['path']}\n{bad}\n# a comment\n{second}\n")
    out = tmp_path / "out"
    r = run_main("tumor", "fit", "--db", db_dir, "--list", lst, "--out", out, "--no-refine")
    assert r.returncode == 2, r.stderr                       # one input failed
    assert "1 of 3 inputs failed" in r.stderr and "bad.nii.gz" in r.stderr
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert "bad.nii.gz" in rows[1]["message"] and rows[1]["mu1_cm"] == ""
    assert float(rows[0]["mu1_cm"]) == pytest.approx(float(rows[2]["mu1_cm"]))
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["again", "seg"]
    for name in folders:
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(FILES)


def independent_patient(path, lambda_mm: float, origin_mm, target_cm3: float) -> dict:
    """A patient made WITHOUT the project's solver (benchmarks/fk_independent.py: forward Euler,
    harmonic face means, point-sampled seed, tissue mask wm + gm >= 0.4) on a crop of the 4 mm
    atlas grid, grown in days (rho = 1 / day) to ``target_cm3``, written on the 4 mm grid."""
    import sys
    from pathlib import Path

    from engine.tumor.anatomy import load_anatomy

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fk_independent import fk_simulate

    an = load_anatomy(4)
    o = an.mm_to_vox(np.asarray(origin_mm, float))
    lo = np.maximum(np.floor(o).astype(int) - 14, 0)
    hi = np.minimum(np.floor(o).astype(int) + 15, an.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    u, times, vols = fk_simulate(an.wm[box].astype(float), an.gm[box].astype(float), 4.0,
                                 (lambda_mm / 10) ** 2, 1.0, 40.0, o - lo, record_vol_at=0.2,
                                 stop_cm3=target_cm3)
    full = np.zeros(an.shape, np.float32)
    full[box] = u
    lab = np.where(full >= 0.6, 4, np.where(full >= 0.2, 2, 0)).astype(np.uint8)
    nib.save(nib.Nifti1Image(lab, an.affine), str(path))
    tau = float(times[-1])
    return {"path": path, "origin_mm": np.asarray(origin_mm, float), "tau": tau,
            "mu1_cm": lambda_mm / 10 * np.sqrt(tau), "mu2": np.sqrt(tau), "lambda_mm": lambda_mm}


@pytest.mark.parametrize("lambda_mm, target", [(6.5, 60.0), (14.0, 90.0)])
def test_recovers_parameters_of_an_independent_off_plan_patient(db, tmp_path, lambda_mm,
                                                                  target):
    """Off the database's plan: lambda between its runs, origin between its samples, another
    discretisation (forward Euler, harmonic means). Tolerances per parameter on the 8 mm tiny
    database: origin within one database voxel, mu2 within 15 %, mu1 within 30 %."""
    r = run_of(db, 5)
    origin = r["origin_mm"] + [5.0, -3.0, 4.0]
    truth = independent_patient(tmp_path / "seg.nii.gz", lambda_mm, origin, target)
    est = inverse.fit(db, inverse.load_observation(seg=truth["path"]), 100.0)
    origin_err, mu1_err, mu2_err = errors(est, truth)
    assert origin_err < 8.0, origin_err
    assert mu2_err < 0.15, (mu2_err, est.tau, truth["tau"])
    assert mu1_err < 0.30, (mu1_err, est.lambda_mm, lambda_mm)
    assert est.dice_whole > 0.8
