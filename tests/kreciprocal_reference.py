"""Loop-by-loop k-reciprocal encodings and Jaccard distances (Zhong et al., CVPR 2017), the
slow reference that both the re-ranking and the pseudo-label Jaccard tests compare with."""
import numpy as np


def dense_encodings(d: np.ndarray, rank: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """(N, N) encodings from distances ``d`` and neighbour ranks ``rank`` (N, >= k1 + 1):
    k-reciprocal sets, the 2/3 expansion with half-size sets, exp(-d) weights, k2 averaging."""
    n = d.shape[0]

    def recip(i, k):
        fwd = rank[i, :k + 1]
        return np.array([j for j in fwd if i in rank[j, :k + 1]], dtype=int)

    half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expansion = list(r)
        for c in r:
            rc = recip(c, half)
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                expansion.extend(rc)
        idx = np.unique(expansion)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    return v


def dense_jaccard_of(v: np.ndarray, rows: int) -> np.ndarray:
    """(rows, N) Jaccard distances ``1 - |min| / (2 - |min|)`` between encodings."""
    jac = np.zeros((rows, v.shape[0]))
    for i in range(rows):
        for j in range(v.shape[0]):
            m = np.minimum(v[i], v[j]).sum()
            jac[i, j] = 1 - m / (2 - m)
    return jac
