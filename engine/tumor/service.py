"""The one tumor fit service: open database -> prepare the observation -> fit -> output files.

Used by `main.py tumor fit` (engine/tumor/fit_cli.py, also its batch mode) and by the GUI's
Personalize panel (with the database its Database panel keeps open). Nothing here imports
torch: the refine runs on scipy.sparse, so a fit pays only for numpy, scipy, nibabel and faiss.

    db = open_database(path)                       # or an already open TumorDatabase
    res = fit(db, FitRequest(seg=path, T_days=100), progress=..., cancel=...)
    res.estimate                                   # engine.tumor.inverse.Estimate
    res.files                                      # {name: bytes}: export.render, built ONCE
    write(res, outdir)                             # atomic writes of res.files

Native-space inputs plug in through ``prepare`` (engine/tumor/native.py): a callable
``prepare(request, progress, cancel) -> Prepared`` that returns the observation in MNI152
space, optional facts for the estimate (e.g. a registration metric) and optional extra files
rendered from the estimate (native-space outputs, the transform). Without it the request's
files are read as MNI152-space segmentations.
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.jobs import CancelToken, InputError, Progress
from engine.tumor.params import MAX_T_DAYS

SUMMARY_FIELDS = ("input", "status", "message")     # + export.CSV_FIELDS for fitted inputs


@dataclass
class FitRequest:
    """One fit. Give ``seg`` (BraTS label map path), or ``core`` + ``whole`` (binary mask
    paths), or ``volume`` (an engine.imaging Volume of BraTS labels already loaded), or
    ``observation`` (engine.tumor.observation.Observation). ``extra``: free-form options for a
    ``prepare`` hook (e.g. native flags)."""

    seg: Path | None = None
    core: Path | None = None
    whole: Path | None = None
    volume: object = None
    observation: object = None
    T_days: float = 100.0
    top_k: int = 50
    refine: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.seg, self.core, self.whole) if p is not None]

    @property
    def name(self) -> str:
        return ", ".join(str(p) for p in self.paths) or "(in memory)"


@dataclass
class Prepared:
    """What a ``prepare`` hook returns: the MNI152-space ``observation``; ``facts`` merged into
    the estimate's "observed" facts; ``extra_files(estimate) -> {name: bytes}`` added to (or
    replacing) the standard output files; ``timings_s`` merged into the estimate's timings."""

    observation: object
    facts: dict = field(default_factory=dict)
    extra_files: Callable | None = None
    timings_s: dict = field(default_factory=dict)


@dataclass
class FitResult:
    estimate: object                   # engine.tumor.inverse.Estimate
    files: dict                        # {file name: bytes}, rendered once


def validate(request: FitRequest) -> None:
    """One sentence for a request that cannot run (before any work)."""
    if request.seg is not None and (request.core is not None or request.whole is not None):
        raise InputError("Give either --seg or --core with --whole, not both.")
    given = (request.seg is not None or request.volume is not None
             or request.observation is not None or request.extra.get("has_input"))
    if not given and (request.core is None or request.whole is None):
        raise InputError("Give a label map with --seg, or both --core and --whole masks.")
    if not 0 < request.T_days <= MAX_T_DAYS:
        raise InputError(f"The stated time T must be a positive number of days up to "
                         f"{MAX_T_DAYS:g} (got {request.T_days:g}).")
    if int(request.top_k) < 1:
        raise InputError(f"top-k must be at least 1 (got {request.top_k}).")


def open_database(db_dir):
    """TumorDatabase.open (InputError, one sentence, for a missing / old / damaged one)."""
    from engine.tumor.database import TumorDatabase

    return TumorDatabase.open(db_dir)


def default_prepare(request: FitRequest, progress: Progress, cancel: CancelToken) -> Prepared:
    """Read the request's MNI152-space segmentation (label map, masks or loaded Volume)."""
    from engine.tumor.observation import load_observation, observation_from_volume

    if request.observation is not None:
        return Prepared(request.observation)
    if request.volume is not None:
        return Prepared(observation_from_volume(request.volume))
    return Prepared(load_observation(request.seg, request.core, request.whole,
                                     progress=progress, cancel=cancel))


def fit(db, request: FitRequest, *, prepare: Callable | None = None, render: bool = True,
        progress: Progress | None = None, cancel: CancelToken | None = None,
        refine_opts: dict | None = None, timings: dict | None = None,
        started: float | None = None, prepared=None) -> FitResult:
    """Fit one request against an OPEN database ``db`` (the caller owns and closes it).
    ``prepared``: the request already prepared (a Prepared, or a concurrent.futures.Future of
    one: the CLI reads the input in a thread while it opens the database; the wait is timed
    as "read" then).
    ``render``: build the output files (export.render) now, once; the GUI may pass False and
    render on Export. ``timings``: the caller's stages before this call (s; e.g. startup,
    imports, open_db), merged in; ``started``: the caller's time.perf_counter() at its start.
    Timings (s) in ``estimate.timings_s``: read (prepare), load (resample), query, rerank,
    refine (setup / solve / final inside ``refine_detail``), render, total = startup + the
    time since ``started`` (or since this call) up to the rendering of estimate.json. The
    write itself comes after (``write`` adds it, for the provenance record)."""
    from engine.tumor import inverse
    from engine.tumor.export import render as render_files

    progress = progress or Progress()
    cancel = cancel or CancelToken()
    validate(request)
    t0 = time.perf_counter()
    if prepared is None:
        prep = (prepare or default_prepare)(request, progress.sub(0, 0.1), cancel)
    else:
        prep = prepared.result() if hasattr(prepared, "result") else prepared
    t_read = time.perf_counter() - t0
    cancel.check()
    est = inverse.fit(db, prep.observation, request.T_days, top_k=int(request.top_k),
                      refine=request.refine, progress=progress.sub(0.1, 0.9), cancel=cancel,
                      refine_opts=refine_opts)
    est.facts.update(prep.facts)
    est.timings_s.update(dict(timings or {}), **prep.timings_s)
    est.timings_s["read"] = t_read
    t = time.perf_counter()

    def stamp() -> None:          # the final timings, before estimate.json is rendered
        est.timings_s["render"] = time.perf_counter() - t
        est.timings_s["total"] = (time.perf_counter() - (t0 if started is None else started)
                                  + est.timings_s.get("startup", 0.0))

    files = {}
    if render:
        progress.update(0.9, "rendering outputs")
        extra = prep.extra_files(est) if prep.extra_files is not None else {}
        files = render_files(est, before_text=stamp)
        files.update(extra)
    else:
        stamp()
    cancel.check()
    progress.done(f"Dice core {est.dice_core:.2f}, whole {est.dice_whole:.2f}")
    return FitResult(est, files)


