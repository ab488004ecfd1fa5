"""evaluate_roc against brute force over all kept (query, gallery) pairs."""
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from uda_reid.evaluation import evaluate_roc
from uda_reid.evaluation import protocol


def pairs(distmat, q_pids, g_pids, q_cams, g_cams):
    genuine, impostor = [], []
    for i in range(distmat.shape[0]):
        for j in range(distmat.shape[1]):
            if q_pids[i] == g_pids[j] and q_cams[i] == g_cams[j]:
                continue
            (genuine if q_pids[i] == g_pids[j] else impostor).append(distmat[i, j])
    return np.array(genuine), np.array(impostor)


def problem(seed, levels=None):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, 15, 50), rng.integers(0, 15, 300)
    q_cams, g_cams = rng.integers(0, 4, 50), rng.integers(0, 4, 300)
    distmat = rng.random((50, 300)).astype(np.float32)
    distmat -= 0.3 * (q_pids[:, None] == g_pids[None, :])  # genuine pairs closer
    if levels:
        distmat = (np.round(distmat * levels) / levels).astype(np.float32)
    return distmat, q_pids, g_pids, q_cams, g_cams


def best_tpr_with_fpr_at_most(genuine, impostor, f):
    """The definition: over every threshold t (accept d < t), the largest TPR with FPR <= f."""
    best = 0.0
    for t in np.r_[np.unique(np.r_[genuine, impostor]), np.inf]:
        if (impostor < t).mean() <= f:
            best = max(best, (genuine < t).mean())
    return best


@pytest.mark.parametrize("seed,levels", [(0, None), (1, None), (2, 40)])
def test_verification_tpr_at_fpr_is_the_best_tpr_within_the_fpr(seed, levels, monkeypatch):
    monkeypatch.setattr(protocol, "CHUNK_ELEMENTS", 1200)  # 4 rows per chunk, pool merges
    prob = problem(seed, levels)
    genuine, impostor = pairs(*prob)
    fprs = (1e-3, 1e-2, 0.1, 0.29, 1.0)
    got = evaluate_roc(*prob, fprs=fprs, threads=2)
    assert got["num_genuine"] == len(genuine) and got["num_impostor"] == len(impostor)
    for f in fprs:
        assert got["tpr_at_fpr"][f] == best_tpr_with_fpr_at_most(genuine, impostor, f)
        t = got["threshold_at_fpr"][f]
        assert (impostor < t).mean() <= f
        assert got["tpr_at_fpr"][f] == (genuine < t).mean()


def test_curve_points_are_exact_points_of_the_brute_force_curve(monkeypatch):
    monkeypatch.setattr(protocol, "CHUNK_ELEMENTS", 1200)
    prob = problem(3)
    genuine, impostor = pairs(*prob)
    got = evaluate_roc(*prob, fprs=(0.05,), curve_points=40)
    fpr, tpr = got["fpr"], got["tpr"]
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    thresholds = np.r_[np.unique(np.r_[genuine, impostor]), np.inf]
    brute = {((impostor < t).mean(), (genuine < t).mean()) for t in thresholds}
    assert all((a, b) in brute for a, b in zip(fpr, tpr))
    assert np.sum((fpr > 0) & (fpr <= 0.05)) >= 10  # dense where TPR@FPR is read


def fastreid_figure(genuine, impostor, f, drop_intermediate):
    labels = np.r_[np.zeros(len(genuine)), np.ones(len(impostor))]
    fpr, tpr, _ = roc_curve(labels, np.r_[genuine, impostor],
                            drop_intermediate=drop_intermediate)
    return tpr[np.argmin(np.abs(fpr - f))]


@pytest.mark.parametrize("seed,levels", [(4, None), (5, 25)])
def test_fastreid_compatible_figure_equals_sklearn_roc_curve_argmin(seed, levels):
    prob = problem(seed, levels)
    genuine, impostor = pairs(*prob)
    fprs = (1e-3, 1e-2, 0.1, 0.5)
    got = evaluate_roc(*prob, fprs=fprs, fastreid_compat=True)
    assert got["fastreid_compat"] is True
    for f in fprs:
        assert got["tpr_at_fpr"][f] == fastreid_figure(genuine, impostor, f, False)
        if levels is None:  # continuous distances: no point of interest is dropped
            assert got["tpr_at_fpr"][f] == fastreid_figure(genuine, impostor, f, True)


def test_bad_fprs_and_missing_pairs_are_errors():
    prob = problem(0)
    with pytest.raises(ValueError, match="fprs"):
        evaluate_roc(*prob, fprs=(0.0,))
    same_cam = (prob[0], prob[1], prob[1][:1].repeat(300), np.zeros(50), np.zeros(300))
    with pytest.raises(ValueError, match="genuine and impostor"):
        evaluate_roc(*same_cam)


def test_accepted_impostor_count_is_exact_for_decimal_fprs():
    from uda_reid.evaluation.roc import _accepted_impostors

    assert 0.29 * 100 < 29  # binary floating point rounds the product down
    assert _accepted_impostors(0.29, 100) == 29 and _accepted_impostors(1e-4, 9999) == 0
