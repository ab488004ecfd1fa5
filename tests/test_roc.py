"""evaluate_roc against brute force over all kept pairs."""
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from uda_reid.evaluation import evaluate_roc


def pairs(distmat, q_pids, g_pids, q_cams, g_cams):
    genuine, impostor = [], []
    for i in range(distmat.shape[0]):
        for j in range(distmat.shape[1]):
            if q_pids[i] == g_pids[j] and q_cams[i] == g_cams[j]:
                continue
            (genuine if q_pids[i] == g_pids[j] else impostor).append(distmat[i, j])
    return np.array(genuine), np.array(impostor)


def problem(seed):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, 15, 50), rng.integers(0, 15, 300)
    q_cams, g_cams = rng.integers(0, 4, 50), rng.integers(0, 4, 300)
    distmat = rng.random((50, 300)).astype(np.float32)
    distmat -= 0.3 * (q_pids[:, None] == g_pids[None, :])  # genuine pairs closer
    return distmat, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", [0, 1])
def test_verification_tpr_at_fpr_by_brute_force(seed):
    prob = problem(seed)
    genuine, impostor = pairs(*prob)
    got = evaluate_roc(*prob, fprs=(1e-3, 1e-2, 0.1))
    assert got["num_genuine"] == len(genuine) and got["num_impostor"] == len(impostor)
    for f, tpr in got["tpr_at_fpr"].items():
        k = max(int(np.ceil(f * len(impostor))), 1)
        threshold = np.sort(impostor)[k - 1]
        assert (impostor <= threshold).mean() == pytest.approx(k / len(impostor))
        assert tpr == pytest.approx((genuine <= threshold).mean())
    assert got["fpr"][-1] == pytest.approx(1.0) and got["tpr"][-1] == pytest.approx(1.0)
    assert np.all(np.diff(got["fpr"]) >= 0)


def test_fastreid_compatible_operating_point_matches_sklearn_curve():
    prob = problem(2)
    genuine, impostor = pairs(*prob)
    labels = np.r_[np.zeros(len(genuine)), np.ones(len(impostor))]
    fpr, tpr, _ = roc_curve(labels, np.r_[genuine, impostor], drop_intermediate=False)
    got = evaluate_roc(*prob, fprs=(1e-2, 0.1), fastreid_compat=True)
    for f, value in got["tpr_at_fpr"].items():
        assert value == pytest.approx(tpr[np.argmin(np.abs(fpr - f))], abs=1e-9)
