"""Snapshot embedding for the FAISS search: pooled core / whole-tumor masks on uncentred PCA
axes (see Embedder). numpy/scipy; torch only inside fit()."""
from __future__ import annotations

import numpy as np

from engine.tumor.params import THRESHOLDS, quant_threshold

EMBED_DIM = 256                    # uncentred PCA components
EMBED_CELL_MM = 8.0                # embedding pools masks into cells of about this size
PCA_SAMPLE = 2000                  # PCA is fitted on at most about this many snapshots


class Embedder:
    """Core and whole-tumor masks pooled into ~8 mm cells (voxel counts per cell), each of the
    two blocks scaled to unit L2 norm times sqrt(1/2), then projected on uncentred PCA axes.

    The inner product of two such feature vectors is the mean of the cosine similarities of
    the pooled core and whole-tumor masks (an empty block counts 0), a close stand-in for the
    mean of the two Dice (for binary masks cosine = |A & B| / sqrt(|A| |B|) >= Dice); the
    index ranks by that inner product in the PCA subspace (IndexFlatIP), and the search
    returns distance = 1 - inner product.

    features: (n, 2 D) float32, D = pooled cells touching the brain; embedding: (n, d)."""

    def __init__(self, anatomy, state: dict | None = None):
        from scipy import sparse

        f = max(1, int(round(EMBED_CELL_MM / anatomy.spacing_mm)))
        shape = np.array(anatomy.shape)
        cell = np.stack(np.meshgrid(*[np.arange(n) // f for n in shape], indexing="ij"), -1)
        cshape = (shape + f - 1) // f
        cid = np.ravel_multi_index(cell.reshape(-1, 3).T, cshape)
        brain = anatomy.brain.ravel()
        used = np.unique(cid[brain])
        col = np.full(int(np.prod(cshape)), -1)
        col[used] = np.arange(len(used))
        self.cell_of = col[cid]              # (X*Y*Z,) pooled cell of each voxel, -1: none
        self.n_cells = len(used)
        keep = self.cell_of >= 0
        rows = np.flatnonzero(keep)
        pool = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, self.cell_of[keep])),
                                 shape=(brain.size, len(used)))
        self.pool_brain_T = pool[np.flatnonzero(brain)].T.tocsr()    # (D, n_brain)
        self.q_core = quant_threshold(THRESHOLDS["core"])
        self.q_whole = quant_threshold(THRESHOLDS["whole"])
        self.components = self._components_T = None
        if state is not None:
            self._set(state["components"])

    def _set(self, components: np.ndarray) -> None:
        self.components = np.ascontiguousarray(components, dtype=np.float32)     # (d, 2 D)
        self._components_T = np.ascontiguousarray(self.components.T)             # (2 D, d)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @staticmethod
    def _normalize(c: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Cell counts (n, D) x2 -> (n, 2 D) float32, each block of norm sqrt(1/2) (or 0)."""
        out = []
        for x in (c, w):
            x = np.asarray(x, dtype=np.float32)
            nrm = np.linalg.norm(x, axis=1, keepdims=True)
            out.append(x * (np.float32(np.sqrt(0.5)) / np.maximum(nrm, np.float32(1e-12))))
        return np.hstack(out).astype(np.float32)

    def features(self, core: np.ndarray, whole: np.ndarray) -> np.ndarray:
        """core, whole (n, X, Y, Z) bool -> (n, 2 D) float32 (counts by bincount over the
        tumor voxels only: cheap for one observed tumor)."""
        n = len(core)
        counts = []
        for m in (core, whole):
            m = np.asarray(m, dtype=bool).reshape(n, -1)
            row, vox = np.nonzero(m)
            cells = self.cell_of[vox]
            ok = cells >= 0
            flat = np.bincount(row[ok] * self.n_cells + cells[ok],
                               minlength=n * self.n_cells)
            counts.append(flat.reshape(n, self.n_cells))
        return self._normalize(*counts)

    def features_from_q(self, q: np.ndarray) -> np.ndarray:
        """q (n, n_brain) uint8 stored snapshots -> (n, 2 D) float32."""
        c = (q >= self.q_core).astype(np.float32)
        w = (q >= self.q_whole).astype(np.float32)
        return self._normalize(self.pool_brain_T.dot(c.T).T, self.pool_brain_T.dot(w.T).T)

    def fit(self, feats: np.ndarray) -> None:
        """Uncentred PCA (the top right singular vectors of the (n, 2 D) features, so inner
        products are preserved) by a randomized range finder (fixed seed, 4 power
        iterations) in O(n D d) instead of an O(n^3) eigensolver. Done in torch on one thread
        (BLAS thread pools thrash on a busy machine)."""
        from engine._torch import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float64))
            d = max(1, min(EMBED_DIM, x.shape[0], x.shape[1]))
            k = min(d + 16, min(x.shape))
            gen = torch.Generator().manual_seed(0)
            q = torch.linalg.qr(x @ torch.randn(x.shape[1], k, generator=gen,
                                                dtype=torch.float64))[0]
            for _ in range(4):
                q = torch.linalg.qr(x.T @ q)[0]
                q = torch.linalg.qr(x @ q)[0]
            comp = torch.linalg.svd(q.T @ x, full_matrices=False)[2][:d].numpy()
        finally:
            torch.set_num_threads(threads)
        comp = comp * np.where(comp[np.arange(d), np.abs(comp).argmax(axis=1)] < 0,
                               -1, 1)[:, None]
        self._set(comp)

    def project(self, feats: np.ndarray) -> np.ndarray:
        """(n, 2 D) -> (n, d) float32. A few rows (a query) are projected through their nonzero
        columns only with einsum: no multi-threaded BLAS call, which waited ~15 ms for a free
        core on a busy machine; many rows (building the index) with one float32 matmul."""
        feats = np.asarray(feats, dtype=np.float32)
        if len(feats) <= 8:
            out = np.empty((len(feats), self.dim), dtype=np.float32)
            for n, row in enumerate(feats):
                nz = np.flatnonzero(row)
                out[n] = np.einsum("j,jk->k", row[nz], self._components_T[nz])
            return out
        return np.ascontiguousarray(feats @ self._components_T, dtype=np.float32)

    def state(self) -> dict:
        return {"components": self.components}
