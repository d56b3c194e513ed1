"""The FAISS index over the snapshot embeddings, chosen by size: IndexFlatIP (exact) up to
FLAT_MAX vectors, above it IndexIVFFlat (inner product; nlist ~ sqrt(n) lists trained by
k-means on a subsample drawn from the database seed, NPROBE lists searched). Recall@50 of the
IVF against the flat index and the query times: benchmarks/tumor_index.py and
docs/tumor_database.md. search() returns distances = 1 - inner product, ascending.
"""
from __future__ import annotations

import numpy as np

from engine.jobs import InputError
from engine.tumor.embedding import PCA_SAMPLE, Embedder

FLAT_MAX = 200_000          # above: IVF (a flat query costs ~n*d flops: ~10 ms at 200k)
NPROBE = 64                 # IVF lists searched per query (recall@50 0.97 at 1M, synthetic)
TRAIN_PER_LIST = 40         # k-means training points per list
KMEANS_ITER = 10


def ivf_lists(n: int) -> int:
    return int(max(16, round(np.sqrt(n))))


def make_index(vectors: np.ndarray, seed: int, *, flat_max: int | None = None):
    """vectors (n, d) float32 -> (faiss index holding them with ids 0..n-1, info dict for the
    manifest: index_type, nlist, nprobe). Deterministic for given vectors and seed."""
    from engine._faiss import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if n <= (FLAT_MAX if flat_max is None else flat_max):
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index, {"index_type": "IndexFlatIP"}
    nlist = ivf_lists(n)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed) % (2 ** 31)
    index.cp.niter = KMEANS_ITER
    index.cp.max_points_per_centroid = TRAIN_PER_LIST      # no second, internal subsample
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))
    index.train(x[train])
    index.add(x)
    index.nprobe = min(NPROBE, nlist)
    return index, {"index_type": "IndexIVFFlat", "nlist": nlist, "nprobe": int(index.nprobe)}


def configure(index, manifest: dict) -> None:
    """Set search parameters of a deserialized index from the manifest."""
    if manifest.get("index_type") == "IndexIVFFlat":
        index.nprobe = int(manifest.get("nprobe", NPROBE))
        index.make_direct_map()                 # reconstruct() for id subsets, embeddings


def search(index, x: np.ndarray, k: int, n_total: int, ids=None):
    """x (n, d) float32 -> (distances = 1 - inner product ascending, ids), both (n, k'),
    k' = min(k, snapshots searched); -1 ids (distance inf) pad rows with fewer hits. ``ids``:
    a subset of snapshot ids: an IDSelectorBitmap over a flat index; for an IVF index the
    subset is scanned exactly (its vectors reconstructed: no list is skipped)."""
    from engine._faiss import faiss

    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    if ids is None:
        sim, found = index.search(x, int(min(k, n_total)))
    else:
        member = np.zeros(n_total, dtype=bool)
        member[np.asarray(ids, dtype=np.int64)] = True
        n_ids = int(member.sum())
        if n_ids == 0 or k < 1:
            return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
        kk = int(min(k, n_ids))
        if isinstance(index, faiss.IndexFlat):
            bits = np.packbits(member, bitorder="little")      # kept alive during the search
            sel = faiss.IDSelectorBitmap(n_total, faiss.swig_ptr(bits))
            sim, found = index.search(x, kk, params=faiss.SearchParameters(sel=sel))
        else:
            sub = np.flatnonzero(member)
            s = x @ index.reconstruct_batch(sub).T                   # (n, n_ids)
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, 1)
            sim, found = np.take_along_axis(s, top, 1), sub[top]
    dist = np.where(found >= 0, 1.0 - sim, np.inf).astype(np.float32)
    return dist, found


def build_index_files(store, manifest: dict, anatomy, seed: int, progress, cancel) -> dict:
    """(Re)build the embedding and FAISS index unless the saved ones match the catalog;
    returns the (rewritten) manifest."""
    from db.hashing import file_sha256
    from engine._faiss import faiss

    n_runs, n_snap = store.count("runs"), store.count("snapshots")
    ok = (manifest.get("complete") and manifest.get("n_snapshots") == n_snap
          and store.index_path.is_file() and store.embedding_path.is_file()
          and file_sha256(store.index_path) == manifest.get("index_sha256")
          and file_sha256(store.embedding_path) == manifest.get("embedding_sha256"))
    if ok:
        progress.done("index up to date")
        return manifest
    if n_snap == 0:
        raise InputError(f"The database in {store.root} has no snapshots to index.")
    progress.update(0.0, "embedding snapshots")
    emb = Embedder(anatomy)
    table = store.table("snapshots")
    batches = np.unique(table["batch"])
    stride = max(1, n_snap // PCA_SAMPLE)    # PCA on an evenly spaced subsample
    feats = []
    for b in batches:
        rows = np.flatnonzero(table["batch"] == b)
        q = store.load_shard(int(b))
        pick = rows[rows % stride == 0] - rows[0]
        feats.append(emb.features_from_q(np.asarray(q[pick])))
    cancel.check()
    emb.fit(np.concatenate(feats))
    vectors = np.empty((n_snap, emb.dim), dtype=np.float32)
    start = 0
    for i, b in enumerate(batches):
        e = emb.project(emb.features_from_q(np.asarray(store.load_shard(int(b)))))
        vectors[start:start + len(e)] = e
        start += len(e)
        if i % 16 == 0:
            cancel.check()
            progress.update(0.1 + 0.6 * i / len(batches), "embedding snapshots")
    progress.update(0.7, "indexing")
    index, info = make_index(vectors, seed)
    emb_sha = store.save_embedding(**emb.state())
    idx_sha = store.save_index(faiss.serialize_index(index).tobytes())
    for key in ("nlist", "nprobe"):
        manifest.pop(key, None)
    manifest = dict(manifest, complete=True, n_runs=int(n_runs), n_snapshots=int(n_snap),
                    n_batches=int(len(batches)), embedding_dim=int(emb.dim),
                    index_sha256=idx_sha, embedding_sha256=emb_sha, **info)
    store.write_manifest(manifest)
    return manifest