def write(result: FitResult, outdir) -> list[Path]:
    """Write ``result.files`` atomically into ``outdir`` -> the written paths."""
    from engine.tumor.export import write_outputs

    t = time.perf_counter()
    paths = write_outputs(result.estimate, outdir, result.files)
    result.estimate.timings_s["write"] = time.perf_counter() - t
    return paths


def fit_to_folder(db, request: FitRequest, outdir, *, prepare=None, progress=None,
                  cancel=None) -> tuple[FitResult, list[Path]]:
    """fit + write: everything computed in memory before the first write."""
    from engine.tumor.export import check_outdir

    check_outdir(outdir)
    res = fit(db, request, prepare=prepare, progress=progress, cancel=cancel)
    return res, write(res, outdir)


def batch_names(requests: list[FitRequest]) -> list[str]:
    """One distinct subfolder name per request (the input's file name without .nii/.nii.gz;
    repeated names get -2, -3 ...)."""
    names, seen = [], {}
    for r in requests:
        p = r.paths[0] if r.paths else Path("input")
        n = p.name
        for ext in (".nii.gz", ".nii"):
            if n.endswith(ext):
                n = n[:-len(ext)]
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return names


def fit_batch(db, requests: list[FitRequest], outdir, *, prepare=None, progress=None,
              cancel=None, on_result: Callable | None = None) -> list[dict]:
    """Fit every request into ``outdir/<name>/``; a request that fails with bad input is
    reported and the rest continue. Pipelined on two threads beside the fit (which keeps the
    database on this thread): the next input is read while one is fitted, and each result is
    rendered and written while the next is fitted (zlib, nibabel and scipy release the GIL).
    Writes ``outdir/summary.csv`` (one row per input: input, status ok / failed, message, and
    the estimate's CSV fields). ``on_result(i, row)`` is called after each input. Returns the
    summary rows."""
    from concurrent.futures import ThreadPoolExecutor

    from db.atomic import write_bytes
    from engine.tumor.export import CSV_FIELDS, check_outdir

    progress = progress or Progress()
    cancel = cancel or CancelToken()
    out = check_outdir(outdir)
    prepare = prepare or default_prepare
    n = max(1, len(requests))
    names = batch_names(requests)
    rows: list[dict] = [{} for _ in requests]

    def finish(i: int, outcome) -> None:
        fields, message = outcome
        row = {"input": requests[i].name, "status": "ok" if fields else "failed",
               "message": message}
        row.update(fields or {})
        rows[i] = row
        if on_result is not None:
            on_result(i, row)

    with ThreadPoolExecutor(2) as pool:
        def read(i):
            return pool.submit(prepare, requests[i], Progress(), cancel)

        ahead = read(0) if requests else None
        writing: list = []
        for i, (req, name) in enumerate(zip(requests, names)):
            cancel.check()
            current, ahead = ahead, (read(i + 1) if i + 1 < len(requests) else None)
            try:
                res = fit(db, req, prepare=prepare, render=False, cancel=cancel,
                          progress=progress.sub(i / n, (i + 1) / n), prepared=current)
            except InputError as err:
                finish(i, (None, str(err)))
                continue
            writing.append((i, pool.submit(_render_and_write, res, current.result(),
                                           out / name)))
            while writing and writing[0][1].done():
                j, fut = writing.pop(0)
                finish(j, _outcome(fut))
        for j, fut in writing:
            finish(j, _outcome(fut))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS + CSV_FIELDS, lineterminator="\n",
                       restval="")
    w.writeheader()
    w.writerows(rows)
    write_bytes(out / "summary.csv", buf.getvalue().encode())
    progress.done(f"{sum(r['status'] == 'ok' for r in rows)} of {len(rows)} fitted")
    return rows


def _render_and_write(res: FitResult, prep: Prepared, folder) -> tuple[dict, str]:
    """Render the files of a fit made with render=False, write them -> (CSV fields, warnings)."""
    from engine.tumor.export import csv_row, render as render_files

    est = res.estimate
    t = time.perf_counter()

    def stamp() -> None:
        est.timings_s["render"] = time.perf_counter() - t
        est.timings_s["total"] = est.timings_s.get("total", 0.0) + est.timings_s["render"]

    files = render_files(est, before_text=stamp)
    files.update(prep.extra_files(est) if prep.extra_files is not None else {})
    write(FitResult(est, files), folder)
    return csv_row(est.to_dict()), " ".join(est.warnings)


def _outcome(fut) -> tuple[dict | None, str]:
    """A write-behind future -> (CSV fields, warnings), or (None, the InputError sentence)."""
    try:
        return fut.result()
    except InputError as err:
        return None, str(err)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): lets the CLI account
    for interpreter start-up and imports before its own clock started."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
