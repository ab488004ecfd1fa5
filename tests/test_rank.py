"""evaluate_rank against a slow per-query implementation of the Market-1501 definition."""
import numpy as np
import pytest
import torch

from uda_reid.evaluation import evaluate_rank


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, skip_no_match):
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        hits = (g_pids[order][keep] == q_pids[i]).astype(float)
        if hits.sum() == 0:
            if not skip_no_match:
                cmcs.append(np.zeros(max_rank))
                aps.append(0.0)
                inps.append(0.0)
            continue
        positions = np.flatnonzero(hits)
        cmc = np.zeros(max_rank)
        if positions[0] < max_rank:
            cmc[positions[0]:] = 1
        cmcs.append(cmc)
        aps.append(np.mean([(k + 1) / (p + 1) for k, p in enumerate(positions)]))
        inps.append(len(positions) / (positions[-1] + 1))
    return np.mean(cmcs, 0), np.mean(aps), np.mean(inps)


def random_problem(seed, num_q=60, num_g=400, ids=40, cams=6):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, ids, num_q)
    g_pids = rng.integers(0, ids, num_g)  # id 0: distractors
    q_camids, g_camids = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    # make some queries have no valid match: their id only in the same camera
    g_pids[g_pids == q_pids[0]] = 0
    g_pids[:3], g_camids[:3] = q_pids[0], q_camids[0]
    q_pids[1] = ids + 5  # an id absent from the gallery
    distmat = rng.random((num_q, num_g)).astype(np.float32)
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("skip", [True, False])
def test_equals_reference_with_distractors_and_unmatched_queries(seed, skip):
    problem = random_problem(seed)
    got = evaluate_rank(*problem, max_rank=20, skip_no_match=skip)
    cmc, m_ap, m_inp = reference(*problem, max_rank=20, skip_no_match=skip)
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert got["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert got["mINP"] == pytest.approx(m_inp, abs=1e-12)
    assert got["num_no_match"] == 2 and got["num_valid_queries"] == 58


def test_small_chunks_and_torch_inputs_give_the_same_values():
    distmat, *ids = random_problem(3, num_q=37)
    from uda_reid.evaluation.rank import _metrics_from_ranks, positive_ranks

    small = _metrics_from_ranks(37, *positive_ranks(distmat, *ids, chunk=5), 20, True)
    full = evaluate_rank(torch.from_numpy(distmat), *map(torch.from_numpy, ids), max_rank=20)
    assert small["mAP"] == pytest.approx(full["mAP"], abs=1e-12)
    np.testing.assert_allclose(small["cmc"], full["cmc"])


def test_hand_made_case_and_pessimistic_ties():
    #            gallery: id1/cam0 (removed), id1/cam1, id2/cam1, id0 distractor, id1/cam2
    distmat = np.array([[0.0, 0.5, 0.2, 0.3, 0.9]], dtype=np.float32)
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids, g_cams = np.array([1, 1, 2, 0, 1]), np.array([0, 1, 1, 2, 2])
    got = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # kept order: 0.2 (neg), 0.3 (neg), 0.5 (pos), 0.9 (pos): positives at ranks 2 and 3
    assert got["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert got["mINP"] == pytest.approx(2 / 4)
    np.testing.assert_allclose(got["cmc"], [0, 0, 1, 1])
    tied = np.array([[0.0, 0.2, 0.2, 0.3, 0.9]], dtype=np.float32)  # pos tied with a negative
    assert evaluate_rank(tied, q_pids, g_pids, q_cams, g_cams, 4)["cmc"][0] == 0


def test_cuhk03_single_shot_cmc_and_errors():
    distmat = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    g_pids, g_cams = np.array([2, 2, 1, 3]), np.array([1, 1, 1, 1])
    got = evaluate_rank(distmat, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=3,
                        protocol="cuhk03")
    # one image per id: id2 (0.1 or 0.2) always before id1 (0.3), id3 (0.4) after
    np.testing.assert_allclose(got["cmc"], [0, 1, 1])
    assert got["mAP"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_rank(distmat, np.array([1]), g_pids, np.array([0]), g_cams, protocol="viper")
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(distmat, np.array([1]), g_pids[:3], np.array([0]), g_cams)
