"""Where database batches are computed: in this process (one worker), or as Dask tasks, on a
LocalCluster of N worker processes (``workers`` > 1) or on an existing cluster (``scheduler``
= tcp://HOST:PORT). Tasks only compute and return arrays; the caller writes (on_result runs in
this thread). A task whose worker dies is rescheduled by the scheduler (up to its
distributed.scheduler.allowed-failures, default 3); an exception inside a task is retried
RETRIES times. Cancel (the token) cancels the futures and closes the client and cluster.
"""
from __future__ import annotations

import time

from engine.jobs import InputError, JobError

RETRIES = 2
STATUS_EVERY_S = 1.0
CONNECT_TIMEOUT_S = 10


def compute_batches(fn, args: list[tuple], keys: list[int], *, workers: int = 1,
                    scheduler: str | None = None, device=None, on_result, on_status,
                    sub_progress, cancel) -> None:
    """Call ``on_result(key, fn(*args_i, device=device))`` for every task (any order).
    on_status(n_workers, n_running) reports the cluster about once a second; sub_progress(key)
    gives the in-process run its Progress."""
    if not keys:
        return
    if scheduler is None and (workers <= 1 or len(keys) <= 1):
        for a, k in zip(args, keys):
            cancel.check()
            on_result(k, fn(*a, device=device, progress=sub_progress(k), cancel=cancel))
        return
    client, cluster = connect(scheduler, workers)
    try:
        _run_tasks(client, fn, args, keys, device, on_result, on_status, cancel)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def connect(scheduler: str | None, workers: int):
    """(client, cluster): a client of the scheduler at ``scheduler``, or of a new LocalCluster
    of ``workers`` processes with one thread each (cluster None for an external one)."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s",
                          set_as_default=False), None
        except (OSError, TimeoutError, ValueError, TypeError) as err:
            raise InputError(f"Cannot reach the Dask scheduler at {scheduler} "
                             f"({type(err).__name__}: {err}).") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0",
                           silence_logs=logging.ERROR)
    try:
        client = Client(cluster, set_as_default=False)
        client.run(_ignore_sigint)      # Ctrl-C in a terminal reaches the whole process group:
        return client, cluster          # the client cancels, the workers need not see it
    except BaseException:
        cluster.close()
        raise


def _ignore_sigint() -> None:
    """Run on each LocalCluster worker (in its main thread): ignore SIGINT."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_scheduler(scheduler: str) -> None:
    """InputError (one sentence) unless a Dask scheduler answers at ``scheduler``."""
    connect(scheduler, 0)[0].close()


def _run_tasks(client, fn, args, keys, device, on_result, on_status, cancel) -> None:
    from distributed import KilledWorker

    pending = {client.submit(fn, *a, device=device, pure=False, retries=RETRIES): k
               for a, k in zip(args, keys)}
    ours = {f.key for f in pending}
    last = 0.0
    try:
        while pending:
            cancel.check()
            ready = [f for f in pending if f.done()]
            for f in ready:
                k = pending.pop(f)
                try:
                    result = f.result()
                except KilledWorker as err:
                    raise JobError(f"Batch {k} was lost with its worker too often ({err}); "
                                   "check the workers' memory and logs.") from None
                f.release()
                on_result(k, result)
                cancel.check()
            now = time.monotonic()
            if pending and now - last >= STATUS_EVERY_S:
                last = now
                workers = client.scheduler_info(n_workers=-1)["workers"]
                threads = sum(w.get("nthreads", 1) for w in workers.values())
                assigned = sum(1 for keys_ in client.processing().values()
                               for key in keys_ if key in ours)
                on_status(len(workers), min(assigned, threads))
            if not ready:
                time.sleep(0.05)
    except BaseException:
        client.cancel(list(pending), force=True)
        raise


def pool_worker_init() -> None:
    """Set-up for plain process pools (benchmarks): ignore Ctrl-C (the parent cancels) and exit
    when the parent dies (kill -9 of the parent must not leave orphaned workers behind)."""
    import os
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
